"""First-order algorithms that take callables: FISTA, ADMM, conjugate gradient, power iteration.

Every algorithm works on torch tensors of any shape, real or complex, on any device;
it returns its solution and a small frozen result dataclass, calls ``callback(k, x)`` after
iteration ``k`` when given, and prints nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from mrsolve.solvers.linop import Linop
from mrsolve.solvers.validation import (
    SeedLike,
    check_choice,
    check_int,
    check_positive,
    deprecated_names,
    make_generator,
    renamed_kwargs,
)

Callback = Callable[[int, torch.Tensor], None] | None


def _rdot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Real part of the inner product <a, b>."""
    return (a.conj() * b).real.sum() if a.is_complex() else (a * b).sum()


def _norm(x: torch.Tensor) -> float:
    # torch's complex vector_norm is ~100x slower than on the real view (same value)
    return float(torch.linalg.vector_norm(torch.view_as_real(x) if x.is_complex() else x))


@dataclass(frozen=True)
class FistaResult:
    """What :func:`fista` did: iterations, convergence, final step, restarts and, per
    iteration, the gradient-mapping norm ``||x_{k+1} - y_k|| / step`` and (when a
    ``criterion`` was given) its value."""

    n_iter: int = 0
    converged: bool = False
    step: float = 0.0
    n_restarts: int = 0
    n_backtracks: int = 0
    grad_map_norm: list[float] = field(default_factory=list)
    criterion: list[float] = field(default_factory=list)


def fista(
    f: Callable[..., torch.Tensor],
    grad: Callable[..., torch.Tensor],
    prox: Callable[[torch.Tensor, float], torch.Tensor],
    x0: torch.Tensor,
    step: float | None = None,
    max_iter: int = 1000,
    tol: float = 1e-6,
    backtrack: bool = True,
    restart: str | None = "gradient",
    grow: float = 1.1,
    callback: Callback = None,
    forward: Callable[[torch.Tensor], torch.Tensor] | None = None,
    criterion: Callable[..., float] | None = None,
    restart_keep: float = 0.0,
) -> tuple[torch.Tensor, FistaResult]:
    """Accelerated proximal gradient for ``min_x f(x) + g(x)`` (Beck & Teboulle 2009).

    Args:
        f: smooth part, returns a 0-d tensor.
        grad: gradient of ``f``.
        prox: ``prox(v, t) = argmin_x g(x) + ||x - v||^2 / (2 t)``.
        x0: starting point.
        step: initial step ``1 / L``; ``None`` starts at 1 and relies on backtracking.
        max_iter: iteration budget.
        tol: without ``criterion``, stop when ``||x_{k+1} - y_k|| <= tol * max(||x_{k+1}||,
            tiny)``; with it, stop when ``criterion(...) <= tol``.
        backtrack: halve the step until the quadratic upper bound holds (needed when
            ``step`` may exceed ``1 / L``).
        restart: ``"gradient"`` (O'Donoghue & Candes: restart momentum when
            ``<y_k - x_{k+1}, x_{k+1} - x_k> > 0``), ``"function"`` (restart when ``f``
            increases), or ``None``.
        grow: factor by which the step is tried larger after each accepted step
            (1 keeps it fixed); only with ``backtrack``.
        callback: called as ``callback(k, x_k)``.
        forward: a linear map ``A`` when ``f(x) = h(A x)``. Then ``f`` and ``grad`` are
            called as ``f(x, A x)`` and ``grad(x, A x)``, and ``A y`` of the extrapolated
            point is carried along by linearity, so an iteration applies ``A`` once (at
            the trial point) instead of also at ``y`` (a third fewer operator applications
            when ``A`` dominates the cost).
        criterion: an optimality measure (e.g. a relative duality gap) called after each
            iteration as ``criterion(x_{k+1}, y_k, grad(y_k))``, with ``forward`` as
            ``criterion(x_{k+1}, y_k, grad(y_k), A x_{k+1}, A y_k)``; it replaces the step
            rule and its values are kept in ``info.criterion``.
        restart_keep: at a restart the momentum sequence ``t`` falls to ``max(1,
            restart_keep * t)`` (0: a full restart, as O'Donoghue & Candes; a fraction keeps
            part of the momentum built up on ill-conditioned problems).

    Returns:
        ``(x, info)``.
    """
    check_int("max_iter", max_iter)
    check_positive("tol", tol, allow_zero=True)
    if not 0 <= check_positive("restart_keep", restart_keep, allow_zero=True) <= 1:
        raise ValueError(f"restart_keep must be in [0, 1], got {restart_keep!r}")
    if restart is not None:
        check_choice("restart", restart, {"gradient", "function"})
    if step is None:
        if not backtrack:
            raise ValueError("step must be given when backtrack=False, got None")
        step = 1.0
    step = check_positive("step", step)
    grow = check_positive("grow", grow) if backtrack else 1.0
    linear = forward is not None

    def image(v):
        return forward(v) if linear else None

    def f_at(v, av):
        return f(v, av) if linear else f(v)

    def grad_at(v, av):
        return grad(v, av) if linear else grad(v)

    n_iter = n_restarts = n_backtracks = 0
    converged = False
    grad_map_norm: list[float] = []
    values: list[float] = []
    x = x0.clone()
    ax = image(x)
    y, ay = x, ax
    t = 1.0
    f_x = f_at(x, ax) if restart == "function" else None
    finfo = torch.finfo(x.real.dtype if x.is_complex() else x.dtype)
    tiny, slack = finfo.tiny, max(1e-12, 100 * finfo.eps)  # slack: 1e-12 in float64
    for k in range(max_iter):
        f_y, g_y = f_at(y, ay), grad_at(y, ay)
        while True:
            x_new = prox(torch.add(y, g_y, alpha=-step), step)
            ax_new = image(x_new)
            d = x_new - y
            if not backtrack:
                break
            f_new = f_at(x_new, ax_new)
            bound = f_y + _rdot(g_y, d) + _rdot(d, d) / (2 * step)
            # relative slack keeps round-off from shrinking the step forever
            if f_new <= bound + slack * abs(float(f_y)):
                break
            step *= 0.5
            n_backtracks += 1
        dn = _norm(d)
        grad_map_norm.append(dn / step)
        restart_now = False
        dx = x_new - x
        if restart == "gradient":  # <y - x_new, x_new - x> > 0
            restart_now = float(_rdot(d, dx)) < 0
        elif restart == "function":
            f_new = f_at(x_new, ax_new) if not backtrack else f_new
            restart_now = float(f_new) > float(f_x)
            f_x = f_new
        if criterion is None:
            done = dn <= tol * max(_norm(x_new), tiny) if tol > 0 else dn == 0
        else:
            extra = (ax_new, ay) if linear else ()
            values.append(float(criterion(x_new, y, g_y, *extra)))
            done = values[-1] <= tol
        if restart_now:
            n_restarts += 1
            t = max(1.0, restart_keep * t)
            y_next, ay_next = x_new, ax_new
        else:
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            c = (t - 1) / t_next
            y_next = torch.add(x_new, dx, alpha=c)
            ay_next = ax_new + c * (ax_new - ax) if linear else None
            t = t_next
        x, y, ax, ay = x_new, y_next, ax_new, ay_next
        n_iter = k + 1
        if callback is not None:
            callback(k, x)
        if done:
            converged = True
            break
        step *= grow
    return x, FistaResult(
        n_iter=n_iter,
        converged=converged,
        step=step,
        n_restarts=n_restarts,
        n_backtracks=n_backtracks,
        grad_map_norm=grad_map_norm,
        criterion=values,
    )


@dataclass(frozen=True)
class AdmmResult:
    """What :func:`admm` did. ``dual`` is the scaled dual variable ``u`` (the unscaled
    multiplier of ``A x = z`` is ``rho * u``); residual lists are per check."""

    n_iter: int = 0
    converged: bool = False
    rho: float = 1.0
    dual: torch.Tensor | None = None
    primal_residual: list[float] = field(default_factory=list)
    dual_residual: list[float] = field(default_factory=list)


@renamed_kwargs(alpha="relaxation")
def admm(
    x_update: Callable[[torch.Tensor, float], torch.Tensor],
    z_update: Callable[[torch.Tensor, float], torch.Tensor],
    A: Callable[[torch.Tensor], torch.Tensor],
    AH: Callable[[torch.Tensor], torch.Tensor],
    x0: torch.Tensor,
    z0: torch.Tensor,
    u0: torch.Tensor | None = None,
    rho: float = 1.0,
    relaxation: float = 1.6,
    max_iter: int = 1000,
    tol_abs: float = 1e-7,
    tol_rel: float = 1e-6,
    adapt_rho: bool = True,
    check_every: int = 10,
    callback: Callback = None,
) -> tuple[torch.Tensor, torch.Tensor, AdmmResult]:
    """Scaled, over-relaxed ADMM for ``min f(x) + g(z)`` s.t. ``A x = z`` (Boyd et al. 2011).

    Args:
        x_update: ``x_update(v, rho) = argmin_x f(x) + rho/2 ||A x - v||^2``.
        z_update: ``z_update(v, rho) = argmin_z g(z) + rho/2 ||z - v||^2``.
        A, AH: the constraint operator and its adjoint.
        x0, z0, u0: starting points (``u0`` is the scaled dual; zeros by default).
        rho: penalty parameter.
        relaxation: over-relaxation factor in (0, 2) (Boyd et al.'s alpha; the old keyword
            ``alpha`` is deprecated); 1 is plain ADMM.
        max_iter: iteration budget.
        tol_abs, tol_rel: stopping tolerances on the primal and dual residuals.
        adapt_rho: balance the residuals by doubling or halving ``rho`` (He et al. 2000).
        check_every: residuals are computed every this many iterations.
        callback: called as ``callback(k, x_k)``.

    Returns:
        ``(x, z, info)``.
    """
    check_int("max_iter", max_iter)
    rho = check_positive("rho", rho)
    if not 0 < relaxation < 2:
        raise ValueError(f"relaxation must lie in (0, 2), got {relaxation!r}")
    x, z = x0, z0
    u = torch.zeros_like(z0) if u0 is None else u0.clone()
    n_iter, converged = 0, False
    primal_residual: list[float] = []
    dual_residual: list[float] = []
    sqrt_m, sqrt_n = math.sqrt(z.numel()), math.sqrt(x.numel())
    for k in range(max_iter):
        x = x_update(z - u, rho)
        ax = A(x)
        ax_hat = relaxation * ax + (1 - relaxation) * z
        z_old = z
        z = z_update(ax_hat + u, rho)
        u = u + ax_hat - z
        n_iter = k + 1
        if callback is not None:
            callback(k, x)
        if (k + 1) % check_every and k + 1 != max_iter:
            continue
        r = _norm(ax - z)
        s = rho * _norm(AH(z - z_old))
        primal_residual.append(r)
        dual_residual.append(s)
        eps_pri = sqrt_m * tol_abs + tol_rel * max(_norm(ax), _norm(z))
        eps_dual = sqrt_n * tol_abs + tol_rel * rho * _norm(AH(u))
        if r <= eps_pri and s <= eps_dual:
            converged = True
            break
        if adapt_rho:
            if r > 10 * s:
                rho, u = rho * 2, u / 2
            elif s > 10 * r:
                rho, u = rho / 2, u * 2
    return (
        x,
        z,
        AdmmResult(
            n_iter=n_iter,
            converged=converged,
            rho=rho,
            dual=u,
            primal_residual=primal_residual,
            dual_residual=dual_residual,
        ),
    )


@dataclass(frozen=True)
class CgResult:
    """What :func:`cg` did: iterations, convergence and the final residual norm."""

    n_iter: int = 0
    converged: bool = False
    residual: float = 0.0


def cg(
    A: Callable[[torch.Tensor], torch.Tensor],
    b: torch.Tensor,
    x0: torch.Tensor | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    callback: Callback = None,
    preconditioner: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, CgResult]:
    """Conjugate gradient for ``A x = b`` with ``A`` Hermitian positive (semi)definite,
    preconditioned by ``preconditioner(r)`` (an approximation of ``A^(-1) r``; Hermitian
    positive definite) when given.

    Stops when ``||b - A x|| <= tol * ||b||`` (the recursively updated residual).
    """
    check_int("max_iter", max_iter)
    M = preconditioner if preconditioner is not None else (lambda r: r)
    x = torch.zeros_like(b) if x0 is None else x0.clone()
    r = b - A(x) if x0 is not None else b.clone()
    z = M(r)
    p = z.clone()
    rz = _rdot(r, z)
    target = tol * _norm(b)
    n_iter = 0
    for k in range(max_iter):
        if _norm(r) <= target:
            break
        ap = A(p)
        a = rz / _rdot(p, ap)
        x = x + a * p
        r = r - a * ap
        z = M(r)
        rz_new = _rdot(r, z)
        p = z + (rz_new / rz) * p
        rz = rz_new
        n_iter = k + 1
        if callback is not None:
            callback(k, x)
    residual = _norm(r)
    return x, CgResult(n_iter=n_iter, converged=residual <= target, residual=residual)


def power_iteration(
    op: Callable[[torch.Tensor], torch.Tensor] | Linop,
    x0: torch.Tensor | None = None,
    max_iter: int = 100,
    tol: float = 1e-6,
    seed: SeedLike = 0,
) -> float:
    """Largest eigenvalue of a Hermitian positive semidefinite operator, e.g. ``A^H A``.

    This is the Lipschitz constant of ``x -> A^H (A x - b)``.

    Args:
        op: a callable applying ``A^H A``, or a :class:`Linop` ``A`` (its ``.N`` is used).
        x0: starting vector; required for a plain callable, random for a Linop.
        max_iter: iteration budget.
        tol: stop when the estimate changes by less than ``tol`` relative.
        seed: seed or generator for the random start.
    """
    check_int("max_iter", max_iter)
    if isinstance(op, Linop):
        if x0 is None:
            gen = make_generator(seed)
            x0 = torch.randn(op.ishape, generator=gen, dtype=op.dtype).to(op.device)
        op = op.N
    elif x0 is None:
        raise ValueError("x0 must be given when op is a plain callable, got None")
    x = x0 / max(_norm(x0), torch.finfo(torch.float64).tiny)
    lam = 0.0
    for _ in range(max_iter):
        y = op(x)
        lam_new = _norm(y)
        if lam_new == 0:
            return 0.0
        x = y / lam_new
        if abs(lam_new - lam) <= tol * lam_new:
            return lam_new
        lam = lam_new
    return lam


__getattr__ = deprecated_names(
    __name__, {"FistaInfo": FistaResult, "AdmmInfo": AdmmResult, "CgInfo": CgResult}
)
