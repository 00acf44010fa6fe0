"""The gaussian lasso at one penalty on a scipy.sparse design, in one compiled call.

A coordinate update in residual form costs ``O(nnz of the column)`` on a sparse design
(a few dozen entries for text-like data) against ``O(m)`` in covariance form, whose Gram
columns cost ``O(nnz(X))`` each to build; so sparse designs keep the residual. The
design is used as stored, ``Xs = X - 1 shift^T`` (centering and scaling of
:class:`~mrsolve.solvers.lasso.design.Design`), without densifying: the residual
``r = r0 - Xs B`` is kept as ``Rs = r0 - X B`` (sparse updates) plus the scalar
``c = shift . B``, and ``sum_i w_i Rs_i`` is tracked, so a column's correlation with
``r`` needs only its nonzeros.
"""

from __future__ import annotations

import numba
import numpy as np

from mrsolve.solvers.lasso.coordinate_descent import FASTMATH


@numba.njit(cache=True, inline="always", fastmath=FASTMATH)
def _corr(indptr, indices, data, w, Rs, c, sr, colw, shift, j):
    """``sum_i w_i Xs_ij r_i`` from the column's nonzeros."""
    acc = 0.0
    for t in range(indptr[j], indptr[j + 1]):
        i = indices[t]
        acc += w[i] * data[t] * Rs[i]
    return acc + c * colw[j] - shift[j] * (sr + c)  # sum_i w_i = 1


@numba.njit(cache=True, fastmath=FASTMATH)
def _pass(indptr, indices, data, w, Rs, state, colw, shift, lips, pf, lam, B, active, full):
    """One CD pass over every feature (``full``) or the active ones; ``state`` holds
    ``[c, sum w Rs]``, updated in place. Returns (sum of L d^2, a feature entered)."""
    change = 0.0
    entered = False
    for j in range(B.shape[0]):
        if not (full or active[j]) or not pf[j] < np.inf:
            continue
        L = lips[j]
        if L <= 0.0:
            continue
        old = B[j]
        v = old + _corr(indptr, indices, data, w, Rs, state[0], state[1], colw, shift, j) / L
        t = lam * pf[j] / L
        new = v - t if v > t else (v + t if v < -t else 0.0)
        d = new - old
        if d != 0.0:
            B[j] = new
            for k in range(indptr[j], indptr[j + 1]):
                Rs[indices[k]] -= d * data[k]
            state[0] += d * shift[j]
            state[1] -= d * colw[j]
            change += L * d * d
            if not active[j]:
                active[j] = True
                entered = True
    return change, entered


@numba.njit(cache=True, fastmath=FASTMATH)
def _gap(indptr, indices, data, w, r0, Rs, state, colw, shift, pf, lam, B):
    """Duality gap and ``sum w r^2``: dual point ``s r`` scaled into ``|Xs^T W r| <= lam pf``."""
    c, sr = state[0], state[1]
    rr = 0.0
    r0r = 0.0
    for i in range(Rs.shape[0]):
        r = Rs[i] + c
        rr += w[i] * r * r
        r0r += w[i] * r0[i] * r
    worst = 0.0
    pen = 0.0
    for j in range(B.shape[0]):
        if pf[j] < np.inf:
            pen += pf[j] * abs(B[j])
            if pf[j] > 0.0:
                v = _corr(indptr, indices, data, w, Rs, c, sr, colw, shift, j)
                worst = max(worst, abs(v) / (lam * pf[j]))
    s = 1.0 / worst if worst > 1.0 else 1.0
    dual = s * r0r - 0.5 * s * s * rr
    return 0.5 * rr + lam * pen - dual, rr


@numba.njit(cache=True)
def sparse_lasso_solve(
    indptr,
    indices,
    data,
    w,
    r0,
    Rs,
    state,
    colw,
    shift,
    lips,
    pf,
    lam,
    B,
    tol_abs,
    max_epochs,
    stall,
):
    """Gaussian lasso at one penalty, residual form on CSC columns (glmnet's "naive"
    mode: a full pass adds violators, then passes over the active set).

    Args:
        indptr, indices, data: CSC arrays of ``X`` (before the shift) ``(n, p)``.
        w: observation weights (sum 1) ``(n,)``; r0: target minus intercept ``(n,)``.
        Rs: ``r0 - X B`` ``(n,)``, updated in place; state: ``[shift . B, sum w Rs]``,
            updated in place.
        colw: ``sum_i w_i X_ij`` ``(p,)``; shift: the implicit column shift ``(p,)``;
            lips: ``sum_i w_i Xs_ij^2`` ``(p,)``.
        pf: penalty factors ``(p,)`` (positive; inf: excluded); lam: the penalty.
        B: coefficients ``(p,)``, warm start, updated in place.
        tol_abs: gap target; max_epochs: pass budget; stall: a full pass changing less
            than this (sum L d^2) is at machine precision.

    Returns:
        (gap, sum w r^2, passes, converged).
    """
    p = B.shape[0]
    active = np.zeros(p, dtype=np.bool_)
    for j in range(p):
        active[j] = B[j] != 0.0
    epochs = 0
    while True:
        gap, rr = _gap(indptr, indices, data, w, r0, Rs, state, colw, shift, pf, lam, B)
        if gap <= tol_abs:
            return gap, rr, epochs, True
        if epochs >= max_epochs:
            return gap, rr, epochs, False
        change, entered = _pass(
            indptr, indices, data, w, Rs, state, colw, shift, lips, pf, lam, B, active, True
        )
        epochs += 1
        if change < stall and not entered:
            gap, rr = _gap(indptr, indices, data, w, r0, Rs, state, colw, shift, pf, lam, B)
            return gap, rr, epochs, True
        while epochs < max_epochs:
            change, _ = _pass(
                indptr, indices, data, w, Rs, state, colw, shift, lips, pf, lam, B, active, False
            )
            epochs += 1
            if change < tol_abs:
                break
