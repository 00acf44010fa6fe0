"""Block coordinate descent for the weighted elastic net / group lasso working problem.

Solves, for a fixed penalty, the penalized weighted least-squares problem that every
IRLS step of a GLM path reduces to::

    minimize_{b0, B}  1/2 sum_i h_i ||z_i - b0 - x_i B||^2
                      + sum_g ( l1_g ||B_g||_F + l2_g / 2 ||B_g||_F^2 )

with ``B`` of shape ``(p, k)`` (``k`` responses share the row groups, so ``k > 1`` is the
multi-task lasso), column blocks ``g`` given by ``starts[g]:ends[g]``. A block is updated
by a proximal step of length ``1 / lips[g]``, ``lips[g] >= ||X_g^T H X_g||_2``; for a
single column this is the exact coordinate minimizer (glmnet's update).

Written with numba because coordinate descent is a long chain of scalar updates that
neither numpy nor torch can vectorize; numba is already installed as a sigpy dependency.
"""

from __future__ import annotations

import numba
import numpy as np


@numba.njit(cache=True)
def _sweep(Xt, h, R, B, b0, starts, ends, lips, l1, l2, blocks, fit_intercept):
    """One pass over ``blocks`` then the intercept; returns the largest curvature-weighted
    squared change (an objective-decrease scale)."""
    n, k = R.shape
    dmax = 0.0
    for g in blocks:
        L = lips[g]
        if L <= 0.0:
            continue
        s, e = starts[g], ends[g]
        m = e - s
        u = np.empty((m, k))
        nrm2 = 0.0
        for jj in range(m):
            x = Xt[s + jj]
            for c in range(k):
                acc = 0.0
                for i in range(n):
                    acc += x[i] * h[i] * R[i, c]
                u[jj, c] = B[s + jj, c] + acc / L
                nrm2 += u[jj, c] * u[jj, c]
        nrm = np.sqrt(nrm2)
        scale = 0.0
        if nrm > 0.0 and nrm * L > l1[g]:
            scale = (1.0 - l1[g] / (L * nrm)) / (1.0 + l2[g] / L)
        change = 0.0
        for jj in range(m):
            x = Xt[s + jj]
            for c in range(k):
                d = scale * u[jj, c] - B[s + jj, c]
                if d != 0.0:
                    B[s + jj, c] += d
                    change += d * d
                    for i in range(n):
                        R[i, c] -= d * x[i]
        if L * change > dmax:
            dmax = L * change
    if fit_intercept:
        hsum = 0.0
        for i in range(n):
            hsum += h[i]
        if hsum > 0.0:
            for c in range(k):
                acc = 0.0
                for i in range(n):
                    acc += h[i] * R[i, c]
                d = acc / hsum
                if d != 0.0:
                    b0[c] += d
                    for i in range(n):
                        R[i, c] -= d
                    if hsum * d * d > dmax:
                        dmax = hsum * d * d
    return dmax


@numba.njit(cache=True)
def block_cd(Xt, h, R, B, b0, starts, ends, lips, l1, l2, blocks, fit_intercept, tol, max_sweeps):
    """Minimize the working problem over the given ``blocks`` (others stay fixed).

    Args:
        Xt: design transposed, ``(p, n)`` C-contiguous float64.
        h: observation curvatures ``(n,)`` (the 1/n-scaled IRLS weights).
        R: residual ``z - b0 - X B``, ``(n, k)``; updated in place.
        B: coefficients ``(p, k)``; b0: intercepts ``(k,)``; both updated in place.
        starts, ends: column range of each block; lips: block curvature bounds.
        l1, l2: per-block l1 and ridge penalty weights (lambda * pf * mixing).
        blocks: indices of the blocks to optimize.
        tol: stop when a full pass changes the objective by less than about ``tol``.
        max_sweeps: cap on the number of passes.

    Returns:
        the number of passes made.
    """
    sweeps = 0
    while sweeps < max_sweeps:
        d = _sweep(Xt, h, R, B, b0, starts, ends, lips, l1, l2, blocks, fit_intercept)
        sweeps += 1
        if d < tol:
            break
        # iterate on the currently nonzero blocks until they settle (glmnet's active set)
        nact = 0
        act = np.empty(blocks.shape[0], dtype=blocks.dtype)
        for g in blocks:
            nz = False
            for j in range(starts[g], ends[g]):
                for c in range(B.shape[1]):
                    if B[j, c] != 0.0:
                        nz = True
            if nz:
                act[nact] = g
                nact += 1
        while sweeps < max_sweeps:
            d = _sweep(Xt, h, R, B, b0, starts, ends, lips, l1, l2, act[:nact], fit_intercept)
            sweeps += 1
            if d < tol:
                break
    return sweeps
