"""Solvers of the convex programs: FISTA (gated ReLU), ADMM (cone constrained), CVXPY.

Each returns ``(u, info, mu)``: group weights, a small info object (iterations,
convergence) and the cone multipliers ``(n, 2, k, P)`` when the program has cones.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from mrsolve.solvers.alg import AdmmInfo, FistaInfo, admm, fista, power_iteration
from mrsolve.solvers.convex_nn.problem import ConvexProgram
from mrsolve.solvers.datafit import Logistic, Multinomial, Quadratic
from mrsolve.solvers.prox import group_soft_threshold


def solve_fista(
    p: ConvexProgram,
    u0: torch.Tensor | None = None,
    max_iter: int = 10000,
    tol: float = 1e-7,
    callback: Callable | None = None,
) -> tuple[torch.Tensor, FistaInfo, None]:
    """Restarted FISTA with backtracking on the group lasso (programs without cones)."""
    if p.constrained:
        raise ValueError("solver 'fista' handles activation='gated_relu' only; use 'admm'")
    last: dict[str, torch.Tensor] = {}

    def eta(u):
        # f and grad are evaluated at the same point: share the forward pass
        if last.get("u") is not u:
            last["u"], last["eta"] = u, p.forward(u)
        return last["eta"]

    def f(u):
        return p.datafit.value(eta(u))

    def grad(u):
        return p.adjoint(p.datafit.grad(eta(u)))

    gen = torch.Generator().manual_seed(0)
    start = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.X.device, p.X.dtype)
    lip = p.datafit.lipschitz * power_iteration(
        lambda v: p.adjoint(p.forward(v)), start, max_iter=30, tol=1e-3
    )
    u, info = fista(
        f,
        grad,
        lambda v, t: group_soft_threshold(v, p.beta * t),
        p.zeros() if u0 is None else u0,
        step=1.0 / max(lip, 1e-30),
        max_iter=max_iter,
        tol=tol,
        callback=callback,
    )
    return u, info, None


class _MajorizedStep:
    """The ``u``-step of majorized ADMM (Li, Sun & Toh 2016), factorized once.

    The datafit is replaced by its quadratic upper bound at the previous iterate with the
    fixed curvature ``Sigma = c w / n`` (exact for the squared loss), so every step solves
    ``(F^T Sigma F + rho (I + G^T G)) u = rhs``. ``I + G^T G`` is block diagonal with the
    same block ``I + X^T X`` for every group (``(2 D - I)^2 = I``), and by Woodbury only
    ``K = Sigma^(1/2) F (I + G^T G)^(-1) F^T Sigma^(1/2) = 2 Sigma^(1/2) (H o M M^T)
    Sigma^(1/2)`` (``H = X (I + X^T X)^(-1) X^T``, ``n x n``) must be inverted: one ``d x d``
    Cholesky factor and one ``n x n`` eigendecomposition serve every iteration and every
    value of ``rho``.
    """

    def __init__(self, p: ConvexProgram, cone_scale: float) -> None:
        X, df = p.X, p.datafit
        d = X.shape[1]
        eye_d = torch.eye(d, dtype=X.dtype, device=X.device)
        self.p = p
        self.chol_d = torch.linalg.cholesky(eye_d + cone_scale**2 * (X.T @ X))
        sigma = (df.curvature_bound * df.weights / df.n).to(X.dtype)[:, None]
        self.sigma, self.sqrt_sigma = sigma, sigma.sqrt()
        XC = self._block_inv(X)
        W = p.weight
        K = 2 * (XC @ X.T) * (W @ W.T) * (self.sqrt_sigma * self.sqrt_sigma.T)
        self.lam, self.Q = torch.linalg.eigh(K)
        self.lam.clamp_(min=0)

    def _block_inv(self, v: torch.Tensor) -> torch.Tensor:
        d = v.shape[-1]
        return torch.cholesky_solve(v.reshape(-1, d).T, self.chol_d).T.reshape(v.shape)

    def solve(self, q: torch.Tensor, rho: float) -> torch.Tensor:
        """``(F^T Sigma F + rho (I + G^T G))^(-1) q``."""
        a = self._block_inv(q)
        r = self.sqrt_sigma * self.p.forward(a)
        s = self.Q @ ((self.Q.T @ r) / (rho + self.lam[:, None]))
        return (a - self._block_inv(self.p.adjoint(self.sqrt_sigma * s))) / rho

    def rhs(self, eta: torch.Tensor) -> torch.Tensor:
        """``F^T (Sigma eta - grad L(eta))`` at the previous predictions ``eta``."""
        return self.p.adjoint(self.sigma * eta - self.p.datafit.grad(eta))


def solve_admm(
    p: ConvexProgram,
    u0: torch.Tensor | None = None,
    max_iter: int = 10000,
    tol: float = 1e-7,
    rho: float | None = None,
    cone_scale: float = 1.0,
    callback: Callable | None = None,
) -> tuple[torch.Tensor, AdmmInfo, torch.Tensor]:
    """Majorized ADMM on ``min L(F u) + beta sum ||v_g|| + 1[s >= 0]`` s.t. ``v = u,
    s = G u``.

    The ``u``-step is one cached Woodbury solve (:class:`_MajorizedStep`), the others are
    group soft-thresholding and a clamp. Returns the group-sparse copy ``v`` and the cone
    multipliers ``mu = -rho * (scaled dual of s = G u) >= 0``.
    """
    if not p.constrained:
        raise ValueError("solver 'admm' handles the cone-constrained activations; use 'fista'")
    shape, n_u = p.shape, p.zeros().numel()
    cs = float(cone_scale)
    step = _MajorizedStep(p, cs)
    state = {"eta": p.forward(p.zeros() if u0 is None else u0)}

    def A(u):
        return torch.cat([u.reshape(-1), cs * p.cone(u).reshape(-1)])

    def split(z):
        return z[:n_u].reshape(shape), z[n_u:].reshape(p.X.shape[0], *shape[:-1])

    def AH(z):
        a, b = split(z)
        return a + cs * p.cone_adjoint(b)

    def x_update(v, rho):
        u = step.solve(step.rhs(state["eta"]) + rho * AH(v), rho)
        state["eta"] = p.forward(u)
        return u

    def z_update(v, rho):
        a, b = split(v)
        return torch.cat(
            [group_soft_threshold(a, p.beta / rho).reshape(-1), b.clamp_min(0).reshape(-1)]
        )

    x0 = p.zeros() if u0 is None else u0
    z0 = A(x0)
    z0[n_u:].clamp_(min=0)
    if rho is None:
        rho = max(p.beta, 1e-3 * p.datafit.lipschitz)
    _, z, info = admm(
        x_update,
        z_update,
        A,
        AH,
        x0,
        z0,
        rho=rho,
        max_iter=max_iter,
        tol_abs=tol,
        tol_rel=tol,
        callback=callback,
    )
    v, _ = split(z)
    _, dual_s = split(info.rho * info.dual)
    return v.clone(), info, (-cs * dual_s).clamp_min(0)


def solve_cvxpy(
    p: ConvexProgram, solver: str = "CLARABEL", **solver_options
) -> tuple[torch.Tensor, dict, torch.Tensor | None]:
    """The same program in CVXPY (reference for small problems; float64 on the CPU)."""
    import cvxpy as cp

    X = p.X.detach().cpu().double().numpy()
    W = p.weight.cpu().double().numpy()
    S = p.sign.cpu().double().numpy()
    y = p.datafit.y.cpu().double().numpy()
    w = (p.datafit.weights / p.datafit.n).cpu().double().numpy()
    d = X.shape[1]
    k, P = p.n_outputs, p.gates.shape[0]
    n_sign = 2 if p.constrained else 1
    V = [[cp.Variable((d, P)) for _ in range(k)] for _ in range(n_sign)]
    cols = []
    for c in range(k):
        U = V[0][c] - V[1][c] if p.constrained else V[0][c]
        cols.append(cp.sum(cp.multiply(W, X @ U), axis=1))
    if isinstance(p.datafit, Quadratic):
        loss = sum(w @ cp.square(cols[c] - y[:, c]) for c in range(k)) / 2
    elif isinstance(p.datafit, Multinomial):
        E = cp.vstack(cols).T
        loss = w @ (cp.log_sum_exp(E, axis=1) - cp.sum(cp.multiply(y, E), axis=1))
    elif isinstance(p.datafit, Logistic):
        loss = sum(w @ (cp.logistic(cols[c]) - cp.multiply(y[:, c], cols[c])) for c in range(k))
    else:
        raise TypeError(f"datafit {type(p.datafit).__name__} has no CVXPY form here")
    penalty = sum(cp.sum(cp.norm(Vjc, 2, axis=0)) for row in V for Vjc in row)
    cones = [cp.multiply(S, X @ Vjc) >= 0 for row in V for Vjc in row] if p.constrained else []
    prob = cp.Problem(cp.Minimize(loss + p.beta * penalty), cones)
    prob.solve(solver=solver, **solver_options)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"CVXPY ({solver}) returned status {prob.status}")
    u = np.stack([np.stack([Vjc.value.T for Vjc in row]) for row in V])
    u = torch.from_numpy(u if p.constrained else u[0]).to(p.X.device, p.X.dtype)
    mu = None
    if p.constrained:
        duals = np.stack(
            [np.stack([con.dual_value for con in cones[j * k : (j + 1) * k]]) for j in range(2)]
        )
        mu = torch.from_numpy(duals).permute(2, 0, 1, 3).to(p.X.device, p.X.dtype)
    return u, {"status": prob.status, "solver": solver, "value": prob.value}, mu
