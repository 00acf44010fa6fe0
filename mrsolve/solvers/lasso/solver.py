"""Working-set solver of the penalized GLM at one penalty, warm-started along a path.

At each penalty ``lam`` the solver repeats (skglm / celer style):

1. the duality gap ``P(B) - D(theta)`` at a dual point built from the current gradient
   (unpenalized directions - intercept, factor-0 features - projected out by one Newton
   step, then scaled into the dual feasible set); stop when it is below ``tol_abs``;
2. gap-safe screening: a zero block whose dual constraint cannot be active inside the
   ball of radius ``sqrt(2 gap)`` around ``theta`` is dropped for this penalty
   (gaussian, binomial, multinomial: their dual is strongly concave);
3. a working set: the nonzero and unpenalized blocks plus the worst KKT violators,
   doubling in size each round;
4. an inner solve on the working set down to 0.3 times the current gap: coordinate
   descent with Anderson extrapolation (gaussian; in covariance form with cached Gram
   columns when ``n`` is not much smaller than ``p``), proximal Newton with a
   backtracking line search otherwise (multinomial: one class at a time with the
   ``1/4`` curvature bound).

Measurements and the history of these choices: docs/lasso_design.md.
"""

from __future__ import annotations

import numpy as np

from mrsolve.solvers.lasso.coordinate_descent import (
    cd_gram,
    cd_residual,
    column_lips,
    gram_lasso_solve,
    gram_matmul,
)
from mrsolve.solvers.lasso.design import Design
from mrsolve.solvers.lasso.glm import Family
from mrsolve.solvers.lasso.prox_newton import FAMILY_CODES, prox_newton_glm
from mrsolve.solvers.lasso.sparse_cd import sparse_lasso_solve

_ANDERSON_K = 5  # epochs between extrapolations (skglm's default)
_INNER_FRACTION = 0.3  # inner solves stop at this fraction of the outer gap (celer)
_WS_MIN = 10
_MAX_PN = 50
_MAX_BACKTRACK = 30
_GRAM_BUDGET = 2**27  # cached Gram entries (1 GiB of float64)
_SMALL_P = 500  # dense designs with at most this many columns get the full Gram even if n < p
# a pass whose weighted squared change is below this (relative to the null deviance)
# moves the objective by less than its rounding: the solve has reached machine precision
_STALL = 1e-24


def uses_full_gram(n: int, p: int, sparse: bool) -> bool:
    """Whether a gaussian path on an ``(n, p)`` design forms the full Gram matrix.

    n >= p: the path ends with (nearly) every feature active, and one symmetric product
    beats growing the cache in many thin passes over X; small p: the product is cheap
    whatever n. Sparse designs keep the residual form (``sparse_cd``).
    """
    return not sparse and (n >= p or p <= _SMALL_P) and p * p <= _GRAM_BUDGET


def _block_norms(M: np.ndarray, starts: np.ndarray, single: bool, per_class: bool):
    """Norms of the row blocks of ``M`` ``(m, k)``: ``(nb, k)`` per class, else ``(nb, 1)``."""
    if single and (per_class or M.shape[1] == 1):
        return np.abs(M)
    sq = M * M if per_class else np.einsum("ij,ij->i", M, M)[:, None]
    if not single:
        sq = np.add.reduceat(sq, starts, axis=0)
    return np.sqrt(sq)


def _anderson(history: list[np.ndarray]) -> np.ndarray | None:
    """Anderson extrapolation of the last iterates (flattened), or None if degenerate."""
    Z = np.array(history)
    U = np.diff(Z, axis=0)
    M = U @ U.T
    try:
        c = np.linalg.solve(M + 1e-12 * np.trace(M) * np.eye(len(M)), np.ones(len(M)))
    except np.linalg.LinAlgError:
        return None
    if not np.all(np.isfinite(c)) or c.sum() == 0:
        return None
    return (c / c.sum()) @ Z[1:]


class PathSolver:
    """State (coefficients, linear predictor) and the per-penalty solve of one path fit.

    Args:
        design: the standardized design (columns sorted by block).
        fam: the family's loss on ``(n, k)`` targets.
        starts, ends: column range of each block ``(nb,)``.
        pf: per-block penalty factor ``(nb,)`` (0: unpenalized, inf: excluded), already
            multiplied by sqrt(block size).
        l1_ratio: elastic-net mixing; fit_intercept: fit an unpenalized intercept.
    """

    def __init__(self, design: Design, fam: Family, starts, ends, pf, l1_ratio, fit_intercept):
        self.D, self.fam = design, fam
        self.n, self.p = design.shape
        self.k = fam.y.shape[1]
        self.kind = type(fam).__name__.lower()
        self.per_class = self.kind == "multinomial"
        self.starts, self.ends, self.pf, self.a = starts, ends, pf, l1_ratio
        self.sizes = ends - starts
        self.single = bool(np.all(self.sizes == 1))
        self.pen = (pf > 0) & np.isfinite(pf)
        self.free_units = np.flatnonzero(pf == 0)
        self.free = self._features(self.free_units)
        self.w = fam.w[:, 0]
        c = fam.curvature
        sq = design.sqnorm if self.single else np.add.reduceat(design.sqnorm, starts)
        self.radius_scale = None if c is None else np.sqrt(c * sq)
        self.B = np.zeros((self.p, self.k))
        self.b0 = np.zeros(self.k)
        self.eta = np.zeros((self.n, self.k))
        self.gaussian = self.kind == "gaussian"
        # gaussian: the intercept decouples from the centered columns and is fixed
        self.icpt = fit_intercept and not self.gaussian
        # sparse gaussian lasso: residual-form CD on the CSC columns in one compiled call
        # (a Gram column costs a pass over X; a sparse coordinate update a few entries)
        self.fused_sparse = self.gaussian and design.sparse and self.single
        self.fused_sparse &= self.k == 1 and l1_ratio == 1.0 and not np.any(pf == 0)
        if self.gaussian:
            yo = fam.y - fam.o
            if fit_intercept:
                self.b0 = self.w @ yo
            self.eta[:] = self.b0
            self.r0 = yo - self.b0
            self.rr0 = float(np.sum(self.w[:, None] * self.r0**2))
            self.qfull = design.rmatmat(self.w[:, None] * self.r0)
            self.cached = design.sparse or 4 * self.n >= self.p
            self.cached &= self.p * min(self.n, self.p) <= _GRAM_BUDGET
            self.cached &= not self.fused_sparse
            if self.cached:
                self.pos = np.full(self.p, -1)
                self.cached_feats = np.zeros(0, dtype=np.int64)
                self._C = np.empty((self.p, 16), order="F")  # capacity doubles
            else:
                self.R = self.r0.copy()
        full_gram = design.gram is not None or uses_full_gram(self.n, self.p, design.sparse)
        if self.gaussian and full_gram:
            self.cached = True
            if design.gram is not None:  # given (cross-validation folds)
                self._C = np.ascontiguousarray(design.gram)
            elif np.all(self.w == self.w[0]):  # equal weights: no weighted copy of X
                self._C = design.X.T @ design.X
                self._C *= self.w[0]
            else:
                Xw = np.sqrt(self.w)[:, None] * design.X
                self._C = Xw.T @ Xw
            self._C = self._C.T  # symmetric: the transpose is the Fortran-order view
            self.pos = np.arange(self.p)
            self.cached_feats = np.arange(self.p)
        # the whole per-penalty solve in one compiled call: plain lasso, one response,
        # full Gram (the Python-level working-set loop costs ~0.3 ms per penalty)
        self.fused = (
            self.gaussian
            and self.single
            and self.k == 1
            and l1_ratio == 1.0
            and self.cached
            and len(self.cached_feats) == self.p
        )
        self._G = None  # the fused solve's correlation q - Q B (p,)
        # binomial / poisson lasso without unpenalized features: the inner solve is one
        # compiled call
        self.fused_pn = self.kind in FAMILY_CODES and self.single and l1_ratio == 1.0
        self.fused_pn &= len(self.free) == 0
        if self.fused_pn:
            self._y1 = np.ascontiguousarray(fam.y[:, 0])
            self._w1 = np.ascontiguousarray(self.w)
            self._o1 = np.ascontiguousarray(np.broadcast_to(fam.o, (self.n, 1))[:, 0])
        if self.fused_sparse:
            X = design.X
            self._csc = (X.indptr, X.indices, X.data)
            self._colw = np.asarray(X.T @ self.w).ravel()
            self._r0 = np.ascontiguousarray(self.r0[:, 0])
            self._Rs = self._r0.copy()
            self._state = np.zeros(2)  # [shift . B, sum w Rs]; sum w r0 = 0 or b0 = 0
            self._state[1] = self.w @ self._r0
        self.XF = design.columns(self.free)  # (n, f) unpenalized feature columns
        self._last_xtu = None  # (U, Xs^T U) of the last full gap
        self.ws_size = _WS_MIN
        #: scale of the objective (the null deviance once known) for the stall test
        self.obj_scale = 1.0

    # -- helpers -------------------------------------------------------------------
    def _features(self, units: np.ndarray) -> np.ndarray:
        if self.single:
            return units
        if len(units) == 0:
            return np.zeros(0, dtype=np.int64)
        return np.concatenate([np.arange(self.starts[u], self.ends[u]) for u in units])

    def _local_blocks(self, units):
        sizes = self.sizes[units]
        ends = np.cumsum(sizes)
        return (ends - sizes).astype(np.int64), ends.astype(np.int64)

    def _penalty(self, nrm: np.ndarray, pf: np.ndarray, lam: float) -> float:
        if not np.isfinite(lam):  # the null fit: penalized blocks are all zero
            return 0.0
        pfin = np.where(np.isfinite(pf), pf, 0.0)[:, None]
        a = self.a
        return float(lam * np.sum(pfin * (a * nrm + 0.5 * (1 - a) * nrm**2)))

    def _l1_l2(self, units, lam):
        pf = self.pf[units]
        pen = self.pen[units]
        with np.errstate(invalid="ignore"):
            l1 = np.where(pen, lam * pf * self.a, 0.0)
            l2 = np.where(pen, lam * pf * (1 - self.a), 0.0)
        return l1, l2

    def _ensure_gram(self, feats: np.ndarray) -> None:
        new = feats[self.pos[feats] < 0]
        if len(new) == 0:
            return
        m0 = len(self.cached_feats)
        if m0 + len(new) > self._C.shape[1]:
            grown = np.empty((self.p, max(2 * self._C.shape[1], m0 + len(new))), order="F")
            grown[:, :m0] = self._C[:, :m0]
            self._C = grown
        self._C[:, m0 : m0 + len(new)] = self.D.gram_columns(new, self.w)
        self.pos[new] = m0 + np.arange(len(new))
        self.cached_feats = np.r_[self.cached_feats, new]

    @property
    def C(self) -> np.ndarray:
        """Cached Gram columns ``Xs^T W Xs[:, cached_feats]`` ``(p, n_cached)`` (a view)."""
        return self._C[:, : len(self.cached_feats)]

    # -- the dual gap --------------------------------------------------------------
    def _scale_and_nu(self, V, pf, lam, starts):
        """Dual scaling ``s`` (lasso part) and the scaled block norms of ``X^T theta``."""
        nu = _block_norms(V, starts, self.single, self.per_class)
        s = 1.0
        if self.a == 1.0 and np.isfinite(lam):
            top = nu.max(1) if nu.shape[1] > 1 else nu[:, 0]
            with np.errstate(divide="ignore", invalid="ignore"):
                worst = float(
                    np.max(top / (lam * pf), initial=0.0)
                )  # pf = 0: inf or nan, excluded below
            if not worst <= 1.0:  # also NaN / inf from unpenalized blocks: use the mask
                pen = (pf > 0) & np.isfinite(pf)
                worst = float((top[pen] / (lam * pf[pen])).max()) if pen.any() else 0.0
            s = 1.0 / worst if worst > 1.0 else 1.0
        return s, nu * s

    def _conj_penalty(self, nu, pf, lam):
        """``lam * Omega^*(X^T theta / lam)`` of the elastic-net part (0 for the lasso)."""
        if self.a == 1.0 or not np.isfinite(lam):
            return 0.0
        pen = (pf > 0) & np.isfinite(pf)
        t = lam * pf[pen][:, None]
        excess = np.maximum(nu[pen] - t * self.a, 0.0)
        return float(np.sum(excess**2 / (2 * t * (1 - self.a))))

    def _gap_gaussian(self, lam, V0, Bc, pf, B_nrm, starts):
        """Gap from Gram-space quantities (no n-vector): ``V0 = X_S^T W r`` for the
        columns S considered, ``Bc`` their coefficients."""
        qB = float(np.sum(self.qfull[self._S] * Bc))
        GB = float(np.sum(V0 * Bc))
        rr = self.rr0 - qB - GB  # sum w r^2
        S0 = self.rr0 - qB  # sum theta0 (y - o)
        T0 = rr  # sum theta0^2 / w
        V = V0
        if len(self.free):
            GF = self._free_corr(V0)
            c = np.linalg.lstsq(self.QFF, GF, rcond=None)[0]
            S0 -= float(np.sum(c * self.qfull[self.free]))
            T0 -= float(np.sum(c * GF))
            V = V0 - self.CF_S @ c
        s, nu = self._scale_and_nu(V, pf, lam, starts)
        dual = s * S0 - 0.5 * s * s * T0 - self._conj_penalty(nu, pf, lam)
        primal = 0.5 * rr + self._penalty(B_nrm, pf, lam)
        return primal - dual, nu, rr

    def _gap_glm(self, lam, Xt_apply, pf, B_nrm, starts):
        """Gap with n-vectors: ``Xt_apply(U)`` multiplies by the considered columns."""
        g, h = self.fam.grad_hess(self.eta)
        theta = -g
        hd = self.w if self.per_class else h[:, 0]
        F = self.XF
        if self.icpt:
            F = np.hstack([np.ones((self.n, 1)), F])
        if F.shape[1] and not self.per_class:
            # the unpenalized directions removed exactly (Newton to convergence): the dual
            # mean stays inside the family's domain, which one Newton step does not
            # guarantee (an infinite gap then made the solve crawl at small penalties)
            e = self.eta
            for _ in range(_MAX_PN):
                ge, he = self.fam.grad_hess(e)
                step = np.linalg.lstsq(F.T @ (he * F), F.T @ ge, rcond=None)[0]
                e = e - F @ step
                if np.max(np.abs(step)) < 1e-13 * (1.0 + np.max(np.abs(e))):
                    break
            theta = -self.fam.grad_hess(e)[0]
            XtU = Xt_apply(np.hstack([theta, g]))
            V, G = XtU[:, :1], -XtU[:, 1:]
        elif F.shape[1]:
            HF = hd[:, None] * F
            XtU = Xt_apply(np.hstack([theta, HF]))
            c = np.linalg.lstsq(F.T @ HF, F.T @ theta, rcond=None)[0]
            theta = theta - HF @ c
            V = XtU[:, : self.k] - XtU[:, self.k :] @ c
            G = -XtU[:, : self.k]
        else:
            V = Xt_apply(theta)
            G = -V
        s, nu = self._scale_and_nu(V, pf, lam, starts)
        dual = self.fam.dual_value(s * theta) - self._conj_penalty(nu, pf, lam)
        primal = self.fam.value(self.eta) + self._penalty(B_nrm, pf, lam)
        return primal - dual, nu, G

    def full_gap(self, lam):
        """Gap over all blocks: (gap, scaled dual norms (nb, kk), gradient norms (nb, kk))."""
        self._S, self._free_S = slice(None), self.free
        B_nrm = _block_norms(self.B, self.starts, self.single, self.per_class)
        if self.gaussian:
            if self.cached:
                # every nonzero is cached: one contiguous product, no column gather
                V0 = self.qfull - self.C @ self.B[self.cached_feats]
                self._V0 = V0
            else:
                V0 = self._full_rmatmat(self.w[:, None] * self.R)
            self.CF_S = self.CF
            gap, nu, self.dev = self._gap_gaussian(lam, V0, self.B, self.pf, B_nrm, self.starts)
            G = -V0
        else:
            gap, nu, G = self._gap_glm(lam, self._full_rmatmat, self.pf, B_nrm, self.starts)
            self.dev = self.fam.deviance(self.eta)
        gnorm = _block_norms(G, self.starts, self.single, self.per_class)
        return gap, nu, gnorm

    def _full_rmatmat(self, U: np.ndarray) -> np.ndarray:
        """``Xs^T U`` for the full gap, reused when ``U`` is unchanged: the state does not
        move between the last full gap at one penalty and the first at the next (the
        products do not depend on the penalty), and the product is a pass over X."""
        if self._last_xtu is None or not np.array_equal(U, self._last_xtu[0]):
            self._last_xtu = (U, self.D.rmatmat(U))
        return self._last_xtu[1]

    def _free_corr(self, V0):
        return V0[self._free_S]

    # -- setup of the unpenalized part ---------------------------------------------
    def prepare(self) -> None:
        """Precompute what the gap needs for the unpenalized features."""
        if self.gaussian:
            if self.cached:
                self._ensure_gram(self.free)
                self.CF = self.C[:, self.pos[self.free]]
            else:
                self.CF = self.D.rmatmat(self.w[:, None] * self.XF)
            self.QFF = self.CF[self.free]

    # -- the per-penalty solve -------------------------------------------------------
    def solve(self, lam: float, tol_abs: float, max_epochs: int) -> tuple[float, int, bool]:
        """Minimize at ``lam`` from the current state; returns (gap, epochs, converged)."""
        if self.fused and np.isfinite(lam):
            return self._solve_fused(lam, tol_abs, max_epochs)
        if self.fused_sparse and np.isfinite(lam):
            b = self.B.reshape(-1)
            gap, self.dev, epochs, conv = sparse_lasso_solve(
                *self._csc,
                self.w,
                self._r0,
                self._Rs,
                self._state,
                self._colw,
                self.D.shift,
                self.D.sqnorm,
                self.pf,
                lam,
                b,
                tol_abs,
                max_epochs,
                _STALL * self.obj_scale,
            )
            return gap, epochs, conv
        epochs = 0
        nnz0 = int(np.count_nonzero(np.any(self.B != 0, axis=1)))
        self.ws_size = max(_WS_MIN, 2 * nnz0)
        nb = len(self.starts)
        screened = np.zeros(nb, dtype=bool)
        stalled = False
        while True:
            gap, nu, gnorm = self.full_gap(lam)
            if gap <= tol_abs:
                return gap, epochs, True
            B_nrm = _block_norms(self.B, self.starts, self.single, self.per_class).max(1)
            zero = B_nrm == 0
            with np.errstate(invalid="ignore"):
                thr = np.where(self.pen, lam * self.pf * self.a, np.inf)
            if self.radius_scale is not None and np.isfinite(lam):
                r = np.sqrt(2 * max(gap, 0.0))
                screened |= zero & self.pen & (nu.max(1) + r * self.radius_scale < thr)
            score = np.where(zero & self.pen & ~screened, gnorm.max(1) - thr, -np.inf)
            viol = np.flatnonzero(score > 0)
            if stalled and len(viol) == 0:  # at machine precision: the gap cannot shrink
                return gap, epochs, True
            if epochs >= max_epochs:
                return gap, epochs, False
            in_ws = ~zero | (self.pf == 0)
            n_add = max(self.ws_size - int(in_ws.sum()), 1)
            if len(viol) > n_add:
                viol = viol[np.argpartition(-score[viol], n_add - 1)[:n_add]]
            in_ws[viol] = True
            ws = np.flatnonzero(in_ws)
            self.ws_size *= 2
            target = max(_INNER_FRACTION * gap, 0.5 * tol_abs)
            done, stalled = self._inner(ws, lam, target, tol_abs, max_epochs - epochs)
            epochs += done

    def _solve_fused(self, lam, tol_abs, max_epochs):
        b = self.B.reshape(-1)  # (p, 1) C-order: a contiguous view
        if self._G is None:  # then kept in step with B by the kernel along the path
            nz = np.flatnonzero(b)
            self._G = self.qfull[:, 0] - self._C[:, nz] @ b[nz]
        G = self._G
        gap, self.dev, epochs, conv = gram_lasso_solve(
            self._C,
            np.ascontiguousarray(self.qfull[:, 0]),
            self.rr0,
            self.pf,
            lam,
            b,
            G,
            self.free,
            np.ascontiguousarray(self.QFF),
            tol_abs,
            max_epochs,
            _STALL * self.obj_scale,
        )
        return gap, epochs, conv

    # -- inner solvers ---------------------------------------------------------------
    def _ws_setup(self, ws):
        feats = self._features(ws)
        self._ws_starts, ends = self._local_blocks(ws)
        self._S = feats
        fpos = np.searchsorted(feats, self.free)
        self._free_S = fpos
        return feats, ends

    def _lips_blocks(self, Xt, h, starts, ends):
        """Block curvature bounds ``||X_g^T H X_g||_2`` from the working-set columns."""
        if self.single:
            return column_lips(Xt, h)
        blocks = [(Xt[s:e] * h) @ Xt[s:e].T for s, e in zip(starts, ends, strict=True)]
        return np.array([np.linalg.eigvalsh(Q)[-1] for Q in blocks])

    def _lips_gram(self, C, rows, cols, starts, ends):
        """Block curvature bounds from the cached Gram columns."""
        if self.single:
            return C[rows, cols].copy()
        blocks = [C[np.ix_(rows[s:e], cols[s:e])] for s, e in zip(starts, ends, strict=True)]
        return np.array([np.linalg.eigvalsh(Q)[-1] for Q in blocks])

    def _inner(self, ws, lam, target, tol_abs, max_epochs):
        feats, ends = self._ws_setup(ws)
        l1, l2 = self._l1_l2(ws, lam)
        if self.gaussian:
            return self._inner_gaussian(ws, feats, ends, l1, l2, lam, target, tol_abs, max_epochs)
        return self._inner_glm(ws, feats, ends, l1, l2, lam, target, tol_abs, max_epochs)

    def _inner_gaussian(self, ws, feats, ends, l1, l2, lam, target, tol_abs, max_epochs):
        starts = self._ws_starts
        pf = self.pf[ws]
        Bw = np.ascontiguousarray(self.B[feats])
        if self.cached:
            self._ensure_gram(feats)
            C, cols = self.C, self.pos[feats]
            G = self._V0[feats]  # B has not moved since the full gap
            lips = self._lips_gram(C, feats, cols, starts, ends)
        else:
            Xw = self.D.columns(feats)
            Xt = Xw.T
            R = self.R
            lips = self._lips_blocks(Xt, self.w, starts, ends)
            empty_b0 = np.zeros(self.k)
        self.CF_S = self.CF[feats]
        hist = [Bw.ravel().copy()]
        epochs, stalled = 0, False

        def objective(Bv, Gv):
            rr = self.rr0 - float(np.sum(self.qfull[feats] * Bv)) - float(np.sum(Gv * Bv))
            nrm = _block_norms(Bv, starts, self.single, False)
            return 0.5 * rr + self._penalty(nrm, pf, lam)

        while epochs < max_epochs:
            # covariance form: the gap costs O(m), so check it after every pass
            n_ep = 1 if self.cached and len(feats) >= 200 else min(_ANDERSON_K, max_epochs - epochs)
            if self.cached:
                done, dmax = cd_gram(C, feats, cols, G, Bw, starts, ends, lips, l1, l2, n_ep, 0.0)
            else:
                done, dmax = cd_residual(
                    Xt, self.w, R, Bw, empty_b0, starts, ends, lips, l1, l2, False, n_ep, 0.0
                )
                G = Xt @ (self.w[:, None] * R)
            epochs += done
            hist.append(Bw.ravel().copy())
            if len(hist) > _ANDERSON_K + 1:
                hist.pop(0)
            if len(hist) == _ANDERSON_K + 1:
                acc = _anderson(hist)
                if acc is not None:
                    Ba = acc.reshape(Bw.shape)
                    if self.cached:
                        Ga = self.qfull[feats] - gram_matmul(C, feats, cols, Ba)
                    else:
                        Ra = self.r0 - Xw @ Ba
                        Ga = Xt @ (self.w[:, None] * Ra)
                    if objective(Ba, Ga) < objective(Bw, G):
                        Bw[:], G = Ba, Ga
                        if not self.cached:
                            R[:] = Ra
                hist = [Bw.ravel().copy()]
            B_nrm = _block_norms(Bw, starts, self.single, self.per_class)
            gap, _, _ = self._gap_gaussian(lam, G, Bw, pf, B_nrm, starts)
            if dmax < _STALL * self.obj_scale:
                stalled = True
            if gap <= target or stalled:
                break
        self.B[feats] = Bw
        return epochs, stalled

    def _inner_glm(self, ws, feats, ends, l1, l2, lam, target, tol_abs, max_epochs):
        if self.fused_pn and np.isfinite(lam):
            Bw = np.ascontiguousarray(self.B[feats, 0])
            epochs, stalled = prox_newton_glm(
                np.ascontiguousarray(self.D.columns(feats).T),
                self._y1,
                self._w1,
                self._o1,
                self.eta.reshape(-1),
                Bw,
                self.b0,
                np.ascontiguousarray(self.pf[ws]),
                lam,
                self.icpt,
                target,
                _MAX_PN,
                max_epochs,
                _STALL * self.obj_scale,
                FAMILY_CODES[self.kind],
            )
            self.B[feats, 0] = Bw
            return epochs, stalled
        starts = self._ws_starts
        pf = self.pf[ws]
        Xw = self.D.columns(feats)
        Xt = Xw.T
        epochs, stalled = 0, False
        classes = range(self.k) if self.per_class else [None]
        for _ in range(_MAX_PN):
            Bw = np.ascontiguousarray(self.B[feats])
            change = 0.0
            for c in classes:
                cols = slice(None) if c is None else slice(c, c + 1)
                g, h = self.fam.grad_hess(self.eta)
                if c is None:
                    h1 = h[:, 0]
                    R = -g / np.where(h > 0, h, 1.0)  # zero-weight rows: no residual
                else:  # majorize-minimize with the bound p (1 - p) <= 1/4: always descends
                    h1 = 0.25 * self.w
                    R = -g[:, cols] / h1[:, None]
                R = np.ascontiguousarray(R)
                R_old = R.copy()
                Bc = np.array(Bw[:, cols], order="C")  # a copy: Bw moves by the line search
                b0c = self.b0[cols].copy()
                B_old, b0_old = Bc.copy(), b0c.copy()
                lips = self._lips_blocks(Xt, h1, starts, ends)
                done, _ = cd_residual(
                    Xt,
                    h1,
                    R,
                    Bc,
                    b0c,
                    starts,
                    ends,
                    lips,
                    l1,
                    l2,
                    self.icpt,
                    max(1, min(20, max_epochs - epochs)),
                    0.01 * target,
                )
                epochs += done
                d_eta = R_old - R
                if c is None:
                    t = self._line_search(Bw, Bc - B_old, b0c - b0_old, d_eta, starts, pf, lam)
                    Bw += t * (Bc - B_old)
                    self.b0 += t * (b0c - b0_old)
                    self.eta += t * d_eta
                    d_eta = t * d_eta
                else:
                    Bw[:, cols] = Bc
                    self.b0[cols] = b0c
                    self.eta[:, cols] += d_eta
                # size of the step on the objective's scale (its quadratic-model decrease)
                change = max(change, float(np.sum(h1[:, None] * d_eta**2)))
            if self.per_class:  # softmax is shift invariant: pin the unpenalized parts
                shift = Bw[self._free_S].mean(1, keepdims=True)
                Bw[self._free_S] -= shift
                self.eta -= self.XF @ shift
                m = self.b0.mean()
                self.b0 -= m
                self.eta -= m
            self.B[feats] = Bw
            B_nrm = _block_norms(Bw, starts, self.single, self.per_class)
            gap, _, _ = self._gap_glm(lam, lambda U: Xt @ U, pf, B_nrm, starts)
            if change < _STALL * self.obj_scale:
                stalled = True
            if gap <= target or stalled or epochs >= max_epochs:
                break
        return epochs, stalled

    def _line_search(self, Bw, dB, db0, d_eta, starts, pf, lam):
        """Largest step in 1, 1/2, ... that does not increase the objective."""

        def obj(t):
            Bt = Bw + t * dB
            nrm = _block_norms(Bt, starts, self.single, False)
            return self.fam.value(self.eta + t * d_eta) + self._penalty(nrm, pf, lam)

        f0 = obj(0.0)
        t = 1.0
        for _ in range(_MAX_BACKTRACK):
            if obj(t) <= f0 + 1e-12 * abs(f0):
                return t
            t *= 0.5
        return 0.0
