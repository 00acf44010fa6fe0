"""FISTA, ADMM, CG and power iteration against independent references."""

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso

from mrsolve.solvers.alg import admm, cg, fista, power_iteration
from mrsolve.solvers.linop import MatMul
from mrsolve.solvers.prox import soft_threshold


def _lasso_problem(seed=0, n=30, d=12):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    y = X[:, :3] @ np.array([1.0, -2.0, 0.5]) + 0.1 * rng.standard_normal(n)
    alpha = 0.05
    ref = Lasso(alpha=alpha, fit_intercept=False, tol=1e-12, max_iter=100000).fit(X, y).coef_
    return torch.from_numpy(X), torch.from_numpy(y), alpha, ref


@pytest.mark.parametrize("restart", ["gradient", "function", None])
@pytest.mark.parametrize("backtrack", [True, False])
def test_fista_lasso_matches_sklearn(restart, backtrack):
    X, y, alpha, ref = _lasso_problem()
    n = X.shape[0]
    lip = power_iteration(lambda v: X.T @ (X @ v) / n, torch.ones(X.shape[1], dtype=X.dtype))
    seen = []
    x, info = fista(
        lambda b: 0.5 * ((X @ b - y) ** 2).mean(),
        lambda b: X.T @ (X @ b - y) / n,
        lambda v, t: soft_threshold(v, alpha * t),
        torch.zeros(X.shape[1], dtype=X.dtype),
        step=None if backtrack else 1 / lip,
        max_iter=5000,
        tol=1e-10,
        backtrack=backtrack,
        restart=restart,
        callback=lambda k, b: seen.append(k),
    )
    assert info.converged and len(seen) == info.n_iter
    np.testing.assert_allclose(x.numpy(), ref, atol=1e-6)


def test_fista_rejects_bad_arguments():
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="restart"):
        fista(lambda x: x.sum(), lambda x: x, lambda v, t: v, z, restart="never")
    with pytest.raises(ValueError, match="step"):
        fista(lambda x: x.sum(), lambda x: x, lambda v, t: v, z, backtrack=False)
    with pytest.raises(ValueError, match="max_iter"):
        fista(lambda x: x.sum(), lambda x: x, lambda v, t: v, z, max_iter=0)


def test_admm_lasso_matches_sklearn_and_returns_multiplier():
    X, y, alpha, ref = _lasso_problem(1)
    n, d = X.shape
    # min 1/(2n)||X b - y||^2 + alpha ||z||_1  s.t.  b = z
    chol = {}

    def x_update(v, rho):
        if rho not in chol:
            chol[rho] = torch.linalg.cholesky(X.T @ X / n + rho * torch.eye(d, dtype=X.dtype))
        rhs = (X.T @ y / n + rho * v)[:, None]
        return torch.cholesky_solve(rhs, chol[rho])[:, 0]

    _, z, info = admm(
        x_update,
        lambda v, rho: soft_threshold(v, alpha / rho),
        lambda b: b,
        lambda z: z,
        torch.zeros(d, dtype=X.dtype),
        torch.zeros(d, dtype=X.dtype),
        max_iter=5000,
        tol_abs=1e-10,
        tol_rel=1e-10,
    )
    assert info.converged
    np.testing.assert_allclose(z.numpy(), ref, atol=1e-6)
    # the multiplier rho*u is the negative gradient of the smooth part (KKT)
    grad = X.T @ (X @ z - y) / n
    np.testing.assert_allclose((info.rho * info.dual).numpy(), -grad.numpy(), atol=1e-6)


def test_preconditioned_cg_against_linalg():
    """An ill-conditioned system (condition 1e6): plain CG needs ~n steps, CG
    preconditioned by an approximate inverse (A's Cholesky factor in float32) a few."""
    g = torch.Generator().manual_seed(4)
    Q = torch.linalg.qr(torch.randn(60, 60, generator=g, dtype=torch.float64))[0]
    A = Q @ torch.diag(torch.logspace(0, 6, 60, dtype=torch.float64)) @ Q.T
    b = torch.randn(60, generator=g, dtype=torch.float64)
    L32 = torch.linalg.cholesky(A.float())

    def precondition(r):
        return torch.cholesky_solve(r.float()[:, None], L32)[:, 0].double()

    x, info = cg(lambda v: A @ v, b, max_iter=30, tol=1e-12, preconditioner=precondition)
    assert info.converged and info.n_iter <= 10
    ref = torch.linalg.solve(A, b)
    assert float(torch.linalg.vector_norm(x - ref) / torch.linalg.vector_norm(ref)) < 1e-9
    _, plain = cg(lambda v: A @ v, b, max_iter=30, tol=1e-12)
    assert not plain.converged


def test_cg_and_power_iteration_against_linalg():
    g = torch.Generator().manual_seed(3)
    B = torch.randn(20, 8, generator=g, dtype=torch.float64)
    A = B.T @ B + 0.1 * torch.eye(8, dtype=torch.float64)
    b = torch.randn(8, generator=g, dtype=torch.float64)
    x, info = cg(lambda v: A @ v, b, max_iter=100, tol=1e-12)
    assert info.converged
    torch.testing.assert_close(x, torch.linalg.solve(A, b))
    lam = power_iteration(lambda v: A @ v, torch.ones(8, dtype=torch.float64), 1000, 1e-12)
    assert abs(lam - float(torch.linalg.eigvalsh(A)[-1])) < 1e-8 * lam
    lam_op = power_iteration(MatMul((8,), B.to(torch.complex128)), max_iter=1000, tol=1e-12)
    assert abs(lam_op - float(torch.linalg.eigvalsh(B.T @ B)[-1])) < 1e-6 * lam_op
    with pytest.raises(ValueError, match="x0"):
        power_iteration(lambda v: v)
