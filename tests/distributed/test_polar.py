import itertools

import numpy as np
import pytest
import torch

from mrsolve.distributed.polar import PolarCode, bec_reliability, info_set, polar_transform


def _generator(n):
    """Explicit Kronecker power of F = [[1, 0], [1, 1]] with numpy (independent of the code)."""
    g = np.ones((1, 1))
    while g.shape[0] < n:
        g = np.kron(np.array([[1.0, 0.0], [1.0, 1.0]]), g)
    return g


def _sc_decodable(g, info, known):
    """Erasure-graph check by linear algebra: successive cancellation resolves info bit i,
    given u_0..u_{i-1}, iff row i of G restricted to the known columns is independent of
    the rows after it (they are still unknown to SC)."""
    cols = np.flatnonzero(known)

    def rank(rows):
        sub = g[rows][:, cols]
        return np.linalg.matrix_rank(sub) if sub.size else 0

    n = g.shape[0]
    return all(rank(range(i, n)) - rank(range(i + 1, n)) == 1 for i in info)


def _ml_decodable(g, info, known):
    cols = np.flatnonzero(known)
    return cols.size > 0 and np.linalg.matrix_rank(g[info][:, cols]) == len(info)


def test_bec_reliability_recursion():
    z = 0.3
    np.testing.assert_allclose(bec_reliability(2, z), [2 * z - z**2, z**2])
    zm, zp = 2 * z - z**2, z**2
    np.testing.assert_allclose(
        bec_reliability(4, z), [2 * zm - zm**2, zm**2, 2 * zp - zp**2, zp**2]
    )
    # polarization conserves the mean erasure probability (capacity)
    assert bec_reliability(64, z).mean() == pytest.approx(z)
    assert list(info_set(8, 4, 0.5)) == [3, 5, 6, 7]


def test_polar_transform_matches_kronecker():
    u = torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(polar_transform(u).numpy(), _generator(16).T @ u.numpy(), atol=1e-12)


@pytest.mark.parametrize("k", [2, 4, 6])
def test_exhaustive_erasure_patterns_n8(k):
    code = PolarCode(8, k, design_erasure=0.5)
    g = _generator(8)
    u = torch.randn(k, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(k))
    y = code.encode(u)
    np.testing.assert_allclose(
        y.numpy().reshape(8, -1), g[code.info].T @ u.numpy().reshape(k, -1), atol=1e-12
    )
    for pattern in itertools.product([False, True], repeat=8):
        known = np.array(pattern)
        ok = code.decodable(known)
        assert ok == _sc_decodable(g, code.info, known), pattern
        if ok:
            assert _ml_decodable(g, code.info, known)
        garbage = torch.where(torch.from_numpy(known)[:, None, None], y, torch.full_like(y, 1e9))
        out, rec = code.decode(garbage, known)
        assert rec.all() == ok
        # every block the decoder claims is exact, whether or not the whole pattern decodes
        if rec.any():
            err = (out[rec] - u[rec]).norm() / u[rec].norm()
            assert err < 1e-8
        assert (out[~rec] == 0).all()


def test_sampled_erasure_patterns_n64():
    code = PolarCode(64, 32, design_erasure=0.25)
    g = _generator(64)
    u = torch.randn(32, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    y = code.encode(u)
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(40):
        known = rng.random(64) > rng.uniform(0.05, 0.4)
        ok = code.decodable(known)
        outcomes.add(ok)
        assert ok == _sc_decodable(g, code.info, known)
        out, rec = code.decode(y, known)
        assert rec.all() == ok
        if ok:
            assert (out - u).norm() / u.norm() < 1e-8
    assert outcomes == {True, False}  # the sample covers both cases


def test_predicted_failure_matches_monte_carlo():
    code = PolarCode(16, 8, design_erasure=0.2)
    rng = np.random.default_rng(3)
    fails = np.mean([not code.decodable(rng.random(16) > 0.2) for _ in range(3000)])
    pred = code.predicted_failure(0.2)
    # the union of per-index erasures is an upper-bound-like prediction for SC failures
    assert fails <= pred + 0.03 and fails > 0.5 * pred


def test_polar_rejects_bad_sizes():
    with pytest.raises(ValueError, match="power of two"):
        PolarCode(12, 4)
    with pytest.raises(ValueError, match="k must"):
        PolarCode(8, 9)
    with pytest.raises(ValueError, match="known"):
        PolarCode(8, 4).decodable(np.ones(7, bool))
