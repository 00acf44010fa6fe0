"""ADMM with a cached factorization for the cone-constrained (ReLU) programs.

Returns a :class:`~.problem.SolverResult` with the cone multipliers (n, 2, k, P). For the squared
loss a few hundred ADMM iterations find the support and the nearly active cones, and
:func:`mrsolve.solvers.convex_nn.polish.polish` then solves the program exactly (ADMM alone
converges sublinearly; see ``docs/convex_nn_design.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import torch

from mrsolve.solvers.alg import AdmmResult, admm
from mrsolve.solvers.convex_nn.certificate import certificate
from mrsolve.solvers.convex_nn.polish import PolishResult, restricted_nnz
from mrsolve.solvers.convex_nn.polish import polish as polish_solution
from mrsolve.solvers.convex_nn.problem import ConvexProgram, SolverResult
from mrsolve.solvers.datafit import Quadratic
from mrsolve.solvers.prox import group_soft_threshold
from mrsolve.solvers.validation import renamed_kwargs


class _MajorizedStep:
    """The ``u``-step of majorized ADMM (Li, Sun & Toh 2016), factorized once.

    The datafit is replaced by its quadratic upper bound at the previous iterate with the
    fixed curvature ``Sigma = c w / n`` (exact for the squared loss), so every step solves
    ``(F^T Sigma F + rho B) u = rhs`` with ``B = I + G^T G`` block diagonal, the same block
    ``I + X^T X = L L^T`` for every group (``(2 D - I)^2 = I``). One ``d x d`` Cholesky
    factor and one eigendecomposition serve every iteration and every value of ``rho``,
    of whichever of two equivalent matrices is smaller:

    - samples (``n <= P d``), by Woodbury: ``K = Sigma^(1/2) F B^(-1) F^T Sigma^(1/2) =
      2 Sigma^(1/2) (H o M M^T) Sigma^(1/2)`` (``H = X B_d^(-1) X^T``, ``n x n``);
    - patterns (``n > P d``): with ``a = u_+ - u_-`` and ``b = u_+ + u_-`` the system splits
      into ``rho B b = q_+ + q_-`` and ``(2 A + rho B) a = q_+ - q_-``, ``A = Z^T Sigma Z``,
      ``Z = [M_1 X, ..., M_P X]`` (the same for every output), so only
      ``C = 2 L^(-1) A L^(-T)`` (``P d x P d``) is decomposed.
    """

    def __init__(self, p: ConvexProgram, cone_scale: float) -> None:
        X, df = p.X, p.datafit
        n, d = X.shape
        P = p.gates.shape[0]
        eye_d = torch.eye(d, dtype=X.dtype, device=X.device)
        self.p = p
        self.chol_d = torch.linalg.cholesky(eye_d + cone_scale**2 * (X.T @ X))
        sigma = (df.curvature_bound * df.weights / df.n).to(X.dtype)[:, None]
        self.sigma, self.sqrt_sigma = sigma, sigma.sqrt()
        W = p.weight
        self.pattern_space = n > P * d
        if self.pattern_space:
            XL = self._tri(X, transpose=False)  # X L^(-T), (n, d)
            Z = (self.sqrt_sigma * W)[:, :, None] * XL[:, None, :]  # Sigma^(1/2) Z L^(-T)
            Z = Z.reshape(n, P * d)
            self.lam, self.Q = torch.linalg.eigh(2 * (Z.T @ Z))
        else:
            XC = self._block_inv(X)
            K = 2 * (XC @ X.T) * (W @ W.T) * (self.sqrt_sigma * self.sqrt_sigma.T)
            self.lam, self.Q = torch.linalg.eigh(K)
        self.lam.clamp_(min=0)

    def _block_inv(self, v: torch.Tensor) -> torch.Tensor:
        d = v.shape[-1]
        return torch.cholesky_solve(v.reshape(-1, d).T, self.chol_d).T.reshape(v.shape)

    def _tri(self, v: torch.Tensor, transpose: bool) -> torch.Tensor:
        """``L^(-1) v_g`` (``transpose``: ``L^(-T) v_g``) for every ``d``-block of ``v``."""
        d = v.shape[-1]
        L = self.chol_d.T if transpose else self.chol_d
        out = torch.linalg.solve_triangular(L, v.reshape(-1, d).T, upper=transpose)
        return out.T.reshape(v.shape)

    def solve(self, q: torch.Tensor, rho: float) -> torch.Tensor:
        """``(F^T Sigma F + rho (I + G^T G))^(-1) q``."""
        if self.pattern_space:
            b = self._block_inv(q[0] + q[1]) / rho
            w = self._tri(q[0] - q[1], transpose=False)
            w = w.reshape(w.shape[0], -1)  # (k, P d)
            w = ((w @ self.Q) / (rho + self.lam)) @ self.Q.T
            a = self._tri(w.reshape(b.shape), transpose=True)
            return torch.stack([(b + a) / 2, (b - a) / 2])
        a = self._block_inv(q)
        r = self.sqrt_sigma * self.p.forward(a)
        s = self.Q @ ((self.Q.T @ r) / (rho + self.lam[:, None]))
        return (a - self._block_inv(self.p.adjoint(self.sqrt_sigma * s))) / rho

    def rhs(self, eta: torch.Tensor) -> torch.Tensor:
        """``F^T (Sigma eta - grad L(eta))`` at the previous predictions ``eta``."""
        return self.p.adjoint(self.sigma * eta - self.p.datafit.grad(eta))


@dataclass(frozen=True)
class AdmmPolishResult(AdmmResult):
    """:class:`~mrsolve.solvers.alg.AdmmResult` of the ADMM iterations plus ``polish``, the
    :class:`~.polish.PolishResult` when polishing ran (None otherwise); ``converged`` is
    True when the polished point was accepted."""

    polish: PolishResult | None = None


@renamed_kwargs(u0="init")
def solve_admm(
    p: ConvexProgram,
    init: torch.Tensor | None = None,
    max_iter: int = 10000,
    tol: float = 1e-7,
    rho: float | None = None,
    cone_scale: float = 1.0,
    callback: Callable | None = None,
    polish: bool = True,
    polish_after: int = 500,
    polish_max_nnz: float = 5e6,
) -> SolverResult:
    """ADMM, then (squared loss) exact polishing of its support.

    Args:
        p: a cone-constrained program.
        init: warm start.
        max_iter, tol: ADMM's iteration budget and residual tolerance.
        rho, cone_scale: ADMM's penalty and the weight of the cone block.
        callback: ``callback(k, u_k)`` every ADMM iteration.
        polish: for the squared loss, stop ADMM after ``polish_after`` iterations and
            polish (:mod:`.polish`); a polish at Clarabel's reduced accuracy counts when
            the certificate proves a relative gap <= max(tol, 1e-4). When the polishing
            fails, ADMM resumes from its iterate for the rest of ``max_iter`` and the
            polished point is kept if it is feasible and ADMM's is not (or is no better).
            ``info`` is an :class:`AdmmPolishResult`.
        polish_max_nnz: skip polishing (ADMM runs the whole budget) when the fit matrix
            of the program with every group would hold more non-zeros than this (memory
            and time of the conic solver).
    """
    use_polish = (
        polish
        and isinstance(p.datafit, Quadratic)
        and p.constrained
        and restricted_nnz(p, torch.ones(p.shape, dtype=p.X.dtype, device=p.X.device))
        <= polish_max_nnz
    )
    budget = min(max_iter, polish_after) if use_polish else max_iter
    run = _admm(p, init, budget, tol, rho, cone_scale, callback)
    info, polished, pinfo = run.info, None, None
    if use_polish:
        polished = polish_solution(p, run.weights)
        pinfo = polished.info
        if pinfo.status == "AlmostSolved" and not pinfo.converged:
            # Clarabel's reduced accuracy: accepted when our certificate proves a relative
            # gap <= max(tol, 1e-4) (its dual bound is rarely tighter than ~1e-5 here)
            cert = certificate(p, polished.weights, polished.multipliers)
            pinfo = replace(
                pinfo,
                converged=cert["relative_gap"] <= max(tol, 1e-4)
                and cert["constraint_violation"] <= 1e-8,
            )
        if pinfo.converged:
            info = AdmmPolishResult(**{**vars(info), "converged": True}, polish=pinfo)
            return replace(polished, info=info)
    if budget < max_iter and not info.converged:
        n_done = info.n_iter
        run = _admm(p, run.weights, max_iter - n_done, tol, rho, cone_scale, callback)
        info = replace(run.info, n_iter=run.info.n_iter + n_done)
        if pinfo is not None and pinfo.status in ("Solved", "AlmostSolved"):
            # an inaccurate polish can still beat ADMM: keep it when it is feasible (to the
            # polish's own 1e-8) and ADMM's iterate is not, or is but has no lower objective
            u, up = run.weights, polished.weights
            polish_feasible = p.violation(up) <= max(p.violation(u), 1e-8)
            admm_feasible = p.violation(u) <= 1e-8
            if polish_feasible and (not admm_feasible or p.objective(up) <= p.objective(u)):
                return replace(polished, info=AdmmPolishResult(**vars(info), polish=pinfo))
    return replace(run, info=AdmmPolishResult(**vars(info), polish=pinfo))


def _admm(
    p: ConvexProgram,
    u0: torch.Tensor | None,
    max_iter: int,
    tol: float,
    rho: float | None,
    cone_scale: float,
    callback: Callable | None,
) -> SolverResult:
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
    return SolverResult(weights=v.clone(), info=info, multipliers=(-cs * dual_s).clamp_min(0))
