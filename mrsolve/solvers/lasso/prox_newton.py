"""Proximal Newton on a working set for the binomial and poisson lasso, in one compiled call.

The Python-level loop of :meth:`PathSolver._inner_glm` spends most of its time in
small numpy calls on ``n``-vectors (curvatures, line search, gap); here the whole inner
solve - quadratic model, coordinate descent (:func:`cd_residual`), backtracking line
search on the true objective, working-set duality gap - runs without returning to
Python. Scope: single-feature blocks, one response, lasso penalty, no unpenalized
features other than the intercept (the general case stays in Python). The family is an
integer code (:data:`FAMILY_CODES`); its mean, loss, curvature and dual entropy are
those of :mod:`mrsolve.solvers.lasso.glm`.
"""

from __future__ import annotations

import numba
import numpy as np

from mrsolve.solvers.lasso.coordinate_descent import cd_residual, column_lips
from mrsolve.solvers.lasso.glm import MIN_CURVATURE

_MAX_BACKTRACK = 30
# CD on a Newton step's quadratic stops when a pass moves the objective by less than this
# fraction of the gap target: the gap shrinks like the KKT violation, the squared steps
# like its square, so a looser rule (0.01) made one pass per Newton step and ~10x more
# Newton steps (docs/lasso_design.md)
_INNER_TOL = 1e-6
#: family name -> the kernel's code
FAMILY_CODES = {"binomial": 0, "poisson": 1}


@numba.njit(cache=True, inline="always")
def _log1pexp(x):
    return x + np.log1p(np.exp(-x)) if x > 0 else np.log1p(np.exp(x))


@numba.njit(cache=True, inline="always")
def _xlogx(x):
    return x * np.log(x) if x > 0 else 0.0


@numba.njit(cache=True, inline="always")
def _mean(e, family):
    return 1.0 / (1.0 + np.exp(-e)) if family == 0 else np.exp(e)


@numba.njit(cache=True, inline="always")
def _loss(e, y, family):
    return (_log1pexp(e) if family == 0 else np.exp(e)) - y * e


@numba.njit(cache=True, inline="always")
def _curv(mu, family):
    return mu * (1.0 - mu) if family == 0 else mu


@numba.njit(cache=True, inline="always")
def _entropy(m, family):
    """``H(m)`` at the dual mean, ``-inf`` outside the family's mean domain."""
    if m < 0.0 or (family == 0 and m > 1.0):
        return -np.inf
    return -(_xlogx(m) + _xlogx(1.0 - m)) if family == 0 else m - _xlogx(m)


@numba.njit(cache=True)
def _objective(y, w, o, eta, d_eta, t, B, dB, pf, lam, family):
    val = 0.0
    for i in range(eta.shape[0]):
        e = eta[i] + t * d_eta[i] + o[i]
        val += w[i] * _loss(e, y[i], family)
    pen = 0.0
    for j in range(B.shape[0]):
        pen += pf[j] * abs(B[j] + t * dB[j])
    return val + lam * pen


@numba.njit(cache=True)
def _ws_gap(Xt, y, w, o, eta, B, pf, lam, fit_intercept, family):
    """Gap on the working set: dual point ``w (y - mu(eta + c))`` with ``c`` the exact
    intercept correction (its mean stays in the mean domain after the scaling), scaled into
    ``|X^T theta| <= lam pf``."""
    m, n = Xt.shape
    theta = np.empty(n)
    primal = 0.0
    for i in range(n):
        e = eta[i] + o[i]
        primal += w[i] * _loss(e, y[i], family)
    c = 0.0
    for _k in range(100 if fit_intercept else 1):
        ts, hs = 0.0, 0.0
        for i in range(n):
            mu = _mean(eta[i] + o[i] + c, family)
            theta[i] = w[i] * (y[i] - mu)
            ts += theta[i]
            hs += w[i] * max(_curv(mu, family), MIN_CURVATURE)
        if not fit_intercept or hs <= 0.0:
            break
        step = ts / hs
        c += step
        if abs(step) < 1e-13 * (1.0 + abs(c)):
            break
    if fit_intercept:  # theta at the converged c
        for i in range(n):
            theta[i] = w[i] * (y[i] - _mean(eta[i] + o[i] + c, family))
    V = Xt @ theta  # BLAS: 3-4x faster than a compiled loop here
    worst = 0.0
    for j in range(m):
        worst = max(worst, abs(V[j]) / (lam * pf[j]))
        primal += lam * pf[j] * abs(B[j])
    s = 1.0 / worst if worst > 1.0 else 1.0
    dual = 0.0
    for i in range(n):
        if w[i] > 0.0:
            ent = _entropy(y[i] - s * theta[i] / w[i], family)
            if ent == -np.inf:
                return np.inf
            dual += w[i] * ent
        dual -= s * theta[i] * o[i]
    return primal - dual


@numba.njit(cache=True)
def prox_newton_glm(
    Xt, y, w, o, eta, B, b0, pf, lam, fit_intercept, target, max_pn, max_epochs, stall, family
):
    """Proximal Newton steps on the working set until its gap is below ``target``.

    Args:
        Xt: working-set columns transposed ``(m, n)``; y, w, o: targets, weights (sum
            1) and offset ``(n,)``.
        eta: linear predictor without offset ``(n,)``; B ``(m,)``; b0 ``(1,)``: all
            updated in place.
        pf: penalty factors ``(m,)`` (positive, finite); lam: the penalty.
        target: gap target; max_pn: Newton steps; max_epochs: CD pass budget;
        stall: a step whose curvature-weighted squared size is below this is at
            machine precision.
        family: :data:`FAMILY_CODES` of the loss.

    Returns:
        (CD passes made, stalled).
    """
    m, n = Xt.shape
    l1 = lam * pf
    l2 = np.zeros(m)
    starts = np.arange(m)
    ends = starts + 1
    h = np.empty(n)
    R = np.empty((n, 1))
    epochs = 0
    stalled = False
    for _ in range(max_pn):
        for i in range(n):
            mu = _mean(eta[i] + o[i], family)
            h[i] = w[i] * max(_curv(mu, family), MIN_CURVATURE)
            R[i, 0] = w[i] * (y[i] - mu) / h[i] if h[i] > 0.0 else 0.0
        R_old = R[:, 0].copy()
        Bc = B.copy().reshape(m, 1)
        b0c = b0.copy()
        lips = column_lips(Xt, h)
        n_ep = max(1, min(20, max_epochs - epochs))
        done, _ = cd_residual(
            Xt, h, R, Bc, b0c, starts, ends, lips, l1, l2, fit_intercept, n_ep, _INNER_TOL * target
        )
        epochs += done
        d_eta = R_old - R[:, 0]
        dB = Bc[:, 0] - B
        f0 = _objective(y, w, o, eta, d_eta, 0.0, B, dB, pf, lam, family)
        t, accepted = 1.0, False
        for _k in range(_MAX_BACKTRACK):
            if _objective(y, w, o, eta, d_eta, t, B, dB, pf, lam, family) <= f0 + 1e-12 * abs(f0):
                accepted = True
                break
            t *= 0.5
        if not accepted:
            t = 0.0
        change = 0.0
        for i in range(n):
            eta[i] += t * d_eta[i]
            change += h[i] * (t * d_eta[i]) ** 2
        for j in range(m):
            B[j] += t * dB[j]
        b0[0] += t * (b0c[0] - b0[0])
        gap = _ws_gap(Xt, y, w, o, eta, B, pf, lam, fit_intercept, family)
        if change < stall:
            stalled = True
        if gap <= target or stalled or epochs >= max_epochs:
            break
    return epochs, stalled
