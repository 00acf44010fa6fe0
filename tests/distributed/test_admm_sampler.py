"""The one-process-per-agent runtime gives the vectorized runner's chains for the same seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from rich.console import Console

from mrsolve.distributed.admm_sampler import run_agents
from mrsolve.distributed.admm_sampler_app import sample
from mrsolve.solvers.sampling import (
    METHODS,
    BayesianLinearRegression,
    BayesianLogisticRegression,
    make_graph,
    run,
)

F64 = torch.float64


def _linear(n_agents=4, seed=0, numpy_parts=False):
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(20, 2)) for _ in range(n_agents)]
    y = [Xi @ np.array([1.0, -2.0]) + rng.normal(0, 2, 20) for Xi in X]
    if not numpy_parts:
        X, y = [torch.as_tensor(a) for a in X], [torch.as_tensor(a) for a in y]
    return BayesianLinearRegression(X, y, noise_sd=2.0, prior_var=10.0, dtype=F64)


def _logistic(n_agents=4, seed=1):
    rng = np.random.default_rng(seed)
    X = [torch.as_tensor(rng.normal(size=(10 + 5 * i, 2))) for i in range(n_agents)]
    y = [
        (torch.rand(len(Xi), generator=torch.Generator().manual_seed(i)) < 0.5).double()
        for i, Xi in enumerate(X)
    ]
    return BayesianLogisticRegression(X, y, prior_var=5.0, dtype=F64)


@pytest.mark.parametrize("method", METHODS)
def test_in_process_agents_match_vectorized(method):
    T, G = _linear(), make_graph("cycle", 4)
    a = run(method, T, G, 6, 5, seed=3)
    b = run_agents(method, T, G, 6, 5, seed=3)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)


def test_in_process_agents_match_vectorized_for_logistic_dadmms_on_a_star():
    T, G = _logistic(), make_graph("star", 4)
    a = run("dadmms", T, G, 5, 3, seed=5)
    b = run_agents("dadmms", T, G, 5, 3, seed=5)
    torch.testing.assert_close(b, a, rtol=1e-9, atol=1e-9)


def test_ray_actors_match_vectorized_on_a_four_agent_cycle(ray_cluster):
    T, G = _linear(), make_graph("cycle", 4)
    seen = []
    a = run("dadmms", T, G, 4, 3, seed=11)
    b = run_agents(
        "dadmms", T, G, 4, 3, seed=11, engine="ray", callback=lambda k, n, x: seen.append(k)
    )
    torch.testing.assert_close(b, a, rtol=1e-12, atol=1e-12)
    assert seen == [1, 2, 3, 4]


def test_agents_built_from_local_builders_and_bad_local_targets():
    T, G = _linear(), make_graph("cycle", 4)
    builders = [lambda i=i: T.local(i) for i in range(4)]
    a = run("dsgld", T, G, 3, 2, seed=0)
    torch.testing.assert_close(run_agents("dsgld", builders, G, 3, 2, seed=0), a)
    with pytest.raises(ValueError, match="exactly one agent"):
        run_agents("dsgld", [T] * 4, G, 3, 2, seed=0)
    with pytest.raises(ValueError, match="4 agents"):
        run_agents("dsgld", T, make_graph("cycle", 3), 3, 2, seed=0)
    with pytest.raises(ValueError, match="engine"):
        run_agents("dsgld", T, G, 3, 2, seed=0, engine="mpi")


def test_sample_shows_progress_and_returns_numpy_for_numpy_data():
    T = _linear(numpy_parts=True)
    console = Console(record=True, width=80, force_terminal=False)
    seen = []
    out = sample(
        T, "cycle", 5, n_chains=3, seed=2, console=console, callback=lambda k, n, x: seen.append(k)
    )
    assert isinstance(out, np.ndarray) and out.shape == (6, 4, 3, 2)
    assert "5/5" in console.export_text()
    assert seen == [1, 2, 3, 4, 5]
    np.testing.assert_array_equal(out, run("dadmms", T, make_graph("cycle", 4), 5, 3, seed=2))
    local = sample(T, "cycle", 5, n_chains=3, seed=2, engine="local", progress=False)
    np.testing.assert_allclose(local, out, rtol=1e-12)
    # Local log-densities given as callables: f_i = |x - c_i|^2 / 2, MAP = mean of the c_i.
    centres = [torch.tensor([1.0, 2.0]), torch.tensor([3.0, -2.0]), torch.tensor([2.0, 0.0])]
    fns = [lambda x, c=c: 0.5 * ((x - c) ** 2).sum(-1) for c in centres]
    chains = sample(
        fns, "complete", 60, method="admm", dim=2, n_chains=2, seed=0, progress=False, rho=0.5
    )
    torch.testing.assert_close(chains[-1], torch.tensor([2.0, 0.0]).expand(3, 2, 2))
    with pytest.raises(ValueError, match="dim"):
        sample(fns, "complete", 2)
