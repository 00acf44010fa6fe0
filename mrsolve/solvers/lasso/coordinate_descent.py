"""Block coordinate descent epochs for the weighted elastic net / group lasso working problem.

Every inner solve of the path solver reduces, on a working set of ``m`` columns, to::

    minimize_{b0, B}  1/2 sum_i h_i ||R0_i - b0 - x_i B||^2
                      + sum_g ( l1_g ||B_g||_F + l2_g / 2 ||B_g||_F^2 )

with ``B`` of shape ``(m, k)`` (``k > 1``: the multi-task lasso, blocks shared by the
columns) and blocks ``g`` given by ``starts[g]:ends[g]``. A block takes a proximal step
of length ``1 / lips[g]`` with ``lips[g] >= ||X_g^T H X_g||_2``; for a single column this
is the exact coordinate minimizer (glmnet's update).

Two forms of the same epoch:

- :func:`cd_residual` keeps the residual ``R = R0 - b0 - X B`` ``(n, k)`` (cost ``O(n)``
  per coordinate);
- :func:`cd_gram` keeps the correlation ``G = X^T H R`` ``(m, k)`` and uses the Gram
  matrix ``Q = X^T H X`` (glmnet's "covariance" updates, cost ``O(m)`` per coordinate;
  no intercept: the caller has made it decouple).

Written with numba because coordinate descent is a long chain of scalar updates that
neither numpy nor torch can vectorize; the kernels are compiled once and cached on disk.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True, inline="always")
def _prox_scale(nrm, L, l1, l2):
    """Factor applied to the block's gradient step ``u`` (norm ``nrm``) by the prox."""
    if nrm > 0.0 and nrm * L > l1:
        return (1.0 - l1 / (L * nrm)) / (1.0 + l2 / L)
    return 0.0


@numba.njit(cache=True)
def cd_residual(Xt, h, R, B, b0, starts, ends, lips, l1, l2, fit_intercept, n_epochs, tol):
    """Up to ``n_epochs`` passes over all blocks (then the intercept), residual form.

    Args:
        Xt: working-set design transposed, ``(m, n)`` C-contiguous.
        h: observation curvatures ``(n,)``.
        R: residual ``(n, k)``; B ``(m, k)``; b0 ``(k,)``: all updated in place.
        starts, ends, lips, l1, l2: per block (local column ranges).
        fit_intercept: update b0 after every pass.
        n_epochs: cap on passes; tol: stop after a pass whose largest
            curvature-weighted squared change ``L ||dB_g||^2`` is below ``tol``.

    Returns:
        (passes made, largest weighted change of the last pass).
    """
    n, k = R.shape
    width = 1
    for g in range(starts.shape[0]):
        width = max(width, ends[g] - starts[g])
    u = np.empty((width, k))
    dmax = 0.0
    epochs = 0
    hsum = 0.0
    for i in range(n):
        hsum += h[i]
    while epochs < n_epochs:
        epochs += 1
        dmax = 0.0
        for g in range(starts.shape[0]):
            L = lips[g]
            if L <= 0.0:
                continue
            s, e = starts[g], ends[g]
            nrm2 = 0.0
            for jj in range(e - s):
                x = Xt[s + jj]
                for c in range(k):
                    acc = 0.0
                    for i in range(n):
                        acc += x[i] * h[i] * R[i, c]
                    u[jj, c] = B[s + jj, c] + acc / L
                    nrm2 += u[jj, c] * u[jj, c]
            scale = _prox_scale(np.sqrt(nrm2), L, l1[g], l2[g])
            change = 0.0
            for jj in range(e - s):
                x = Xt[s + jj]
                for c in range(k):
                    d = scale * u[jj, c] - B[s + jj, c]
                    if d != 0.0:
                        B[s + jj, c] += d
                        change += d * d
                        for i in range(n):
                            R[i, c] -= d * x[i]
            dmax = max(dmax, L * change)
        if fit_intercept and hsum > 0.0:
            for c in range(k):
                acc = 0.0
                for i in range(n):
                    acc += h[i] * R[i, c]
                d = acc / hsum
                if d != 0.0:
                    b0[c] += d
                    for i in range(n):
                        R[i, c] -= d
                    dmax = max(dmax, hsum * d * d)
        if dmax < tol:
            break
    return epochs, dmax


@numba.njit(cache=True)
def cd_gram(C, rows, cols, G, B, starts, ends, lips, l1, l2, n_epochs, tol):
    """Up to ``n_epochs`` passes over all blocks in covariance form.

    Args:
        C, rows, cols: the Gram matrix ``Q = X^T H X`` ``(m, m)`` of the working set
            is ``C[rows][:, cols]``: ``C`` holds cached Gram columns (Fortran order, so a
            column is contiguous), read in place rather than gathered.
        G: correlation ``X^T H R`` ``(m, k)``; B ``(m, k)``: both updated in place.
        starts, ends, lips, l1, l2, n_epochs, tol: as for :func:`cd_residual`.

    Returns:
        (passes made, largest weighted change of the last pass).
    """
    m, k = G.shape
    width = 1
    for g in range(starts.shape[0]):
        width = max(width, ends[g] - starts[g])
    d = np.empty((width, k))
    dmax = 0.0
    epochs = 0
    while epochs < n_epochs:
        epochs += 1
        dmax = 0.0
        for g in range(starts.shape[0]):
            L = lips[g]
            if L <= 0.0:
                continue
            s, e = starts[g], ends[g]
            nrm2 = 0.0
            for jj in range(e - s):
                for c in range(k):
                    v = B[s + jj, c] + G[s + jj, c] / L
                    d[jj, c] = v
                    nrm2 += v * v
            scale = _prox_scale(np.sqrt(nrm2), L, l1[g], l2[g])
            change = 0.0
            for jj in range(e - s):
                j = s + jj
                for c in range(k):
                    dj = scale * d[jj, c] - B[j, c]
                    if dj != 0.0:
                        B[j, c] += dj
                        change += dj * dj
                        col = C[:, cols[j]]
                        for i in range(m):
                            G[i, c] -= col[rows[i]] * dj
            dmax = max(dmax, L * change)
        if dmax < tol:
            break
    return epochs, dmax


@numba.njit(cache=True)
def column_lips(Xt, h):
    """``sum_i h_i x_ij^2`` for every row ``j`` of ``Xt`` ``(m, n)``: ``(m,)``."""
    m, n = Xt.shape
    out = np.empty(m)
    for j in range(m):
        acc = 0.0
        for i in range(n):
            acc += h[i] * Xt[j, i] * Xt[j, i]
        out[j] = acc
    return out


@numba.njit(cache=True)
def gram_matmul(C, rows, cols, B):
    """``C[rows][:, cols] @ B`` without gathering: ``(m, k)``."""
    m, k = B.shape
    out = np.zeros((m, k))
    for j in range(m):
        col = C[:, cols[j]]
        for c in range(k):
            b = B[j, c]
            if b != 0.0:
                for i in range(m):
                    out[i, c] += col[rows[i]] * b
    return out
