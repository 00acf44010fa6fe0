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

#: reassociation lets numba vectorize the dot-product reductions of a coordinate update
#: (2.1x per residual-form pass, 1000 x 5000); NaN / inf semantics are kept
FASTMATH = {"reassoc", "contract"}


@numba.njit(cache=True, inline="always")
def _prox_scale(nrm, L, l1, l2):
    """Factor applied to the block's gradient step ``u`` (norm ``nrm``) by the prox."""
    if nrm > 0.0 and nrm * L > l1:
        return (1.0 - l1 / (L * nrm)) / (1.0 + l2 / L)
    return 0.0


@numba.njit(cache=True, fastmath=FASTMATH)
def cd_residual(Xt, h, R, B, b0, starts, ends, lips, l1, l2, fit_intercept, n_epochs, tol):
    """Up to ``n_epochs`` passes over all blocks (then the intercept), residual form.

    Args:
        Xt: working-set design transposed, ``(m, n)`` C-contiguous.
        h: observation curvatures ``(n,)``.
        R: residual ``(n, k)``; B ``(m, k)``; b0 ``(k,)``: all updated in place.
        starts, ends, lips, l1, l2: per block (local column ranges).
        fit_intercept: the intercept moves with every block (the columns are centered
            in the ``h``-weighted metric implicitly: each step is exact over the block
            and the intercept jointly), and is re-fitted after every pass.
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
    m = Xt.shape[0]
    # h-weighted column means: with an intercept, a step on x_j moves b0 by -d xh_j,
    # which keeps sum h R fixed (the intercept and the columns decouple; updating b0
    # only after a pass made CD zig-zag at rate ~1/2 on poisson paths)
    xh = np.zeros(m)
    lips_c = lips.copy()
    if fit_intercept and hsum > 0.0:
        for j in range(m):
            acc = 0.0
            for i in range(n):
                acc += h[i] * Xt[j, i]
            xh[j] = acc / hsum
        for g in range(starts.shape[0]):
            if ends[g] - starts[g] == 1:  # exact centered curvature (blocks: the bound)
                lips_c[g] = max(lips[g] - hsum * xh[starts[g]] ** 2, 0.0)
    sR = np.zeros(k)
    for c in range(k):
        for i in range(n):
            sR[c] += h[i] * R[i, c]
    # glmnet's active-set passes: after a full pass, passes over the nonzero blocks until
    # they settle, then a full pass again; a settled full pass ends the solve
    nb = starts.shape[0]
    active = np.zeros(nb, dtype=np.bool_)
    full = True
    while epochs < n_epochs:
        epochs += 1
        dmax = 0.0
        for g in range(nb):
            L = lips_c[g]
            if L <= 0.0 or not (full or active[g]):
                continue
            s, e = starts[g], ends[g]
            nrm2 = 0.0
            for jj in range(e - s):
                x = Xt[s + jj]
                for c in range(k):
                    acc = 0.0
                    for i in range(n):
                        acc += x[i] * h[i] * R[i, c]
                    u[jj, c] = B[s + jj, c] + (acc - xh[s + jj] * sR[c]) / L
                    nrm2 += u[jj, c] * u[jj, c]
            scale = _prox_scale(np.sqrt(nrm2), L, l1[g], l2[g])
            change = 0.0
            for jj in range(e - s):
                x = Xt[s + jj]
                xm = xh[s + jj]
                for c in range(k):
                    d = scale * u[jj, c] - B[s + jj, c]
                    if d != 0.0:
                        B[s + jj, c] += d
                        change += d * d
                        for i in range(n):
                            R[i, c] -= d * (x[i] - xm)
                        b0[c] -= d * xm
            dmax = max(dmax, L * change)
            active[g] = scale != 0.0
        if fit_intercept and hsum > 0.0:
            for c in range(k):
                acc = 0.0
                for i in range(n):
                    acc += h[i] * R[i, c]
                d = acc / hsum
                sR[c] = acc - d * hsum
                if d != 0.0:
                    b0[c] += d
                    for i in range(n):
                        R[i, c] -= d
                    dmax = max(dmax, hsum * d * d)
        if dmax < tol:
            if full:
                break
            full = True
        else:
            full = False
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


@numba.njit(cache=True, fastmath=FASTMATH)
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


@numba.njit(cache=True)
def _gram_pass(Q, pf, lam, B, G, active, full):
    """One CD pass of the lasso in covariance form over every feature (``full``) or the
    active ones; keeps ``G = q - Q B`` in sync. Returns (sum of L d^2, a feature entered)."""
    p = B.shape[0]
    change = 0.0
    entered = False
    for j in range(p):
        if not (full or active[j]) or not pf[j] < np.inf:
            continue
        L = Q[j, j]
        if L <= 0.0:
            continue
        old = B[j]
        v = old + G[j] / L
        t = lam * pf[j] / L
        new = v - t if v > t else (v + t if v < -t else 0.0)
        d = new - old
        if d != 0.0:
            B[j] = new
            col = Q[:, j]
            for i in range(p):
                G[i] -= col[i] * d
            change += L * d * d
            if not active[j]:
                active[j] = True
                entered = True
    return change, entered


@numba.njit(cache=True)
def _gram_gap(Q, q, rr0, pf, lam, B, G, free, QFF):
    """Duality gap and ``sum w r^2`` of the lasso in covariance form (no n-vector); the
    unpenalized features ``free`` are projected out of the dual point by one solve."""
    p = B.shape[0]
    qB = 0.0
    GB = 0.0
    pen = 0.0
    for j in range(p):
        qB += q[j] * B[j]
        GB += G[j] * B[j]
        if pf[j] < np.inf:
            pen += pf[j] * abs(B[j])
    rr = rr0 - qB - GB
    S0 = rr0 - qB
    T0 = rr
    V = G.copy()
    if free.shape[0] > 0:
        GF = np.empty(free.shape[0])
        for f in range(free.shape[0]):
            GF[f] = G[free[f]]
        c = np.linalg.lstsq(QFF, GF)[0]
        for f in range(free.shape[0]):
            S0 -= c[f] * q[free[f]]
            T0 -= c[f] * GF[f]
            col = Q[:, free[f]]
            for i in range(p):
                V[i] -= col[i] * c[f]
    worst = 0.0
    for j in range(p):
        if pf[j] > 0.0 and pf[j] < np.inf:
            worst = max(worst, abs(V[j]) / (lam * pf[j]))
    s = 1.0 / worst if worst > 1.0 else 1.0
    dual = s * S0 - 0.5 * s * s * T0
    return 0.5 * rr + lam * pen - dual, rr


@numba.njit(cache=True)
def gram_lasso_solve(Q, q, rr0, pf, lam, B, G, free, QFF, tol_abs, max_epochs, stall):
    """The whole solve of the gaussian lasso at one penalty in covariance form (glmnet's
    "covariance" mode: a full pass adds violators, then passes over the active set).

    Args:
        Q: full Gram ``X^T W X`` ``(p, p)`` (symmetric; columns read contiguously).
        q: ``X^T W r0`` ``(p,)``; rr0: ``sum w r0^2``.
        pf: penalty factors ``(p,)`` (0: unpenalized, inf: excluded); lam: the penalty.
        B: coefficients ``(p,)``, warm start, updated in place; G: ``q - Q B`` ``(p,)``,
            updated in place.
        free, QFF: indices of the unpenalized features and their Gram block.
        tol_abs: gap target; max_epochs: pass budget; stall: a full pass changing less
            than this (sum L d^2) is at machine precision.

    Returns:
        (gap, sum w r^2, passes, converged).
    """
    p = B.shape[0]
    active = np.zeros(p, dtype=np.bool_)
    for j in range(p):
        active[j] = B[j] != 0.0 or pf[j] == 0.0
    epochs = 0
    while True:
        gap, rr = _gram_gap(Q, q, rr0, pf, lam, B, G, free, QFF)
        if gap <= tol_abs:
            return gap, rr, epochs, True
        if epochs >= max_epochs:
            return gap, rr, epochs, False
        change, entered = _gram_pass(Q, pf, lam, B, G, active, True)
        epochs += 1
        if change < stall and not entered:
            gap, rr = _gram_gap(Q, q, rr0, pf, lam, B, G, free, QFF)
            return gap, rr, epochs, True
        while epochs < max_epochs:
            change, _ = _gram_pass(Q, pf, lam, B, G, active, False)
            epochs += 1
            if change < tol_abs:
                break
