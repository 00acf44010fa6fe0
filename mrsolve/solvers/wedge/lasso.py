"""Lasso with an unpenalized intercept and its regularization path, solved to a duality gap.

``min_{W, c} ||Y - Phi W - 1 c^T||_F^2 / (2n) + beta ||W||_1`` for ``Phi`` ``(n, p)`` and
``Y`` ``(n, k)`` (the columns are independent lassos sharing the dictionary). The
intercept is eliminated by centering; the path runs from ``beta_max = max |Phi_c^T Y_c| / n``
(where ``W = 0``) down, warm-started.

Method: a working set of columns (the warm start's support and the largest
correlations ``|Phi_c^T r|``), the lasso on it solved by an interior-point method
(Clarabel through CVXPY), a KKT check over the whole dictionary that adds the violating
columns, until the relative duality gap of the full problem is below ``tol``. The dual
point is the residual scaled into the dual feasible set,
``theta = r / max(1, ||Phi_c^T r||_inf / (n beta))``, with dual value
``(||Y_c||^2 - ||Y_c - theta||^2) / (2n)``.

Why not a first-order or coordinate-descent method: the features are non-negative ReLU
outputs sharing a large common component, so the centered dictionary's largest singular
value dwarfs the norm of single columns; FISTA's step ``1 / L`` is then far shorter than a
coordinate's curvature allows, and with ``p >> n`` and many nearly collinear columns the
optimum is degenerate and badly conditioned (both stalled at large gaps; the measurements
are in ``docs/wedge_design.md``). An interior-point method converges whatever the
conditioning, and the solution has about ``n`` non-zeros, so the working set stays small.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from mrsolve.solvers.validation import check_int, check_positive, deprecated_names, renamed_kwargs

#: weights below this fraction of the largest are interior-point leftovers
_ZERO = 1e-10


@dataclass(frozen=True)
class LassoResult:
    """A lasso solution.

    Attributes:
        coef: ``(p, k)``; intercept: ``(k,)``; beta: the l1 weight.
        n_iter: working-set iterations, summed over columns.
        gap: relative duality gap ``(primal - dual) / primal`` (largest over columns).
        converged: ``gap <= tol`` for every column.
    """

    coef: torch.Tensor
    intercept: torch.Tensor
    beta: float
    n_iter: int
    gap: float = 0.0
    converged: bool = True


def _center(Phi: torch.Tensor, Y: torch.Tensor):
    mu_phi, mu_y = Phi.mean(0), Y.mean(0)
    return Phi - mu_phi, Y - mu_y, mu_phi, mu_y


def beta_max(Phi: torch.Tensor, Y: torch.Tensor) -> float:
    """Smallest ``beta`` with the all-zero solution: ``max |Phi_c^T Y_c| / n``."""
    Pc, Yc, _, _ = _center(Phi, Y)
    return float((Pc.T @ Yc).abs().max()) / Phi.shape[0] if Phi.shape[1] else 0.0


def duality_gap(Pc: np.ndarray, yc: np.ndarray, w: np.ndarray, beta: float) -> tuple[float, float]:
    """``(primal, primal - dual)`` of one centered lasso column (see the module docstring)."""
    n = yc.size
    r = yc - Pc @ w
    primal = float(r @ r / (2 * n) + beta * np.abs(w).sum())
    worst = float(np.abs(Pc.T @ r).max(initial=0.0)) / n
    theta = r / max(1.0, worst / beta) if beta > 0 else r * 0.0
    dual = float(yc @ yc - (yc - theta) @ (yc - theta)) / (2 * n)
    return primal, primal - dual


def _clarabel(A: np.ndarray, yc: np.ndarray, beta: float) -> np.ndarray:
    """The lasso on the columns ``A`` ``(n, m)`` by Clarabel (tight tolerances)."""
    import cvxpy as cp

    n = yc.size
    w = cp.Variable(A.shape[1])
    prob = cp.Problem(cp.Minimize(cp.sum_squares(yc - A @ w) / (2 * n) + beta * cp.norm1(w)))
    with warnings.catch_warnings():  # "may be inaccurate": the caller checks the gap itself
        warnings.simplefilter("ignore", UserWarning)
        prob.solve(solver="CLARABEL", tol_gap_abs=1e-14, tol_gap_rel=1e-13, tol_feas=1e-13)
    if w.value is None:
        raise RuntimeError(f"Clarabel returned status {prob.status} on a lasso subproblem")
    return np.asarray(w.value, dtype=np.float64)


def _interior_point(A: np.ndarray, yc: np.ndarray, beta: float) -> np.ndarray:
    """The lasso on ``A``, then again on the columns the first solve found non-zero:
    an interior point stops inside the (often degenerate) optimal face and leaves tiny
    weights on many columns; the second, small solve gives exact zeros outside them."""
    w = _clarabel(A, yc, beta)
    S = np.flatnonzero(np.abs(w) > _ZERO * np.abs(w).max(initial=0.0))
    out = np.zeros_like(w)
    if S.size:
        out[S] = _clarabel(A[:, S], yc, beta)
    return out


def _solve_column(
    Pc: np.ndarray, yc: np.ndarray, beta: float, w: np.ndarray, tol: float, max_iter: int
) -> tuple[np.ndarray, float, int, bool]:
    """Working-set lasso of one column from ``w``: ``(w, relative gap, solves, converged)``."""
    n, p = Pc.shape
    grow = max(n, 20)  # columns added per iteration (the solution has about n non-zeros)
    primal, gap = duality_gap(Pc, yc, w, beta)
    tiny = 1e-300
    if gap <= tol * max(primal, tiny):
        return w, gap / max(primal, tiny), 0, True
    corr = np.abs(Pc.T @ (yc - Pc @ w))
    ws = np.union1d(np.flatnonzero(w), np.argsort(-corr)[:grow])
    for it in range(1, max_iter + 1):
        w = np.zeros(p)
        w[ws] = _interior_point(Pc[:, ws], yc, beta)
        primal, gap = duality_gap(Pc, yc, w, beta)
        if gap <= tol * max(primal, tiny):
            return w, gap / max(primal, tiny), it, True
        corr = np.abs(Pc.T @ (yc - Pc @ w)) / n
        outside = np.setdiff1d(np.flatnonzero(corr > beta), ws)
        if outside.size == 0:  # KKT holds off the set: the subproblem's own accuracy
            break
        ws = np.union1d(ws, outside[np.argsort(-corr[outside])][:grow])
    return w, gap / max(primal, tiny), it, False


def lasso(
    Phi: torch.Tensor,
    Y: torch.Tensor,
    beta: float,
    init: torch.Tensor | None = None,
    max_iter: int = 50,
    tol: float = 1e-7,
) -> LassoResult:
    """One lasso solve (see the module docstring).

    Args:
        Phi: ``(n, p)`` dictionary; Y: ``(n, k)`` targets; beta: l1 weight >= 0.
        init: ``(p, k)`` warm start (its support seeds the working set).
        max_iter: working-set iterations per column.
        tol: relative duality gap to reach.
    """
    check_int("max_iter", max_iter)
    tol = check_positive("tol", tol)
    beta = check_positive("beta", beta, allow_zero=True)
    Pc, Yc, mu_phi, mu_y = _center(Phi, Y)
    P, Yn = Pc.detach().cpu().double().numpy(), Yc.detach().cpu().double().numpy()
    p, k = P.shape[1], Yn.shape[1]
    W0 = np.zeros((p, k)) if init is None else init.detach().cpu().double().numpy().copy()
    n_iter, worst, converged = 0, 0.0, True
    if p:
        for j in range(k):
            W0[:, j], gap, it, ok = _solve_column(P, Yn[:, j], float(beta), W0[:, j], tol, max_iter)
            n_iter, worst, converged = n_iter + it, max(worst, gap), converged and ok
    coef = torch.as_tensor(W0, dtype=Phi.dtype, device=Phi.device)
    return LassoResult(
        coef=coef,
        intercept=mu_y - mu_phi @ coef,
        beta=float(beta),
        n_iter=n_iter,
        gap=worst,
        converged=converged,
    )


#: the path arguments' old names -> the shared vocabulary, deprecated
PATH_RENAMES = {"betas": "penalties", "n_betas": "n_penalties", "eps": "penalty_min_ratio"}


@renamed_kwargs(**PATH_RENAMES)
def lasso_path(
    Phi: torch.Tensor,
    Y: torch.Tensor,
    *,
    penalties: torch.Tensor | list[float] | None = None,
    n_penalties: int = 20,
    penalty_min_ratio: float = 1e-3,
    **kwargs,
) -> list[LassoResult]:
    """Solutions for the l1 weights ``penalties`` (default ``n_penalties`` log-spaced from
    ``beta_max`` to ``penalty_min_ratio * beta_max``), largest first, each warm-started at
    the previous one; ``kwargs`` go to :func:`lasso` (``tol``, ``max_iter``). Check
    ``fit.converged`` / ``fit.gap``. The old keywords ``betas``, ``n_betas``, ``eps``
    still work for one release (DeprecationWarning)."""
    if penalties is None:
        check_int("n_penalties", n_penalties)
        top = max(beta_max(Phi, Y), 1e-12)
        ratio = check_positive("penalty_min_ratio", penalty_min_ratio)
        penalties = top * torch.logspace(0, math.log10(ratio), n_penalties, dtype=torch.float64)
    betas = sorted((float(b) for b in penalties), reverse=True)
    if not betas or betas[-1] < 0:
        raise ValueError(f"penalties must be a non-empty list of values >= 0, got {betas!r}")
    fits: list[LassoResult] = []
    for b in betas:
        fits.append(lasso(Phi, Y, b, init=fits[-1].coef if fits else None, **kwargs))
    return fits


__getattr__ = deprecated_names(__name__, {"LassoFit": LassoResult})
