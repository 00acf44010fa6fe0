"""ADMM's cached u-step: both factorizations (samples n x n, patterns P d x P d) against a
dense solve, and ADMM on the pattern-space path (n > P d) against CVXPY."""

import numpy as np
import pytest
import torch

from mrsolve.solvers.convex_nn import ConvexProgram, add_bias, make_datafit, sample_gates
from mrsolve.solvers.convex_nn.admm_solver import _MajorizedStep, solve_admm
from mrsolve.solvers.convex_nn.cvxpy_solver import solve_cvxpy


def _program(n, k=1, kappa=0.0, loss="squared", seed=0, P=4):
    rng = np.random.default_rng(seed)
    X = add_bias(torch.from_numpy(rng.standard_normal((n, 2))))
    t = torch.sin(2 * X[:, :1]) - X[:, 1:2] * torch.arange(1, k + 1)
    if loss == "squared":
        y = t + 0.1 * torch.from_numpy(rng.standard_normal((n, k)))
    else:
        y = (t[:, 0] > 0).double()
    df = make_datafit(loss, y, torch.float64)
    return ConvexProgram(X, sample_gates(X, P, seed=seed + 1), kappa, df.y.shape[1], df, 0.02)


@pytest.mark.parametrize(("n", "pattern_space"), [(10, False), (60, True)])
@pytest.mark.parametrize("kappa", [0.0, -1.0])
def test_step_solves_the_system(n, pattern_space, kappa):
    p = _program(n, k=2, kappa=kappa)
    cs, rho = 1.5, 0.7
    step = _MajorizedStep(p, cs)
    assert step.pattern_space is pattern_space
    m = p.zeros().numel()

    def matvec(v):
        u = v.reshape(p.shape)
        fit = p.adjoint(step.sigma * p.forward(u))
        return (fit + rho * (u + cs**2 * p.cone_adjoint(p.cone(u)))).reshape(-1)

    M = torch.stack([matvec(e) for e in torch.eye(m, dtype=torch.float64)], 1)
    q = torch.from_numpy(np.random.default_rng(1).standard_normal(m))
    x = step.solve(q.reshape(p.shape), rho).reshape(-1)
    torch.testing.assert_close(x, torch.linalg.solve(M, q), atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_pattern_space_admm_matches_cvxpy(loss):
    p = _program(48, loss=loss, seed=2)
    assert _MajorizedStep(p, 1.0).pattern_space
    res = solve_admm(p, max_iter=20000, tol=1e-9, polish=False)
    u, info = res.weights, res.info
    ref = solve_cvxpy(p).weights
    assert info.converged
    assert abs(p.objective(u) - p.objective(ref)) <= 1e-5 * p.objective(ref)
    assert p.violation(u) < 1e-6
