"""ADMM + polishing of the cone-constrained programs against CVXPY (Clarabel via CVXPY)."""

import numpy as np
import pytest
import torch

from mrsolve.solvers.convex_nn import ConvexProgram, add_bias, make_datafit, sample_gates, solve
from mrsolve.solvers.convex_nn.admm_solver import solve_admm
from mrsolve.solvers.convex_nn.cvxpy_solver import solve_cvxpy
from mrsolve.solvers.convex_nn.polish import polish


def _program(n=40, d=3, P=8, k=1, kappa=0.0, beta=0.01, seed=0, loss="squared"):
    rng = np.random.default_rng(seed)
    X = add_bias(torch.from_numpy(rng.standard_normal((n, d))))
    t = torch.sin(2 * X[:, :1]) + 0.5 * X[:, 1:2] * torch.arange(1, k + 1) / k
    y = t + 0.1 * torch.from_numpy(rng.standard_normal((n, k)))
    if loss == "logistic":
        y = (y[:, 0] > 0).double()
    gates = sample_gates(X, P, seed=seed + 1)
    df = make_datafit(loss, y, torch.float64)
    return ConvexProgram(X, gates, kappa, df.y.shape[1], df, beta)


@pytest.mark.parametrize(
    ("kappa", "k", "seed"), [(0.0, 1, 0), (0.0, 2, 1), (0.01, 1, 2), (-1.0, 1, 3), (0.0, 1, 4)]
)
def test_polished_admm_matches_cvxpy(kappa, k, seed):
    p = _program(k=k, kappa=kappa, seed=seed)
    res = solve_admm(p, polish_after=100)
    u, info = res.weights, res.info
    ref = solve_cvxpy(p).weights
    assert info.polish is not None and info.polish.converged and info.converged
    assert info.n_iter <= 100
    assert abs(p.objective(u) - p.objective(ref)) <= 1e-6 * p.objective(ref)
    assert p.violation(u) < 1e-8


def test_polish_recovers_from_a_poor_start():
    """20 ADMM iterations leave the wrong support and rows: the cutting planes and the
    dual check of the dropped groups must still reach the optimum."""
    p = _program(n=60, P=12, seed=5, beta=0.005)
    u_rough = solve_admm(p, max_iter=20, polish=False).weights
    ref = solve_cvxpy(p).weights
    assert p.objective(u_rough) > p.objective(ref) * (1 + 1e-3) or p.violation(u_rough) > 1e-3
    res = polish(p, u_rough)
    u, mu, info = res.weights, res.multipliers, res.info
    assert info.converged and info.rounds >= 2
    assert abs(p.objective(u) - p.objective(ref)) <= 1e-6 * p.objective(ref)
    assert p.violation(u) < 1e-8
    assert mu.shape == (p.X.shape[0], *p.shape[:-1]) and bool((mu >= 0).all())


def test_polished_solution_certifies_optimality():
    X = np.random.default_rng(7).standard_normal((50, 2))
    y = np.abs(X[:, 0]) - X[:, 1] + 0.05 * np.random.default_rng(8).standard_normal(50)
    gates = sample_gates(add_bias(torch.from_numpy(X)), 10, seed=9)
    sol = solve(X, y, gates, 0.01, activation="relu", bias=True, n_fresh=16, solver="admm")
    ref = solve(X, y, gates, 0.01, activation="relu", bias=True, solver="cvxpy", certify=False)
    assert sol.info.polish.converged
    assert abs(sol.objective - ref.objective) <= 1e-6 * ref.objective
    cert = sol.certificate
    assert cert["constraint_violation"] < 1e-8
    assert cert["dual"] <= ref.objective * (1 + 1e-7)
    assert cert["relative_gap"] < 1e-6


def test_without_polish_admm_runs_the_whole_budget():
    p = _program(seed=6)
    res = solve_admm(p, max_iter=300, polish=False)
    u, info = res.weights, res.info
    assert info.polish is None and info.n_iter == 300
    res = solve_admm(p, max_iter=300, polish_max_nnz=0)
    u2, info2 = res.weights, res.info  # too large: skipped
    assert info2.polish is None and info2.n_iter == 300
    torch.testing.assert_close(u, u2)


def test_polish_rejects_other_losses():
    p = _program(loss="logistic")
    with pytest.raises(ValueError, match="squared loss"):
        polish(p, p.zeros())


def test_polish_of_an_all_zero_solution():
    """beta above the largest dual bound: zero is optimal and passes the dual check."""
    p = _program(beta=10.0, seed=9)
    res = polish(p, p.zeros())
    u, mu, info = res.weights, res.multipliers, res.info
    assert info.converged and info.n_groups == 0
    assert float(u.abs().max()) == 0.0 and float(mu.abs().max()) == 0.0
    with pytest.raises(ValueError, match="max_rounds"):
        polish(p, p.zeros(), max_rounds=0)


@pytest.mark.parametrize(("shrink", "accepted"), [(1.0, True), (0.9, False)])
def test_reduced_accuracy_polish_counts_only_when_certified(monkeypatch, shrink, accepted):
    """A polish at Clarabel's reduced accuracy ("AlmostSolved"): the exact optimum is
    accepted on its certificate; a feasible but suboptimal point (the optimum shrunk, which
    keeps every cone constraint) is not, ADMM resumes, and the feasible point is kept over
    ADMM's infeasible iterate."""
    from mrsolve.solvers.convex_nn import admm_solver
    from mrsolve.solvers.convex_nn.polish import PolishResult
    from mrsolve.solvers.convex_nn.problem import SolverResult

    p = _program(n=60, P=12, seed=5, beta=0.005)
    res = solve_cvxpy(p)
    ref, mu_ref = res.weights, res.multipliers
    stand_in = shrink * ref

    def almost_solved(program, u):
        info = PolishResult(converged=False, status="AlmostSolved")
        return SolverResult(weights=stand_in, info=info, multipliers=mu_ref)

    monkeypatch.setattr(admm_solver, "polish_solution", almost_solved)
    res = solve_admm(p, max_iter=40, polish_after=20)
    u, info = res.weights, res.info
    assert info.converged == accepted and info.polish.status == "AlmostSolved"
    assert info.n_iter == (20 if accepted else 40)
    assert torch.equal(u, stand_in)
