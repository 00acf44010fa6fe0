"""A primal-dual interior-point method for the cone-constrained programs with squared loss.

The program (ReLU, leaky ReLU, absolute value; :mod:`.problem`)::

    min_{u, t}  L(F u) + beta sum_g t_g   s.t.  A_g u_g >= 0 (A_g = (2 D_p - I) X, n rows),
                                              (t_g, u_g) in the second-order cone

is solved by Mehrotra's predictor-corrector with Nesterov-Todd scaling (the method of
CVXOPT's ``coneqp``, Vandenberghe 2010), written for its structure instead of handing it
to a general conic solver, because that structure makes every Newton step cheap:

- the primal iterate is always *exactly* feasible: every group starts inside its cone
  (near the analytic center of the cone around its gate vector, which lies in the
  interior: ``(2 D_p - I) X g_p = |X g_p| > 0``), the slacks are ``A_g u_g`` themselves,
  and the step length keeps them positive, so only the dual residual has to vanish;
- the Hessian is a block diagonal part (one ``(d+1) x (d+1)`` block per group: the
  barrier of its ``n`` cone rows ``X^T diag(z/s) X`` and of its second-order cone) plus
  the fit ``F^T Sigma F``, which has rank ``min(n, P d)`` and is shared by both signs of
  a pattern. By Woodbury the Newton system reduces to one SPD system ``I + Z H Z^T`` per
  output of size ``min(n, P d)`` (``Z = Sigma^(1/2) F_a`` or its QR factor, :class:`_Coupling`):
  one symmetric rank-k product and one Cholesky factorization per iteration (float32
  while accurate enough, refined by CG on the float64 system; early on, one for all
  outputs, see ``_EARLY_GAP``), reused by the predictor and the corrector. (A general
  conic solver such as Clarabel factors the whole sparse KKT system instead; timings in
  ``docs/convex_nn_design.md``.)

Every iteration computes a certificate of the current point for free: ``theta = grad
L(F u)`` and the cone multipliers ``z`` give the dual bound of
:func:`.certificate.dual_bounds`; the primal side is the better of the point and its best
group rescaling (:func:`.group_scaling.rescale_groups`, feasible too), and the method stops
when the certified relative gap is at most ``tol``. The returned point is feasible and its
gap is proven, whatever the accuracy of the last Newton step.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from mrsolve.solvers.alg import cg
from mrsolve.solvers.convex_nn.certificate import dual_bounds
from mrsolve.solvers.convex_nn.group_scaling import rescale_groups
from mrsolve.solvers.convex_nn.polish import PolishResult, polish
from mrsolve.solvers.convex_nn.problem import ConvexProgram, SolverResult
from mrsolve.solvers.datafit import Quadratic
from mrsolve.solvers.validation import RenamedAttributes, deprecated_names


@dataclass(frozen=True)
class IpmResult(RenamedAttributes):
    """What :func:`solve_ipm` did. ``gap`` is the certified relative duality gap of the
    returned point (one entry per iteration in ``gaps``); ``dual`` its dual bound."""

    _renamed: ClassVar[dict[str, str]] = {"relative_gap": "gap"}

    n_iter: int = 0
    converged: bool = False
    gap: float = math.inf
    dual: float = -math.inf
    gaps: list[float] = field(default_factory=list)
    status: str = ""
    polish: PolishResult | None = None  # set by solve_ipm_exact when it polished


def _jprod(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Jordan product of second-order-cone vectors (last axis): ``(a.b, a0 b1 + b0 a1)``."""
    return torch.cat(
        [(a * b).sum(-1, keepdim=True), a[..., :1] * b[..., 1:] + b[..., :1] * a[..., 1:]], -1
    )


def _jdiv(lam: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """``v`` with ``lam o v = d`` (Jordan product, ``lam`` in the cone's interior)."""
    l0, l1, d0, d1 = lam[..., :1], lam[..., 1:], d[..., :1], d[..., 1:]
    det = l0**2 - (l1**2).sum(-1, keepdim=True)
    v0 = (l0 * d0 - (l1 * d1).sum(-1, keepdim=True)) / det
    return torch.cat([v0, (d1 - v0 * l1) / l0], -1)


def _soc_det(x: torch.Tensor) -> torch.Tensor:
    return x[..., 0] ** 2 - (x[..., 1:] ** 2).sum(-1)


class _Boost:
    """``c [[w0, w1'], [w1, I + w1 w1' / (1 + w0)]]`` for ``w0^2 - ||w1||^2 = 1`` (one per
    row of ``w0`` ``(G, 1)``, ``w1`` ``(G, m - 1)``, ``c`` ``(G, 1)``): applied in ``O(m)``
    per group (``@``) and made dense (``dense()``) only where a matrix is needed."""

    def __init__(self, w0: torch.Tensor, w1: torch.Tensor, c: torch.Tensor) -> None:
        self.w0, self.w1, self.c = w0, w1, c

    def __matmul__(self, v: torch.Tensor) -> torch.Tensor:
        """The product with ``v`` ``(G, m)``."""
        v0, v1 = v[:, :1], v[:, 1:]
        dot = (self.w1 * v1).sum(-1, keepdim=True)
        top = self.w0 * v0 + dot
        return self.c * torch.cat([top, v0 * self.w1 + v1 + self.w1 * dot / (1 + self.w0)], -1)

    def dense(self) -> torch.Tensor:
        """The matrices ``(G, m, m)``: ``c (v v^T + diag(-1, 1, ..., 1))`` with ``v = (1 + w0,
        w1) / sqrt(1 + w0)``, one outer product (a third of the passes of filling the blocks
        one by one)."""
        v = torch.cat([1 + self.w0, self.w1], -1) * (self.c / (1 + self.w0)).sqrt()
        M = v[:, :, None] * v[:, None, :]
        diag = M.diagonal(dim1=-2, dim2=-1)
        diag += self.c
        diag[:, 0] -= 2 * self.c[:, 0]
        return M


def _nt_scaling(s: torch.Tensor, z: torch.Tensor):
    """Nesterov-Todd scaling of second-order-cone pairs ``(s, z)`` ``(G, m)``: ``W``
    (symmetric, ``W z = W^(-1) s = lam``), ``W^(-1)`` and ``W^(-2)`` as :class:`_Boost`
    operators, and ``lam``."""
    ds, dz = _soc_det(s).sqrt(), _soc_det(z).sqrt()
    sb, zb = s / ds[:, None], z / dz[:, None]
    gamma = ((1 + (sb * zb).sum(-1)) / 2).sqrt()
    zj = zb.clone()
    zj[:, 1:] = -zj[:, 1:]
    w = (sb + zj) / (2 * gamma[:, None])  # w' J w = 1
    eta = (ds / dz).sqrt()[:, None]
    w0, w1 = w[:, :1], w[:, 1:]
    W = _Boost(w0, w1, eta)
    Winv = _Boost(w0, -w1, 1 / eta)
    # the square of a boost is the boost of twice its rapidity: no batched product
    Winv2 = _Boost(2 * w0**2 - 1, -2 * w0 * w1, 1 / eta**2)
    return W, Winv, Winv2, W @ z


def _soc_step(x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Largest ``a`` with ``x + a dx`` in the second-order cone (``x`` interior; inf if none)."""
    a = _soc_det(dx)
    b = x[..., 0] * dx[..., 0] - (x[..., 1:] * dx[..., 1:]).sum(-1)
    c = _soc_det(x)
    disc = (b**2 - a * c).clamp_min(0).sqrt()
    inf = torch.full_like(a, math.inf)
    # stable roots of a t^2 + 2 b t + c (c > 0): c / (disc - b) when b <= 0
    root_small = c / (disc - b).clamp_min(1e-300)
    neg_a = torch.where(b > 0, (b + disc) / (-a).clamp_min(1e-300), root_small)
    pos_a = torch.where((b < 0) & (b**2 >= a * c), root_small, inf)
    return torch.where(a < 0, neg_a, pos_a)


def _lin_step(x: torch.Tensor, dx: torch.Tensor, dims: tuple[int, ...]) -> torch.Tensor:
    """Largest ``a`` with ``x + a dx >= 0`` over the axes ``dims`` (``x > 0``; inf if none):
    ``1 / max(-dx / x)``, one division and one reduction over the large arrays."""
    rate = torch.amax(-dx / x, dim=dims)
    return torch.where(rate > 0, 1 / rate.clamp_min(1e-300), math.inf)


class _OuterProducts:
    """The products ``x_i x_i^T`` of the rows of ``X`` ``(n, d)``, one triangle of each
    (half the flops of the weighted sums over the full ``d x d``, the largest cost of an
    iteration after the coupling)."""

    def __init__(self, X: torch.Tensor) -> None:
        d = X.shape[1]
        rows, cols = torch.triu_indices(d, d, device=X.device)
        self.packed = X[:, rows] * X[:, cols]  # (n, d (d + 1) / 2)
        # the packed index of every entry of the full d x d (one gather unpacks the products:
        # 1.4x faster than two indexed writes of the triangles at d = 151)
        full = torch.empty(d, d, dtype=torch.long, device=X.device)
        full[rows, cols] = full[cols, rows] = torch.arange(len(rows), device=X.device)
        self.full, self.d = full.reshape(-1), d

    def weighted(self, w: torch.Tensor) -> torch.Tensor:
        """``X^T diag(w_j) X`` ``(m, d, d)`` for the weights ``w`` ``(n, m)``."""
        return (w.T @ self.packed)[:, self.full].reshape(w.shape[1], self.d, self.d)


def _centers(
    X: torch.Tensor, sign: torch.Tensor, ghat: torch.Tensor, XX: _OuterProducts, n_iter: int = 8
) -> torch.Tensor:
    """Unit vectors near the analytic centers of the cones ``{v : S_p X v >= 0, ||v|| <= 1}``
    (damped Newton from the gates ``ghat`` (P, d)): a start whose rows all have comparable
    slack, which saves the IPM iterations over starting at the gates (see
    ``docs/convex_nn_design.md``)."""
    n, d = X.shape
    eye = torch.eye(d, dtype=X.dtype, device=X.device)
    v = ghat / 2
    for _ in range(n_iter):
        s = (X @ v.T) * sign  # (n, P), > 0
        r = (v**2).sum(-1)
        g = -((sign / s).T @ X) + (2 * n / (1 - r))[:, None] * v
        H = XX.weighted(1 / s**2)
        H = H + n * (
            (2 / (1 - r))[:, None, None] * eye
            + 4 * v[:, :, None] * v[:, None, :] / ((1 - r) ** 2)[:, None, None]
        )
        dv = -torch.linalg.solve(H, g[:, :, None])[..., 0]
        ds = (X @ dv.T) * sign
        a1 = torch.where(ds < 0, -s / ds.clamp_max(-1e-300), math.inf).amin(0)
        qa, qb, qc = (dv**2).sum(-1), (v * dv).sum(-1), r - 1  # ||v + a dv|| < 1
        a2 = (-qb + (qb**2 - qa * qc).sqrt()) / qa.clamp_min(1e-300)
        v = v + torch.clamp(0.95 * torch.minimum(a1, a2), max=1.0)[:, None] * dv
    return v / torch.linalg.vector_norm(v, dim=1, keepdim=True)


def _shifted_cholesky(Vt: torch.Tensor) -> torch.Tensor | None:
    """The lower Cholesky factor of ``I + Vt^T Vt`` for a contiguous ``Vt`` ``(r, m)``
    (None when the factorization fails). On the CPU through BLAS ``?syrk`` (one triangle:
    half the flops of the GEMM, the largest cost of an iteration; torch exposes no
    symmetric rank-k update) and LAPACK ``?potrf`` in place on its column-major result:
    no copy, and faster than torch's factorization of a row-major copy."""
    if Vt.device.type != "cpu":
        K = Vt.T @ Vt
        K.diagonal().add_(1.0)
        L, err = torch.linalg.cholesky_ex(K)
        return None if bool(err) else L
    from scipy.linalg.blas import dsyrk, ssyrk
    from scipy.linalg.lapack import dpotrf, spotrf

    double = Vt.dtype == torch.float64
    K = (dsyrk if double else ssyrk)(1.0, Vt.numpy().T, lower=1)  # column-major
    torch.from_numpy(K).diagonal().add_(1.0)
    L, err = (dpotrf if double else spotrf)(K, lower=1, overwrite_a=1, clean=0)
    return None if err else torch.from_numpy(L)  # the strict upper triangle is not read


def _blas_threads():
    """A context holding scipy's BLAS and LAPACK (:func:`_shifted_cholesky`) to torch's
    thread count during a solve (oversubscribed BLAS threads slow a busy machine down)."""
    return _blas_controller().limit(limits=torch.get_num_threads(), user_api="blas")


@functools.cache
def _blas_controller():
    """threadpoolctl's view of the loaded BLAS libraries (first called after scipy's)."""
    from scipy.linalg import blas  # noqa: F401  (loads scipy's BLAS)
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _cholesky_solve(L: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``(L L^T)^(-1) b`` for lower factors ``L`` ``(..., m, m)`` and ``b`` ``(..., m)``,
    by two triangular solves (faster than ``torch.cholesky_solve`` on the CPU)."""
    y = torch.linalg.solve_triangular(L, b[..., None], upper=False)
    return torch.linalg.solve_triangular(L.mT, y, upper=True)[..., 0]


# Float32 factors are used while their rounding, at most ~2^-24 tr(K) in norm, perturbs the
# system I + K (eigenvalues >= 1) by less than this: below 1 the float32 system stays positive
# definite and conjugate gradients on the exact float64 system converge in a few more steps
# than with a float64 factor, at half its cost (1e-2 before: 10-15 % slower fits, the same
# iterations and objectives, docs/convex_nn_design.md).
_FLOAT32_PERTURBATION = 1.0
_CG_RTOL = 1e-13  # relative residual of the coupling solves (the float64 direct solve's level)
_CG_MAX_STEPS = 20
# Early iterations (certified relative gap above _EARLY_GAP) need only approximate Newton
# directions: the iterates stay exactly feasible and every certificate is exact whatever the
# direction. Their coupling solves stop at a relative residual of _EARLY_CG_RTOL, and the
# outputs share one factorization, of the mean of their systems, as the preconditioner
# (one Gram product and factorization per iteration instead of one per output) until
# conjugate gradients need more than _SHARED_MAX_STEPS steps with it (measurements in
# docs/convex_nn_design.md).
_EARLY_GAP = 0.1
_EARLY_CG_RTOL = 1e-6
_SHARED_MAX_STEPS = 20
# Above a certified relative gap of _REFINE_GAP the coupling solves stop at _MID_CG_RTOL and
# a factorization preconditions up to _REUSE_AGE later iterations while the last solves took
# at most _REUSE_STEPS CG steps: a CG step (products with X, ~1 ms) is ~1/40 of the Gram
# product and factorization it saves, and the directions stay as accurate as the IPM needs
# (the same iterations; docs/convex_nn_design.md). Only where the Gram product has at least
# _REUSE_FLOPS flops (m^2 P d): below, a factorization costs a few CG steps. Below
# _REFINE_GAP, fresh factors to 1e-13 and iterative refinement carry the iterates to the
# ~1e-8 gaps float64 allows.
_REFINE_GAP = 1e-4
_MID_CG_RTOL = 1e-8
_REUSE_AGE = 3
_REUSE_STEPS = 12
_REUSE_FLOPS = 1e8
# The certificates rescale the groups (:func:`.group_scaling.rescale_groups`) once an
# output's relative gap is within this factor of tol (before, its cost would buy nothing)
_RESCALE_GAP = 30.0


class _Coupling:
    """``g = (C^(-1) + H_a)^(-1) y`` for the fit Hessian ``C = F_a^T Sigma F_a`` in
    pattern space (``a_p = u_+p - u_-p``) and the block diagonal ``H_a`` ``(k, P, d, d)``,
    as ``g = Z^T (I + K)^(-1) Z y`` with ``C = Z^T Z``, ``K = Z H_a Z^T = V V^T``, ``V = Z L``,
    ``L L^T = H_a`` (Woodbury, no difference of large terms). ``Z`` is ``Sigma^(1/2) F_a``
    (``n`` rows) or, when ``n > P d``, its triangular QR factor (``P d`` rows): the system
    has ``min(n, P d)`` rows. (The form ``C - C L (I + L^T C L)^(-1) L^T C`` avoids the QR
    but cancels catastrophically when ``H_a`` is large: on the synthetic n = 3000 set it
    drove the gap back up to 1 from 2e-3.)

    ``I + K`` is factored in float32 while that is accurate enough (see
    ``_FLOAT32_PERTURBATION``; the Gram product and the factorization, the bulk of an
    iteration, then take half the time) and in float64 otherwise; either way its solves are
    conjugate gradients on the exact float64 system, preconditioned by the factors (or by
    one factor shared by the outputs, see ``_EARLY_GAP``), to the relative residual
    ``rtol``; ``steps`` is the largest number of CG steps a solve took since the last
    :meth:`factor`."""

    def __init__(self, p: ConvexProgram, XX: _OuterProducts | None = None) -> None:
        X, W = p.X, p.weight
        n, d = X.shape
        P = W.shape[1]
        sq = (p.datafit.weights / p.datafit.n).sqrt().to(X.dtype)  # Sigma^(1/2)
        self.p, self.X, self.W, self.sq = p, X, W, sq
        self.sample_space = n <= P * d
        self.Z = None  # the n-row form multiplies through the factors of Z (see _times_z)
        if not self.sample_space:
            Z = ((sq[:, None] * W)[:, :, None] * X[:, None, :]).reshape(n, P * d)
            self.Z = torch.linalg.qr(Z, mode="r")[1]  # C = Z^T Z = R^T R
        m = min(n, P * d)
        self.dims = (P, d, m)
        self.Zt32 = self._zt(torch.float32)  # (P, d, m), the float32 factors' operand
        # tr(K) = sum_p tr(H_a,p Z_p^T Z_p): the blocks Z_p^T Z_p = X^T diag(Sigma M_p^2) X of C
        XX = _OuterProducts(X) if XX is None else XX
        self.C_diag = XX.weighted((sq[:, None] * W) ** 2)
        self.shared, self.rtol, self.steps = False, _CG_RTOL, 0
        self.chol: list[torch.Tensor] = []
        self.reusable = m * m * P * d >= _REUSE_FLOPS
        self.reuse, self.age = False, 0  # see _REUSE_AGE

    def _zt(self, dtype: torch.dtype) -> torch.Tensor:
        """``Z^T`` as ``(P, d, m)`` in ``dtype``."""
        P, d, m = self.dims
        if self.Z is not None:
            return self.Z.T.reshape(P, d, m).to(dtype).contiguous()
        scale = (self.sq[:, None] * self.W).T.to(dtype)  # (P, n)
        return scale[:, None, :] * self.X.T.to(dtype)[None]

    @functools.cached_property
    def Zt(self) -> torch.Tensor:
        """``Z^T`` ``(P, d, m)`` in float64, for the float64 factors (made when first needed)."""
        return self._zt(self.X.dtype)

    def factor(self, Binv: torch.Tensor, jitter: float) -> bool:
        """Factor for the inverse blocks ``Binv`` ``(2 k P, d+1, d+1)`` (their pattern
        blocks' diagonal raised by the relative ``jitter``), one factor for all outputs
        when ``self.shared`` and float32 factors are accurate enough; False when a
        factorization fails (the Newton systems have lost positive definiteness)."""
        P, d, _ = self.dims
        k = Binv.shape[0] // (2 * P)
        Ha = Binv[:, 1:, 1:].reshape(2, k, P, d, d).sum(0)
        Ha.diagonal(dim1=-2, dim2=-1).mul_(1 + jitter)  # see _NewtonSystem
        last, self.Ha, self.steps = self.steps, Ha, 0
        if (
            self.reuse
            and self.chol
            and len(self.chol) == (1 if self.shared and k > 1 else k)
            and self.age < _REUSE_AGE
            and last <= _REUSE_STEPS
        ):
            self.age += 1
            return True
        self.age = 0
        L, err = torch.linalg.cholesky_ex(Ha)
        if bool(err.any()):
            return False
        trace = float(torch.einsum("cpij,pji->c", Ha, self.C_diag).max())
        single = trace * 2.0**-24 <= _FLOAT32_PERTURBATION
        if single and self.shared and k > 1:
            mean = torch.linalg.cholesky_ex(Ha.mean(0, keepdim=True))[0]
            if self._factor(mean.float(), self.Zt32):
                return True
        if single and self._factor(L.float(), self.Zt32):
            return True
        return self._factor(L, self.Zt)

    def _factor(self, L: torch.Tensor, Zt: torch.Tensor) -> bool:
        P, d, m = Zt.shape
        self.chol = []
        for c in range(L.shape[0]):  # one output at a time: V is m x P d
            chol = _shifted_cholesky((L[c].mT @ Zt).reshape(P * d, m))  # of V^T
            if chol is None:
                return False
            self.chol.append(chol)
        return True

    def _times_z(self, h: torch.Tensor) -> torch.Tensor:
        """``h Z`` ``(k, P d)`` for ``h`` ``(k, m)``. In the ``n``-row form through the
        factors of ``Z = Sigma^(1/2) [M_p X]_p``: the program's masked products (small GEMMs
        with ``X`` ``(n, d)``) instead of a pass over the ``n x P d`` matrix, which bounds the
        product by memory bandwidth (the CG steps' cost, docs/convex_nn_design.md)."""
        if not self.sample_space:
            return h @ self.Z
        return self.p.masked_adjoint((h * self.sq).T).reshape(h.shape[0], -1)

    def _times_zt(self, g: torch.Tensor) -> torch.Tensor:
        """``g Z^T`` ``(k, m)`` for ``g`` ``(k, P d)`` (see :meth:`_times_z`)."""
        if not self.sample_space:
            return g @ self.Z.T
        P, d, _ = self.dims
        return self.p.masked(g.reshape(g.shape[0], P, d)).T * self.sq

    def _system(self, h: torch.Tensor) -> torch.Tensor:
        """``(I + K) h`` for ``h`` ``(k, m)``, in float64."""
        k = h.shape[0]
        P, d, _ = self.dims
        g = (self.Ha @ self._times_z(h).reshape(k, P, d, 1)).reshape(k, P * d)
        return h + self._times_zt(g)

    def _precondition(self, r: torch.Tensor) -> torch.Tensor:
        if len(self.chol) == 1:  # one factor for all outputs: one solve with k columns
            L = self.chol[0]
            h = torch.linalg.solve_triangular(L, r.T.to(L.dtype), upper=False)
            return torch.linalg.solve_triangular(L.mT, h, upper=True).T.to(r.dtype)
        solves = [_cholesky_solve(L, b.to(L.dtype)) for L, b in zip(self.chol, r, strict=True)]
        return torch.stack(solves).to(r.dtype)

    def apply(self, y: torch.Tensor) -> torch.Tensor:
        k = y.shape[0]
        f = self._times_zt(y.reshape(k, -1))  # (k, m)
        h, info = cg(
            self._system,
            f,
            self._precondition(f),
            max_iter=2 * _SHARED_MAX_STEPS if len(self.chol) < k or self.age else _CG_MAX_STEPS,
            tol=self.rtol,
            preconditioner=self._precondition,
        )
        self.steps = max(self.steps, info.n_iter)
        return self._times_z(h).reshape(y.shape)


class _NewtonSystem:
    """``H = F^T Sigma F + G^T W^(-2) G`` at one iterate (``G``: the cone rows and the
    second-order cones), factorized by blocks and :class:`_Coupling`.

    The diagonal of every factored block is raised by a relative ``jitter`` (a
    regularization invariant to the blocks' scaling, which spans ~1e20 near the optimum):
    1e-14, or 1e-12 / 1e-10 when a factorization fails; :meth:`solve` can refine against
    the exact :meth:`apply` (the jitter levels tried are in ``docs/convex_nn_design.md``)."""

    def __init__(
        self,
        p: ConvexProgram,
        coupling: _Coupling,
        XX: _OuterProducts,
        s_lin: torch.Tensor,
        z_lin: torch.Tensor,
        Winv2: _Boost,
        sigma_w: torch.Tensor,
    ) -> None:
        n = p.X.shape[0]
        G = Winv2.w0.shape[0]
        self.p, self.coupling, self.sigma_w = p, coupling, sigma_w
        self.ratio, self.Winv2 = z_lin / s_lin, Winv2
        B = Winv2.dense()  # SOC barrier + X^T diag(z / s) X per group
        B[:, 1:, 1:] += XX.weighted(self.ratio.reshape(n, G))
        self.ok = False
        diag = B.diagonal(dim1=-2, dim2=-1)
        plain = diag.clone()
        for jitter in (1e-14, 1e-12, 1e-10):
            diag.copy_(plain * (1 + jitter))
            self.chol_B, err = torch.linalg.cholesky_ex(B)
            if not bool(err.any()) and coupling.factor(torch.cholesky_inverse(self.chol_B), jitter):
                self.ok = True
                break

    def _solve(self, rhs: torch.Tensor) -> torch.Tensor:
        G, m = rhs.shape
        a = _cholesky_solve(self.chol_B, rhs)
        ya = a[:, 1:].reshape(2, -1, self.p.gates.shape[0], m - 1)
        g = self.coupling.apply(ya[0] - ya[1])
        corr = torch.zeros_like(a)
        corr[:, 1:] = torch.stack([g, -g]).reshape(G, m - 1)
        return a - _cholesky_solve(self.chol_B, corr)

    def apply(self, dx: torch.Tensor) -> torch.Tensor:
        p = self.p
        du = dx[:, 1:].reshape(p.shape)
        out = self.Winv2 @ dx
        fit = p.adjoint(self.sigma_w[:, None] * p.forward(du))
        out[:, 1:] += (fit + p.cone_adjoint(self.ratio * p.cone(du))).reshape(dx.shape[0], -1)
        return out

    def solve(self, rhs: torch.Tensor, refine: int = 0) -> torch.Tensor:
        dx = self._solve(rhs)
        for _ in range(refine):
            dx = dx + self._solve(rhs - self.apply(dx))
        return dx


def solve_ipm(
    p: ConvexProgram,
    max_iter: int = 80,
    tol: float = 1e-6,
    callback: Callable | None = None,
) -> SolverResult:
    """Interior-point solution of a cone-constrained program with the squared loss.

    Args:
        p: the program (``p.kappa`` not None, ``p.datafit`` a ``Quadratic``, ``beta > 0``).
        max_iter: Newton iterations (each: one factorization, two solves).
        tol: stop at a certified relative duality gap ``<= tol`` of a feasible point.
        callback: ``callback(k, u_k)`` after every iteration.

    Returns:
        :class:`~.problem.SolverResult`: the best certified point ``(2, k, P, d)`` (always
        feasible), :class:`IpmResult` as ``info`` and its cone multipliers ``(n, 2, k, P)``;
        ``dual_bound`` is ``info.dual``. Computed in float64,
        returned in ``p``'s dtype. ``info.converged`` is False when the iterations ran out
        (``info.status`` ``"max_iter"``) or the Newton systems lost accuracy
        (``"stalled"``, typically near relative gaps of 1e-8); ``"no interior"`` when it
        cannot start (``beta = 0``, or a data row orthogonal to a gate, so the gate is not
        strictly inside its cone).
    """
    q, V = _row_space_program(p)
    if V is None:
        with _blas_threads():
            return _solve_ipm(p, max_iter, tol, callback)
    inner = None if callback is None else (lambda it, w: callback(it, w @ V.T))
    with _blas_threads():
        res = _solve_ipm(q, max_iter, tol, inner)
    return dataclasses.replace(res, weights=res.weights @ V.T)


def _row_space_program(p: ConvexProgram) -> tuple[ConvexProgram, torch.Tensor | None]:
    """``p`` in the row space of its data when ``X`` ``(n, d)`` has rank ``r < d``: data
    ``X V`` and gates ``V^T g`` (the same patterns) for an orthonormal basis ``V`` ``(d, r)``
    (None when ``r = d``). An exact reduction (the cones and the fit see only ``X u``, and
    for a given ``X u`` the norm ``||u||`` is least in the row space) that shrinks every
    Newton system: constant features (digits has three) or collinear ones. Not reduced
    when a row lies within rounding of a gate's hyperplane (its pattern could flip)."""
    _, sv, Vh = torch.linalg.svd(p.X, full_matrices=False)
    rank = int((sv > sv[0] * max(p.X.shape) * torch.finfo(sv.dtype).eps).sum())
    if rank == p.X.shape[1] or rank == 0:
        return p, None
    V = Vh[:rank].T
    q = dataclasses.replace(p, X=p.X @ V, gates=p.gates @ V)
    if not torch.equal(q.sign, p.sign):  # rows at rounding distance from a gate's hyperplane
        return p, None
    return q, V


def _output_program(p: ConvexProgram, idx: torch.Tensor) -> ConvexProgram:
    """The program of the outputs ``idx`` alone (the programs separate by output)."""
    df = p.datafit
    off = df.offset
    off = None if off.ndim == 0 else off if off.shape[1] == 1 else off[:, idx]
    return dataclasses.replace(
        p, n_outputs=len(idx), datafit=Quadratic(df.y[:, idx], df.weights, off)
    )


def _solve_ipm(
    p: ConvexProgram, max_iter: int, tol: float, callback: Callable | None
) -> SolverResult:
    if not p.constrained or not isinstance(p.datafit, Quadratic):
        raise ValueError("solve_ipm handles the cone-constrained programs with the squared loss")
    dtype = p.X.dtype
    if dtype != torch.float64:
        off = p.datafit.offset  # 0-d: the default zero offset
        off = None if off.ndim == 0 else off.double()
        df = Quadratic(p.datafit.y.double(), p.datafit.weights.double(), off)
        p = ConvexProgram(p.X.double(), p.gates.double(), p.kappa, p.n_outputs, df, p.beta)
    X, df, beta = p.X, p.datafit, p.beta
    n, d = X.shape
    shape = p.shape
    k, P = shape[1], shape[2]
    ghat = p.gates / torch.linalg.vector_norm(p.gates, dim=1, keepdim=True)
    margin = (X @ ghat.T).abs()  # (n, P): slack of each row at the gate
    if beta <= 0 or bool((margin <= 1e-10 * margin.max()).any()):
        return SolverResult(
            weights=p.zeros().to(dtype),
            info=IpmResult(status="no interior"),
            multipliers=torch.zeros(n, *shape[:-1], dtype=dtype),
            dual_bound=-math.inf,
        )
    XX = _OuterProducts(X)
    ghat = _centers(X, p.sign, ghat, XX)
    # start: u_g = c v_p for both signs (prediction 0), t_g = 2 c, on the central path;
    # c is 100x the scale at which 2P such neurons would fit the output (a large start
    # takes fewer iterations), set output by output like everything else
    spread = df.y.std(0) if n > 1 else torch.ones(k, dtype=X.dtype, device=X.device)
    scale = torch.where(spread > 0, spread, 1.0)
    c0 = (100 * scale / float((X @ ghat.T).abs().mean()) / P)[None, :, None, None]
    x = torch.empty(2, k, P, d + 1, dtype=X.dtype, device=X.device)  # (t_g, u_g) per group
    x[..., 1:] = c0 * ghat
    x[..., :1] = 2 * c0
    mu0 = 1.5 * beta * c0  # the SOC multiplier then starts at beta, its optimal value
    z_lin = mu0[..., 0] / p.cone(x[..., 1:])
    z_soc = x.clone()
    z_soc[..., 1:] = -z_soc[..., 1:]
    z_soc = mu0 * z_soc / _soc_det(x)[..., None]
    coupling = _Coupling(p, XX)
    step = _NewtonStep(coupling, XX, 2 * P * (n + 1))  # barrier degree of one output
    # each output is its own program: it keeps its best certified point, and stops
    # stepping once that is within tol (converged) or has not improved for 4 iterations
    best_u, best_mu = x[..., 1:].clone(), z_lin.clone()
    best_rel = torch.full((k,), math.inf, dtype=X.dtype, device=X.device)  # relative gaps
    best_gap, best_primal = torch.zeros(2, k, dtype=X.dtype, device=X.device)
    best_it = torch.zeros(k, dtype=torch.long, device=X.device)
    programs: dict[tuple[int, ...], ConvexProgram] = {}
    share = True  # while one factorization preconditions all outputs well (see _EARLY_GAP)
    n_iter, converged, status, rel_gap, dual_value = 0, False, "", math.inf, -math.inf
    gaps: list[float] = []
    for it in range(max_iter):
        u = x[..., 1:]
        xu = p.project(u)
        eta = p.forward(u, xu)
        dual_u = p.adjoint(df.grad(eta)) - p.cone_adjoint(z_lin)  # F_g^T theta - A_g^T z_g
        # certificate of the current (feasible) point, by output, or of its best rescaling
        # once that could meet tol (it settles the gap up to ~5x lower)
        primal = df.value_by_output(eta) + beta * p.group_norms(u).sum((0, 2))
        dual = dual_bounds(df, eta, torch.linalg.vector_norm(dual_u, dim=-1), beta)
        candidate = u
        if float(((primal - dual) / primal.abs().clamp_min(1e-300)).min()) <= _RESCALE_GAP * tol:
            rescaled, primal_rescaled = rescale_groups(p, u, xu)
            take = primal_rescaled < primal
            candidate = torch.where(take[None, :, None, None], rescaled, u)
            primal = torch.minimum(primal, primal_rescaled)
        gap = primal - dual
        rel = gap / primal.abs().clamp_min(1e-300)
        better = rel < best_rel
        best_rel = torch.where(better, rel, best_rel)
        best_gap = torch.where(better, gap, best_gap)
        best_primal = torch.where(better, primal, best_primal)
        best_it = torch.where(better, it, best_it)
        best_u[:, better], best_mu[:, :, better] = candidate[:, better], z_lin[:, :, better]
        total = float(best_primal.sum())
        rel_gap = float(best_gap.sum()) / max(abs(total), 1e-300)
        dual_value = total - float(best_gap.sum())
        gaps.append(rel_gap)
        if rel_gap <= tol:
            converged = True
            break
        active = (best_rel > tol) & (it - best_it < 4)
        if not bool(active.any()):  # no progress: the Newton systems have lost accuracy
            status = "stalled"
            break
        idx = active.nonzero()[:, 0]
        key = tuple(idx.tolist())
        if key not in programs:
            programs[key] = _output_program(p, idx)
        early, fine = rel_gap > _EARLY_GAP, float(rel[idx].min()) < _REFINE_GAP
        coupling.shared, coupling.reuse = early and share, coupling.reusable and not fine
        coupling.rtol = _EARLY_CG_RTOL if early else _CG_RTOL if fine else _MID_CG_RTOL
        moved = step(
            programs[key],
            x[:, idx],
            z_lin[:, :, idx],
            z_soc[:, idx],
            dual_u[:, idx],
            refine=2 if fine else 0,
        )
        if moved is None:  # a factorization failed: the Newton systems have lost accuracy
            status = "stalled"
            break
        x[:, idx], z_lin[:, :, idx], z_soc[:, idx] = moved
        share = share and coupling.steps <= _SHARED_MAX_STEPS
        n_iter = it + 1
        if callback is not None:
            callback(it, x[..., 1:])
    else:
        status = "max_iter"
    info = IpmResult(
        n_iter=n_iter, converged=converged, gap=rel_gap, dual=dual_value, gaps=gaps, status=status
    )
    return SolverResult(
        weights=best_u.to(dtype),
        info=info,
        multipliers=best_mu.clamp_min(0).to(dtype),
        dual_bound=dual_value,
    )


class _NewtonStep:
    """One Mehrotra predictor-corrector step of the programs of some outputs, each with its
    own centering and step length: they are separate programs sharing one batched Newton
    system, and one step length for all would hold every output to the slowest one."""

    def __init__(self, coupling: _Coupling, XX: _OuterProducts, nu: int) -> None:
        self.coupling, self.XX, self.nu = coupling, XX, nu

    def __call__(self, p, x, z_lin, z_soc, dual_u, refine):
        """New ``(x, z_lin, z_soc)`` for ``p``'s outputs from the point ``x``
        ``(2, k, P, d + 1)``, its multipliers and dual residual ``dual_u``
        ``(2, k, P, d)``; None when a factorization failed."""
        shape, beta = x.shape, p.beta
        G, m = shape[0] * shape[1] * shape[2], shape[3]
        xg, zg = x.reshape(G, m), z_soc.reshape(G, m)
        s_lin = p.cone(x[..., 1:])
        r_x = torch.cat([(beta - z_soc[..., :1]), dual_u - z_soc[..., 1:]], -1).reshape(G, m)
        W, Winv, Winv2, lam = _nt_scaling(xg, zg)
        lam_lin2 = s_lin * z_lin
        mu = (lam_lin2.sum((0, 1, 3)) + (x * z_soc).sum((0, 2, 3))) / self.nu  # (k,)
        sigma_w = (p.datafit.weights / p.datafit.n).to(x.dtype)
        H = _NewtonSystem(p, self.coupling, self.XX, s_lin, z_lin, Winv2, sigma_w)
        if not H.ok:
            return None

        def direction(d_lin, d_soc):
            """Newton direction for the complementarity right-hand sides ``d``."""
            q_lin = d_lin / s_lin  # W^(-1) (lam \ d) of the linear cone
            q_soc = Winv @ _jdiv(lam, d_soc)
            rhs = q_soc - r_x
            rhs[:, 1:] += p.cone_adjoint(q_lin).reshape(G, m - 1)
            dx = H.solve(rhs, refine)
            ds_lin = p.cone(dx[:, 1:].reshape(*shape[:3], m - 1))
            dz_lin = (d_lin - z_lin * ds_lin) / s_lin
            dz_soc = q_soc - H.Winv2 @ dx
            return dx, ds_lin, dz_lin, dz_soc

        def max_step(dx, ds_lin, dz_lin, dz_soc):
            """Largest step of each output keeping its cones' interiors ``(k,)``."""
            soc = torch.minimum(_soc_step(xg, dx), _soc_step(zg, dz_soc))
            dims = (0, 1, 3)
            lin = torch.minimum(_lin_step(s_lin, ds_lin, dims), _lin_step(z_lin, dz_lin, dims))
            return torch.minimum(soc.reshape(shape[:3]).amin((0, 2)), lin)

        def per_output(a):  # (k,) to the linear cone's and the groups' shapes
            return a[None, None, :, None], a[None, :, None, None]

        # predictor (affine scaling), then Mehrotra's corrector with centering
        dx, ds_lin, dz_lin, dz_soc = direction(-lam_lin2, -_jprod(lam, lam))
        a_lin, a_soc = per_output(max_step(dx, ds_lin, dz_lin, dz_soc).clamp(max=1.0))
        dxs, dzs = dx.reshape(shape), dz_soc.reshape(shape)
        gap_aff = ((s_lin + a_lin * ds_lin) * (z_lin + a_lin * dz_lin)).sum((0, 1, 3)) + (
            (x + a_soc * dxs) * (z_soc + a_soc * dzs)
        ).sum((0, 2, 3))
        sigma_mu = (gap_aff / (mu * self.nu)).clamp(0.0, 1.0) ** 3 * mu
        ws, wz = Winv @ dx, W @ dz_soc
        d_lin = per_output(sigma_mu)[0] - lam_lin2 - ds_lin * dz_lin
        d_soc = -_jprod(lam, lam) - _jprod(ws, wz)
        d_soc[:, 0] += sigma_mu[None, :, None].expand(shape[:3]).reshape(G)
        dx, ds_lin, dz_lin, dz_soc = direction(d_lin, d_soc)
        a_lin, a_soc = per_output((0.99 * max_step(dx, ds_lin, dz_lin, dz_soc)).clamp(max=1.0))
        return (
            x + a_soc * dx.reshape(shape),
            z_lin + a_lin * dz_lin,
            z_soc + a_soc * dz_soc.reshape(shape),
        )


def ipm_entries(p: ConvexProgram) -> int:
    """Floats held by :func:`solve_ipm`'s largest arrays (a memory estimate): the
    coupling factors ``(k, m, m)``, ``Z`` and its transpose ``(m, P d)``, the per-output
    ``V``, ``Sigma^(1/2) F_a`` ``(n, P d)``, the float32 copy of ``Z``, ``X (x) X`` and the
    per-group arrays (an upper bound in the ``n``-row form, which holds ``Z`` in float64 only
    when it needs a float64 factor)."""
    n, d = p.X.shape
    k, P = p.n_outputs, p.gates.shape[0]
    m = min(n, P * d)
    coupling = k * m * m + 3 * m * P * d + n * P * d + m * P * d // 2
    return coupling + n * d * d + 2 * k * P * ((d + 1) ** 2 + 4 * n)


def solve_ipm_exact(
    p: ConvexProgram, max_iter: int = 80, tol: float = 1e-6, callback: Callable | None = None
) -> SolverResult:
    """:func:`solve_ipm`; when it stalls above ``tol`` (certified gaps below ~1e-8 are out
    of its reach in float64), :func:`.polish.polish` solves the program exactly from its
    point (Clarabel on the support and the nearly active rows it identifies), and its
    result is kept when it is feasible and better. ``info.polish`` then holds the
    :class:`~mrsolve.solvers.convex_nn.polish.PolishResult`."""
    res = solve_ipm(p, max_iter, tol, callback)
    if res.info.converged or res.info.status == "no interior":
        return res
    polished = polish(p, res.weights)
    pinfo, up = polished.info, polished.weights
    info = dataclasses.replace(res.info, polish=pinfo)
    if pinfo.status in ("Solved", "AlmostSolved") and p.violation(up) <= 1e-8:
        if p.objective(up) <= p.objective(res.weights):
            res = dataclasses.replace(res, weights=up, multipliers=polished.multipliers)
        info = dataclasses.replace(info, converged=pinfo.converged)
    return dataclasses.replace(res, info=info)


__getattr__ = deprecated_names(__name__, {"IpmInfo": IpmResult})
