"""The shared seed helper and validators, and that seeded solvers leave global RNGs alone."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from mrsolve.solvers.validation import check_int, make_generator, renamed_kwargs, seed_to_int


def test_make_generator_matches_the_libraries_own_seeding():
    ours = make_generator(5, "numpy").standard_normal(4)
    np.testing.assert_array_equal(ours, np.random.default_rng(5).standard_normal(4))
    ours_t = torch.randn(4, generator=make_generator(5))
    torch.testing.assert_close(ours_t, torch.randn(4, generator=torch.Generator().manual_seed(5)))


def test_make_generator_shares_or_converts_generators():
    g = torch.Generator().manual_seed(1)
    assert make_generator(g) is g
    rng = np.random.default_rng(1)
    assert make_generator(rng, "numpy") is rng
    # a generator of the other kind seeds a new one with an int drawn from it
    expected = int(np.random.default_rng(2).integers(2**62))
    ref = torch.randn(3, generator=torch.Generator().manual_seed(expected))
    torch.testing.assert_close(
        torch.randn(3, generator=make_generator(np.random.default_rng(2))), ref
    )
    assert seed_to_int(np.int64(7)) == 7
    assert isinstance(make_generator(None), torch.Generator)


@pytest.mark.parametrize("bad", [1.5, "3", True, -1, [1]])
def test_make_generator_rejects_bad_seeds(bad):
    with pytest.raises(TypeError, match="seed must be"):
        make_generator(bad)
    with pytest.raises(ValueError, match="kind"):
        make_generator(0, "jax")


def test_check_int():
    assert check_int("n", 3) == 3 and check_int("n", np.int32(0), 0) == 0
    with pytest.raises(TypeError, match=r"n must be an int, got 2\.0"):
        check_int("n", 2.0)
    with pytest.raises(TypeError, match="n must be an int"):
        check_int("n", True)
    with pytest.raises(ValueError, match=r"n must be an int >= 2, got 1"):
        check_int("n", 1, 2)


def test_renamed_kwargs():
    @renamed_kwargs(old="new")
    def f(*, new=0):
        return new

    with pytest.warns(DeprecationWarning, match="'old' is deprecated, use 'new'"):
        assert f(old=4) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert f(new=5) == 5
    with pytest.raises(TypeError, match="both 'old' and 'new'"):
        f(old=1, new=2)


def _seeded_fits():
    """One seeded call of every randomized entry point (small sizes)."""
    from mrsolve.solvers.convex_nn import ConvexNNRegressor, sample_gates, zonotope_gates
    from mrsolve.solvers.lasso import LassoCV, PretrainedLasso, simulate_groups
    from mrsolve.solvers.linop import MatMul, dot_test
    from mrsolve.solvers.maxcut import make_dataset
    from mrsolve.solvers.sampling import BayesianLinearRegression, make_graph, mala, run
    from mrsolve.solvers.sketching import make_sketch
    from mrsolve.solvers.wedge import WedgeRegressor, make_spiral

    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y = X[:, 0] - X[:, 1]
    LassoCV(n_penalties=5, n_folds=3, random_state=1).fit(X, y)
    d = simulate_groups(n=60, seed=1)
    PretrainedLasso(n_penalties=5, n_folds=3, random_state=1).fit(d.X, d.y, d.groups)
    ConvexNNRegressor(n_gates=4, max_iter=50, random_state=1).fit(X, y)
    Xs, ys = make_spiral(20, seed=1)
    WedgeRegressor(max_features=40, max_iter=3, tol=1e-3, random_state=1).fit(Xs, ys)
    Xt = torch.from_numpy(X)
    sample_gates(Xt, 4, seed=1)
    zonotope_gates(Xt, n_draws=1, seed=1)
    make_dataset("orthogonal", 8, seed=1)
    make_sketch("gaussian", 16, 4, seed=1)
    dot_test(MatMul((2,), torch.ones(3, 2, dtype=torch.float64)), seed=1)
    parts = np.array_split(np.arange(30), 3)
    target = BayesianLinearRegression([X[i] for i in parts], [y[i] for i in parts], 1.0, 10.0)
    run("dula", target, make_graph("cycle", 3), n_iter=3, n_chains=2, seed=1)
    mala(target, n_chains=2, n_iter=4, step_size=1e-3, seed=1)


def test_seeded_fits_leave_the_global_rngs_alone():
    np_state = np.random.get_state()  # noqa: NPY002  (the global state is the point)
    torch_state = torch.random.get_rng_state()
    _seeded_fits()
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == np_state[0] and np.array_equal(after[1], np_state[1])
    assert after[2:] == np_state[2:]
    assert torch.equal(torch.random.get_rng_state(), torch_state)
