"""FISTA for the unconstrained (gated ReLU) programs."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import torch

from mrsolve.solvers.alg import FistaResult, fista, power_iteration
from mrsolve.solvers.convex_nn.certificate import dual_bounds, subspace_dual
from mrsolve.solvers.convex_nn.problem import ConvexProgram, SolverResult
from mrsolve.solvers.datafit import Quadratic
from mrsolve.solvers.prox import group_soft_threshold
from mrsolve.solvers.validation import deprecated_names, make_generator, renamed_kwargs

#: the gap is evaluated every _GAP_EVERY-th iteration
_GAP_EVERY = 5
#: squared loss: within _SUBSPACE_FROM x tol, a gap evaluation at least _SUBSPACE_EVERY
#: iterations after the last also bounds the dual from the span of the last _SUBSPACE_SIZE
#: evaluated gradients (:func:`.certificate.subspace_dual`; ~4 ms a solve, too dear for
#: every evaluation: 12-30 % less time on the n ~ 2 d development sets, docs/convex_nn_design.md)
_SUBSPACE_SIZE = 8
_SUBSPACE_EVERY = 50
_SUBSPACE_FROM = 3.0
#: a gradient restart keeps this fraction of the momentum sequence (a full restart cost
#: 4-22 % more iterations on every development set, docs/convex_nn_design.md)
_RESTART_KEEP = 0.6


@dataclass(frozen=True)
class GapFistaResult(FistaResult):
    """:class:`~mrsolve.solvers.alg.FistaResult` plus ``dual``: the best dual value (a lower bound on the optimum)
    met during the run, ``-inf`` when none was computed (``beta = 0``)."""

    dual: float = -float("inf")


@renamed_kwargs(u0="init")
def solve_fista(
    p: ConvexProgram,
    init: torch.Tensor | None = None,
    max_iter: int = 10000,
    tol: float = 1e-7,
    callback: Callable | None = None,
) -> SolverResult:
    """Restarted FISTA with backtracking on the group lasso (programs without cones).

    Stops when the relative duality gap ``(P(u) - D) / |P(u)|`` is at most ``tol``: ``P``
    the objective at the iterate, ``D`` the best dual value so far from the scaled
    gradients of the datafit at the extrapolated points (see
    :func:`.certificate.dual_bounds`; free, since FISTA computes them anyway; the best of
    each output where the loss separates by output; for the squared loss near ``tol``, also
    the best point in the span of recent gradients, :func:`.certificate.subspace_dual`). ``tol``
    therefore bounds the relative suboptimality on every dataset. ``info.criterion``
    holds the gap per iteration and ``info.dual`` (also ``dual_bound`` of the returned
    :class:`~.problem.SolverResult`) the dual value behind it (pass it to
    :func:`.certificate.certificate` as ``dual_bound``: the gap recomputed from the final
    iterate alone is up to ~1.2x larger). With ``beta = 0`` there is no dual bound and
    FISTA stops on its relative step instead.
    """
    if p.constrained:
        raise ValueError("solver 'fista' handles activation='gated_relu' only; use 'admm'")
    df, beta = p.datafit, p.beta
    tiny = torch.finfo(p.X.dtype).tiny
    best: dict[str, torch.Tensor] = {}  # the best dual bound of each output
    subspace = isinstance(df, Quadratic)
    history: deque = deque(maxlen=_SUBSPACE_SIZE)  # (eta, F^T grad) at the gap evaluations
    last: dict[str, torch.Tensor] = {}

    def value(eta):
        # the gap reuses the datafit value FISTA's line search computed at the same point
        if last.get("eta") is not eta:
            last["eta"], last["value"] = eta, df.value(eta)
        return last["value"]

    def relative_gap(u, y, g_y, eta, eta_y):
        # the gap falls by well under 1 % per iteration: evaluating it every _GAP_EVERY-th
        # iteration costs at most that many extra iterations (docs/convex_nn_design.md)
        last["calls"] = last.get("calls", 0) + 1
        if "gap" in last and last["calls"] % _GAP_EVERY:
            return last["gap"]
        primal = float(value(eta)) + beta * float(p.group_norms(u).sum())
        bounds = dual_bounds(df, eta_y, p.group_norms(g_y), beta)
        best["dual"] = torch.maximum(best.get("dual", bounds), bounds)
        last["gap"] = (primal - float(best["dual"].sum())) / max(abs(primal), tiny)
        if subspace:
            history.append((eta_y, g_y))
            last["since"] = last.get("since", 0) + 1
            if (
                len(history) == _SUBSPACE_SIZE
                and last["since"] * _GAP_EVERY >= _SUBSPACE_EVERY
                and tol < last["gap"] <= _SUBSPACE_FROM * tol
            ):
                last["since"] = 0
                etas, grads = (torch.stack(h) for h in zip(*history, strict=True))
                best["dual"] = torch.maximum(best["dual"], subspace_dual(df, etas, grads, beta))
                last["gap"] = (primal - float(best["dual"].sum())) / max(abs(primal), tiny)
        return last["gap"]

    gen = make_generator(0)
    start = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.X.device, p.X.dtype)
    # a rough estimate is enough: backtracking corrects a step that is too long
    lip = df.lipschitz * power_iteration(
        lambda v: p.adjoint(p.forward(v)), start, max_iter=10, tol=1e-2
    )
    u, info = fista(
        lambda u, eta: value(eta),
        lambda u, eta: p.adjoint(df.grad(eta)),
        lambda v, t: group_soft_threshold(v, beta * t),
        p.zeros() if init is None else init,
        step=1.0 / max(lip, 1e-30),
        max_iter=max_iter,
        tol=tol,
        grow=1.05,  # fewer failed step trials than 1.1 (see docs/convex_nn_design.md)
        callback=callback,
        forward=p.forward,
        criterion=relative_gap if beta > 0 else None,
        restart_keep=_RESTART_KEEP,
    )
    dual = float(best["dual"].sum()) if best else -float("inf")
    info = GapFistaResult(**vars(info), dual=dual)
    return SolverResult(weights=u, info=info, dual_bound=dual)


__getattr__ = deprecated_names(__name__, {"GapFistaInfo": GapFistaResult})
