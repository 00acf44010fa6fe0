"""The interior-point method for the squared-loss cone programs: its conic algebra, its
Woodbury coupling in both spaces, and its solutions and certificates against CVXPY."""

import numpy as np
import pytest
import torch

from mrsolve.solvers.convex_nn import (
    ConvexProgram,
    add_bias,
    ipm_solver,
    make_datafit,
    sample_gates,
    solve,
)
from mrsolve.solvers.convex_nn.cvxpy_solver import solve_cvxpy
from mrsolve.solvers.convex_nn.ipm_solver import (
    _Coupling,
    _jdiv,
    _jprod,
    _nt_scaling,
    _OuterProducts,
    _soc_step,
    solve_ipm,
    solve_ipm_exact,
)


def _program(n=40, d=3, P=6, k=1, kappa=0.0, beta=0.01, seed=0, weights=None):
    rng = np.random.default_rng(seed)
    X = add_bias(torch.from_numpy(rng.standard_normal((n, d))))
    t = torch.sin(2 * X[:, :1]) + 0.5 * X[:, 1:2] * torch.arange(1, k + 1) / k
    y = t + 0.1 * torch.from_numpy(rng.standard_normal((n, k)))
    df = make_datafit("squared", y, torch.float64)
    if weights is not None:
        df = type(df)(df.y, torch.from_numpy(weights))
    return ConvexProgram(X, sample_gates(X, P, seed=seed + 1), kappa, k, df, beta)


def _on(p, device):
    """``p`` with its arrays on ``device``."""
    df = p.datafit
    df = type(df)(df.y.to(device), df.weights.to(device))
    return ConvexProgram(p.X.to(device), p.gates.to(device), p.kappa, p.n_outputs, df, p.beta)


def _interior(rng, G, m):
    v = torch.from_numpy(rng.standard_normal((G, m)))
    v[:, 0] = torch.linalg.vector_norm(v[:, 1:], dim=1) + torch.from_numpy(rng.random(G))
    return v


def test_nesterov_todd_scaling_and_jordan_algebra():
    rng = np.random.default_rng(0)
    s, z = _interior(rng, 7, 5), _interior(rng, 7, 5)
    Wop, Winvop, Winv2, lam = _nt_scaling(s, z)
    W, Winv = Wop.dense(), Winvop.dense()
    v = torch.from_numpy(rng.standard_normal((7, 5)))  # the operators are the matrices
    torch.testing.assert_close(Wop @ v, (W @ v[:, :, None])[..., 0], atol=1e-12, rtol=0)
    torch.testing.assert_close(Winvop @ v, (Winv @ v[:, :, None])[..., 0], atol=1e-12, rtol=0)
    eye = torch.eye(5, dtype=torch.float64)
    torch.testing.assert_close(W @ Winv, eye.expand(7, 5, 5), atol=1e-12, rtol=0)
    torch.testing.assert_close(W.mT, W, atol=0, rtol=0)
    torch.testing.assert_close((W @ z[:, :, None])[..., 0], lam, atol=1e-12, rtol=0)
    torch.testing.assert_close((Winv @ s[:, :, None])[..., 0], lam, atol=1e-12, rtol=0)
    torch.testing.assert_close(Winv2.dense(), torch.linalg.inv(W @ W), atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(Winv2 @ v, Winvop @ (Winvop @ v), atol=1e-10, rtol=1e-10)
    d = torch.from_numpy(rng.standard_normal((7, 5)))
    torch.testing.assert_close(_jprod(lam, _jdiv(lam, d)), d, atol=1e-12, rtol=0)


def test_step_to_the_cone_boundary():
    rng = np.random.default_rng(1)
    x, dx = _interior(rng, 50, 4), torch.from_numpy(rng.standard_normal((50, 4)))
    dx[:5] = _interior(rng, 5, 4)  # directions inside the cone: no boundary
    a = _soc_step(x, dx)
    assert bool(torch.isinf(a[:5]).all())
    fin = torch.isfinite(a)
    edge = x[fin] + a[fin, None] * dx[fin]
    gap = edge[:, 0] - torch.linalg.vector_norm(edge[:, 1:], dim=1)
    assert float(gap.abs().max()) < 1e-9
    inside = x[fin] + 0.999 * a[fin, None] * dx[fin]
    assert bool((inside[:, 0] > torch.linalg.vector_norm(inside[:, 1:], dim=1)).all())


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize(
    ("n", "sample_space", "scale", "factors"),
    [
        (12, True, 1.0, torch.float32),
        (60, False, 1.0, torch.float32),
        (12, True, 1e9, torch.float64),
    ],
)
def test_coupling_in_both_spaces(n, sample_space, scale, factors, shared):
    """(C^-1 + H)^-1 y = (C - C L (I + L^T C L)^-1 L^T C) y, C = F_a^T Sigma F_a, to
    float64 accuracy whether the factors are float32 (small H) or float64 (H ~ 1e9), and
    whether each output has its own factor or (float32 only) both share one."""
    rng = np.random.default_rng(2)
    w = rng.random(n) + 0.5
    p = _program(n=n, d=2, P=4, k=2, seed=3, weights=w)
    c = _Coupling(p)
    assert c.sample_space is sample_space
    P, d = 4, 3
    B = torch.from_numpy(rng.standard_normal((2 * 2 * P, d + 1, d + 1)))
    Binv = scale * (B @ B.transpose(1, 2) + torch.eye(d + 1, dtype=torch.float64))
    c.shared = shared
    assert c.factor(Binv, 0.0)
    assert {L.dtype for L in c.chol} == {factors}
    assert len(c.chol) == (1 if shared and factors == torch.float32 else 2)
    y = torch.from_numpy(rng.standard_normal((2, P, d)))
    Xd = p.X
    sw = torch.from_numpy(w / w.mean() / n).sqrt()
    Z = ((sw[:, None] * p.weight)[:, :, None] * Xd[:, None, :]).reshape(n, P * d)
    C = Z.T @ Z
    H = Binv[:, 1:, 1:].reshape(2, 2, P, d, d).sum(0)
    for k in range(2):
        L = torch.block_diag(*torch.linalg.cholesky(H[k]))
        M = torch.eye(P * d, dtype=torch.float64) + L.T @ C @ L
        ref = C @ y[k].reshape(-1) - C @ L @ torch.linalg.solve(M, L.T @ C @ y[k].reshape(-1))
        torch.testing.assert_close(c.apply(y)[k].reshape(-1), ref, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize(
    ("kappa", "k", "n", "seed"),
    [(0.0, 1, 40, 0), (0.0, 2, 40, 1), (0.01, 1, 40, 2), (-1.0, 1, 40, 3), (0.0, 2, 90, 4)],
)
def test_ipm_matches_cvxpy_with_a_certified_gap(kappa, k, n, seed, device):
    """n = 90 > P d = 24 runs the pattern-space coupling; odd seeds weight the samples."""
    w = np.random.default_rng(seed).random(n) + 0.2 if seed % 2 else None
    p = _program(n=n, k=k, kappa=kappa, seed=seed, weights=w)
    res = solve_ipm(_on(p, device), tol=1e-7)
    u, info, mu = res.weights, res.info, res.multipliers
    u, mu = u.cpu(), mu.cpu()
    ref = solve_cvxpy(p).weights
    opt = p.objective(ref)
    assert info.converged and info.gap <= 1e-7 and info.n_iter < 60
    assert p.violation(u) <= 1e-12  # interior iterates: feasible without any tolerance
    assert info.dual <= opt * (1 + 1e-8)  # a true lower bound
    assert abs(p.objective(u) - opt) <= 1e-6 * opt
    assert mu.shape == (n, 2, k, p.gates.shape[0]) and bool((mu >= 0).all())


@pytest.mark.parametrize(("k", "n"), [(1, 40), (2, 40), (2, 90)])
def test_reused_factorizations_reach_the_cvxpy_optimum(k, n, monkeypatch):
    """With a factorization reused as the CG preconditioner on every problem size
    (``_REUSE_FLOPS = 0``): fewer factorizations than iterations, the same certified
    optimum as CVXPY, in both coupling spaces and with several outputs."""
    monkeypatch.setattr(ipm_solver, "_REUSE_FLOPS", 0.0)
    calls = []
    factor = ipm_solver._Coupling._factor
    monkeypatch.setattr(
        ipm_solver._Coupling, "_factor", lambda c, L, Zt: calls.append(1) or factor(c, L, Zt)
    )
    p = _program(n=n, k=k, seed=20 + n + k)
    res = solve_ipm(p, tol=1e-7)
    opt = p.objective(solve_cvxpy(p).weights)
    assert res.info.converged and res.info.gap <= 1e-7
    assert len(calls) < res.info.n_iter  # some iterations reused a factorization
    assert p.violation(res.weights) <= 1e-12
    assert res.info.dual <= opt * (1 + 1e-8)
    assert abs(p.objective(res.weights) - opt) <= 1e-6 * opt


def _iterates(p, tol):
    seen: list[torch.Tensor] = []
    res = solve_ipm(p, tol=tol, callback=lambda it, v: seen.append(v.clone()))
    u, info = res.weights, res.info
    return u, info, seen


def test_each_output_steps_as_its_own_program():
    """The outputs are separate programs: solved together, each follows the iterates it
    follows alone (its own start, centering and step length) and stops on its own gap;
    the joint solve (which stops on the gap of the sum) is never slower than the slowest
    output, and its certified bound is the sum of theirs over as many iterations."""
    p = _program(n=40, k=3, seed=9)
    u, info, joint = _iterates(p, 1e-6)
    y = p.datafit.y
    duals, iters = 0.0, []
    for c in range(3):
        df = make_datafit("squared", y[:, c : c + 1], torch.float64)
        q = ConvexProgram(p.X, p.gates, p.kappa, 1, df, p.beta)
        uc, ic, alone = _iterates(q, 1e-6)
        assert ic.converged
        # equal up to the early iterations' inexact solves (relative residual 1e-6, with a
        # preconditioner shared by the outputs when solved together): ~1e-5; one step
        # length for all outputs would differ at O(1)
        for a, b in zip(alone, joint, strict=False):
            scale = float(a.abs().max())
            torch.testing.assert_close(b[:, c : c + 1], a, rtol=1e-4, atol=1e-4 * scale)
        # the returned points: equally good within the certified tolerance (their group
        # rescalings, near-singular least-squares problems, need not agree to rounding)
        assert q.objective(u[:, c : c + 1]) == pytest.approx(q.objective(uc), rel=1e-6)
        iters.append(ic.n_iter)
        duals += solve_ipm(q, max_iter=info.n_iter + 1, tol=1e-6).info.dual  # same points
    assert info.converged and info.n_iter <= max(iters) and len(set(iters)) > 1
    assert info.dual <= p.objective(solve_cvxpy(p).weights) * (1 + 1e-8)
    assert info.dual == pytest.approx(duals, rel=1e-9)


def test_rank_deficient_data_is_solved_in_its_row_space():
    """A constant (zero after centering) and a duplicated feature: the IPM works in the
    row space of X and returns weights there, at CVXPY's optimum."""
    rng = np.random.default_rng(10)
    Z = rng.standard_normal((50, 3))
    X = add_bias(torch.from_numpy(np.column_stack([Z, Z[:, 0], np.zeros(50)])))
    y = torch.from_numpy(np.abs(Z[:, :1]) - Z[:, 1:2] + 0.05 * rng.standard_normal((50, 1)))
    df = make_datafit("squared", y, torch.float64)
    p = ConvexProgram(X, sample_gates(X, 6, seed=11), 0.0, 1, df, 0.01)
    res = solve_ipm(p, tol=1e-7)
    u, info, mu = res.weights, res.info, res.multipliers
    opt = p.objective(solve_cvxpy(p).weights)
    assert info.converged and p.violation(u) <= 1e-12
    assert abs(p.objective(u) - opt) <= 1e-6 * opt and info.dual <= opt * (1 + 1e-8)
    assert float(u[..., 4].abs().max()) == 0  # no weight on the zero feature
    torch.testing.assert_close(u[..., 0], u[..., 3])  # equal weights on the duplicates
    assert mu.shape == (50, 2, 1, 6)


def test_loose_tolerance_still_certifies_and_stays_feasible():
    p = _program(seed=5, beta=0.005)
    res = solve_ipm(p, tol=1e-2)
    u, info = res.weights, res.info
    opt = p.objective(solve_cvxpy(p).weights)
    assert info.converged and info.gaps[-1] <= 1e-2
    assert 0 <= p.objective(u) - opt <= 1e-2 * p.objective(u)
    assert p.violation(u) <= 1e-12


def test_below_its_reach_the_exact_polish_finishes():
    p = _program(seed=6)
    res = solve_ipm_exact(p, tol=1e-14)
    u, info = res.weights, res.info
    ref = solve_cvxpy(p).weights
    assert info.status == "stalled" and info.polish is not None and info.polish.converged
    assert info.converged
    assert abs(p.objective(u) - p.objective(ref)) <= 1e-8 * p.objective(ref)
    assert p.violation(u) <= 1e-8


def test_solve_uses_the_ipm_and_falls_back_to_admm_without_interior():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((30, 2))
    y = np.abs(X[:, 0]) - X[:, 1] + 0.05 * rng.standard_normal(30)
    gates = sample_gates(add_bias(torch.from_numpy(X)), 6, seed=8)
    sol = solve(X, y, gates, 0.01, activation="relu", bias=True, n_fresh=16)
    ref = solve(X, y, gates, 0.01, activation="relu", bias=True, solver="cvxpy", certify=False)
    assert type(sol.info).__name__ == "IpmResult" and sol.info.converged
    assert abs(sol.objective - ref.objective) <= 1e-5 * ref.objective
    assert sol.certificate["relative_gap"] <= 1e-6 and sol.certificate["constraint_violation"] == 0
    # a data row orthogonal to a gate: the gate is not inside its cone, ADMM takes over
    X[0] = 0.0
    gates[0] = torch.tensor([1.0, -2.0, 0.0], dtype=gates.dtype)
    sol = solve(X, y, gates, 0.01, activation="relu", bias=True, solver="ipm", n_fresh=0)
    ref = solve(X, y, gates, 0.01, activation="relu", bias=True, solver="cvxpy", certify=False)
    assert type(sol.info).__name__ == "AdmmPolishResult"
    assert abs(sol.objective - ref.objective) <= 1e-5 * ref.objective


def test_float32_input_and_errors():
    p = _program(seed=9)
    X32 = p.X[:, :-1].float()
    y32 = p.datafit.y[:, 0].float()
    sol = solve(X32, y32, p.gates.float(), 0.01, activation="relu", bias=True, tol=1e-5)
    ref = solve_cvxpy(p).weights
    assert sol.weights.dtype == torch.float32
    assert abs(sol.objective - p.objective(ref)) <= 1e-4 * p.objective(ref)
    with pytest.raises(ValueError, match="loss='squared'"):
        solve(X32, (y32 > 0).long(), p.gates, 0.01, loss="logistic", bias=True, solver="ipm")
    with pytest.raises(TypeError, match="solver options"):
        solve(X32, y32, p.gates, 0.01, bias=True, solver="ipm", rho=1.0)


def test_outer_products_weighted_sums_match_explicit_products():
    rng = np.random.default_rng(3)
    X = torch.from_numpy(rng.standard_normal((9, 4)))
    w = torch.from_numpy(rng.random((9, 3)))
    want = torch.stack([X.T @ torch.diag(w[:, j]) @ X for j in range(3)])
    torch.testing.assert_close(_OuterProducts(X).weighted(w), want, atol=1e-12, rtol=0)


@pytest.mark.parametrize(("n", "d", "k"), [(24, 11, 1), (40, 3, 5)])
def test_wide_and_many_output_programs_match_cvxpy(n, d, k):
    """The blind benchmark's shapes in small: n ~ 2 d (d + 1 = 12 per group, n < P d) and
    five outputs."""
    p = _program(n=n, d=d, k=k, seed=7)
    res = solve_ipm(p, tol=1e-7)
    opt = p.objective(solve_cvxpy(p).weights)
    assert res.info.converged and p.violation(res.weights) <= 1e-12
    assert res.info.dual <= opt * (1 + 1e-8)
    assert abs(p.objective(res.weights) - opt) <= 1e-6 * opt
