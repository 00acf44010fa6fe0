"""Regularization paths of the lasso, elastic net and group lasso for GLMs (glmnet style).

For each penalty ``lambda`` of a decreasing sequence ``penalties``, :func:`fit_path` minimizes::

    datafit(X B + b0 + offset) + lambda * sum_g pf_g * (l1_ratio ||B_g|| + (1 - l1_ratio)/2 ||B_g||^2)

where the datafit is the weighted mean loss of :mod:`mrsolve.solvers.datafit` (so for
gaussian ``(1/2n) sum_i w_i (y_i - eta_i)^2``, scikit-learn's ``Lasso``/``ElasticNet``
scaling with ``alpha = lambda``), ``B_g`` is a single coefficient (lasso), a feature
group (group lasso) or, for a 2-D gaussian ``y``, a row of ``B`` shared by all
responses (multi-task lasso). Penalty factors are used as given (no rescaling): 0 leaves
a feature unpenalized, ``inf`` excludes it. The intercept is never penalized.

Method: IRLS outer loop (a Newton step on the datafit, from ``datafit.working``) around
block coordinate descent, warm starts along the path, sequential strong rules with a KKT
check, and backtracking when a Poisson step would increase the objective. Multinomial
coefficients are updated one class at a time (glmnet's "ungrouped" multinomial).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from mrsolve.solvers.datafit import FAMILIES, Datafit
from mrsolve.solvers.lasso.coordinate_descent import block_cd
from mrsolve.solvers.validation import (
    RenamedAttributes,
    check_choice,
    deprecated_names,
    renamed_kwargs,
)

_MAX_IRLS = 100
_MAX_BACKTRACK = 30

#: the path arguments' old (glmnet) names -> the shared vocabulary, deprecated
PATH_RENAMES = {
    "lambdas": "penalties",
    "n_lambdas": "n_penalties",
    "lambda_min_ratio": "penalty_min_ratio",
}


@dataclass(frozen=True)
class PathResult(RenamedAttributes):
    """A fitted regularization path.

    Attributes:
        penalties: penalty levels (glmnet's lambdas) ``(L,)``, decreasing.
        coef: coefficients ``(L, p)``, or ``(L, p, k)`` for multinomial / multi-task.
        intercept: ``(L,)`` or ``(L, k)``.
        family: the GLM family.
        n_iter: coordinate-descent passes made along the whole path.
    """

    _renamed: ClassVar[dict[str, str]] = {"lambdas": "penalties"}

    penalties: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    family: str
    n_iter: int

    def linear_predictor(self, X: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """``X @ coef + intercept (+ offset)`` for every penalty: ``(L, n)`` or ``(L, n, k)``."""
        X = np.asarray(X, dtype=np.float64)
        if self.coef.ndim == 2:
            eta = X @ self.coef.T + self.intercept[None, :]
            eta = eta.T
        else:
            eta = np.einsum("np,lpk->lnk", X, self.coef) + self.intercept[:, None, :]
        if offset is not None:
            off = np.asarray(offset, dtype=np.float64)
            eta = eta + (off[None, :, None] if (eta.ndim == 3 and off.ndim == 1) else off[None])
        return eta


def family_datafit(
    family: str,
    y: np.ndarray,
    weights: np.ndarray | None,
    offset: np.ndarray | None,
    n_classes: int | None = None,
) -> Datafit:
    """The shared datafit of ``family`` for numpy targets (float64 tensors)."""
    check_choice("family", family, FAMILIES)
    t = torch.from_numpy(np.ascontiguousarray(y))
    w = None if weights is None else torch.from_numpy(np.asarray(weights, dtype=np.float64))
    o = None if offset is None else torch.from_numpy(np.asarray(offset, dtype=np.float64))
    if family == "multinomial":
        t = torch.from_numpy(np.eye(n_classes)[np.asarray(y, dtype=np.int64)])
    return FAMILIES[family](t.double(), w, o)


class _Working:
    """The standardized design, its blocks and the datafit of one path fit."""

    def __init__(
        self,
        X,
        y,
        *,
        family,
        weights,
        offset,
        pf,
        feature_groups,
        fit_intercept,
        standardize,
        n_classes,
    ):
        n, p = X.shape
        self.family = family
        self.df = family_datafit(family, y, weights, offset, n_classes)
        self.k = self.df.y.shape[1] if self.df.y.ndim == 2 else 1
        w = self.df.weights.numpy() / n
        self.fit_intercept = fit_intercept
        self.xbar = w @ X if fit_intercept else np.zeros(p)
        Xc = X - self.xbar
        self.scale = np.ones(p)
        if standardize:
            sd = np.sqrt(w @ Xc**2)
            self.scale = np.where(sd > 0, sd, 1.0)
        if feature_groups is None:
            labels = np.arange(p)
        else:
            labels = np.asarray(feature_groups)
            if labels.shape != (p,):
                raise ValueError(
                    f"feature_groups must have shape ({p},) (one label per feature), "
                    f"got {labels.shape}"
                )
        self.order = np.argsort(labels, kind="stable")
        _, starts, sizes = np.unique(labels[self.order], return_index=True, return_counts=True)
        self.starts = starts.astype(np.int64)
        self.ends = (starts + sizes).astype(np.int64)
        self.Xs = np.ascontiguousarray((Xc / self.scale)[:, self.order])
        self.Xt = np.ascontiguousarray(self.Xs.T)
        pf_sorted = pf[self.order]
        pf_block = pf_sorted[self.starts]
        for g, (s, e) in enumerate(zip(self.starts, self.ends, strict=True)):
            if not np.all(pf_sorted[s:e] == pf_block[g]):
                raise ValueError(
                    f"penalty_factor must be constant within each feature group; group {g} "
                    f"has {np.unique(pf_sorted[s:e])}"
                )
        self.pf = pf_block * np.sqrt(sizes)
        self.block_of = np.repeat(np.arange(len(sizes)), sizes)
        self.single = bool(np.all(sizes == 1))

    # -- helpers -------------------------------------------------------------------
    def eta(self, B, b0):
        e = self.Xs @ B + b0
        return e if self.df.y.ndim == 2 else e[:, 0]

    def grad_norms(self, B, b0):
        """Block norms of the datafit gradient in B."""
        g = self.df.grad(torch.from_numpy(self.eta(B, b0))).numpy()
        G = self.Xt @ (g if g.ndim == 2 else g[:, None])
        if self.family == "multinomial":  # classes are penalized separately (ungrouped)
            return np.maximum.reduceat(np.abs(G).max(1), self.starts)
        return np.sqrt(np.add.reduceat((G**2).sum(1), self.starts))

    def lips(self, h):
        if self.single:
            return h @ self.Xs**2
        out = np.empty(len(self.starts))
        for g, (s, e) in enumerate(zip(self.starts, self.ends, strict=True)):
            Xg = self.Xs[:, s:e]
            out[g] = np.linalg.eigvalsh((Xg * h[:, None]).T @ Xg)[-1]
        return out

    def penalty(self, B, lam, l1_ratio):
        nrm2 = np.add.reduceat((B**2).sum(1), self.starts)
        pf = np.where(np.isfinite(self.pf), self.pf, 0.0)
        return lam * np.sum(pf * (l1_ratio * np.sqrt(nrm2) + 0.5 * (1 - l1_ratio) * nrm2))

    def objective(self, B, b0, lam, l1_ratio):
        return float(self.df.value(torch.from_numpy(self.eta(B, b0)))) + self.penalty(
            B, lam, l1_ratio
        )

    # -- the solve at one lambda on a set of blocks --------------------------------
    def solve(self, B, b0, blocks, lam, l1_ratio, tol, max_sweeps):
        """IRLS + block CD on ``blocks``; B, b0 updated in place; returns passes made."""
        finite = np.isfinite(self.pf)
        pf = np.where(finite, self.pf, 0.0)
        l1 = np.where(finite, lam * pf * l1_ratio, np.inf)  # inf: the block stays at 0
        l2 = lam * pf * (1 - l1_ratio)
        classes = range(self.k) if self.family == "multinomial" else [None]
        passes = 0
        glm = self.family != "gaussian"
        obj = self.objective(B, b0, lam, l1_ratio) if glm else 0.0
        for _ in range(_MAX_IRLS):
            B_start, b0_start = B.copy(), b0.copy()
            for c in classes:
                eta = self.eta(B, b0)
                if c is not None:
                    # one class at a time with the bound p(1-p) <= 1/4 on its curvature: a
                    # majorize-minimize step that always descends (the exact p(1-p)
                    # Newton step overshoots and needs many backtracking halvings)
                    g = self.df.grad(torch.from_numpy(eta)).numpy()[:, c]
                    h = 0.25 * self.df.weights.numpy() / len(g)
                    eta = eta[:, c]
                    z = eta - g / np.where(h > 0, h, 1.0)
                else:
                    h, z = (t.numpy() for t in self.df.working(torch.from_numpy(eta)))
                if h.ndim == 2:  # multi-task gaussian: same curvature in every column
                    h = h[:, 0]
                R = (z - eta).reshape(len(h), -1).copy()
                cols = slice(None) if c is None else slice(c, c + 1)
                Bc, bc = np.ascontiguousarray(B[:, cols]), np.ascontiguousarray(b0[cols])
                Bprev, bprev = Bc.copy(), bc.copy()
                passes += block_cd(
                    self.Xt,
                    h,
                    R,
                    Bc,
                    bc,
                    starts=self.starts,
                    ends=self.ends,
                    lips=self.lips(h),
                    l1=l1,
                    l2=l2,
                    blocks=blocks,
                    fit_intercept=self.fit_intercept,
                    tol=tol,
                    max_sweeps=max_sweeps,
                )
                B[:, cols], b0[cols] = Bc, bc
                if not glm:
                    return passes
                if c is not None:  # majorize-minimize steps always descend
                    continue
                # proximal Newton step: backtrack until the objective does not increase
                new = self.objective(B, b0, lam, l1_ratio)
                for _ in range(_MAX_BACKTRACK):
                    if new <= obj + 1e-10 * abs(obj):
                        break
                    B[:, cols], b0[cols] = 0.5 * (B[:, cols] + Bprev), 0.5 * (b0[cols] + bprev)
                    new = self.objective(B, b0, lam, l1_ratio)
                obj = new
            if self.family == "multinomial":  # softmax is shift invariant: pin the free parts
                free = self.pf[self.block_of] == 0
                B[free] -= B[free].mean(1, keepdims=True)
                b0 -= b0.mean()
            h = self.df.hessian_diag(torch.from_numpy(self.eta(B, b0))).numpy()
            h = h.sum(1) if h.ndim == 2 else h
            dB = np.add.reduceat(((B - B_start) ** 2).sum(1), self.starts)
            change = max(
                float(np.max(self.lips(h) * dB, initial=0.0)),
                float(h.sum() * np.max((b0 - b0_start) ** 2)),
            )
            if change < tol:
                break
        return passes


@contextlib.contextmanager
def torch_single_thread() -> Iterator[None]:
    """Run torch single-threaded: the solver makes thousands of tiny datafit calls, and
    after ``torch.set_num_threads(k > 1)`` each one waits ~ms on the OpenMP pool."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _as_penalty_factor(penalty_factor, p):
    if penalty_factor is None:
        return np.ones(p)
    pf = np.asarray(penalty_factor, dtype=np.float64)
    if pf.shape != (p,):
        raise ValueError(f"penalty_factor must have shape ({p},), got {pf.shape}")
    if np.any(np.isnan(pf)) or np.any(pf < 0):
        raise ValueError("penalty_factor must be >= 0 (inf excludes a feature), got NaN or < 0")
    return pf


@renamed_kwargs(**PATH_RENAMES, max_sweeps="max_iter")
@torch_single_thread()
def fit_path(
    X: np.ndarray,
    y: np.ndarray,
    *,
    penalties: np.ndarray | None = None,
    n_penalties: int = 100,
    penalty_min_ratio: float | None = None,
    family: str = "gaussian",
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    l1_ratio: float = 1.0,
    penalty_factor: np.ndarray | None = None,
    feature_groups: np.ndarray | None = None,
    fit_intercept: bool = True,
    standardize: bool = False,
    n_classes: int | None = None,
    tol: float = 1e-14,
    max_iter: int = 100_000,
) -> PathResult:
    """Fit a lasso / elastic-net / group-lasso path (see the module docstring).

    Args:
        X: design ``(n, p)``.
        y: gaussian ``(n,)`` or ``(n, k)`` (multi-task); binomial ``(n,)`` in [0, 1];
            poisson ``(n,)`` >= 0; multinomial integer labels ``(n,)`` in ``0..k-1``.
        family: "gaussian", "binomial", "multinomial" or "poisson".
        weights: observation weights ``(n,)`` (normalized to mean 1).
        offset: added to the linear predictor, ``(n,)`` (or ``(n, k)``).
        penalties: penalty levels (sorted decreasing); default: ``n_penalties`` values
            log-spaced from the smallest penalty giving an all-zero fit down to
            ``penalty_min_ratio`` times it (1e-4 if n > p else 1e-2); like glmnet, this
            default path stops early once the deviance explained exceeds 99.9% or grows
            by less than 1e-5 (relative) between steps.
        l1_ratio: elastic-net mixing in [0, 1] (1 = lasso).
        penalty_factor: per-feature factors ``(p,)``, constant within a feature group.
        feature_groups: group label per feature ``(p,)`` for the group lasso (a group's
            factor is scaled by sqrt(group size)).
        fit_intercept: fit an unpenalized intercept.
        standardize: penalize coefficients of columns scaled to unit weighted sd
            (coefficients are returned on the original scale).
        n_classes: multinomial number of classes (default: largest label + 1).
        tol: relative convergence tolerance of coordinate descent and IRLS.
        max_iter: cap on coordinate-descent passes per solve.

    The old keywords ``lambdas``, ``n_lambdas``, ``lambda_min_ratio`` and ``max_sweeps``
    still work for one release (DeprecationWarning).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n, p = X.shape
    if family == "multinomial":
        y = y.astype(np.int64)
        n_classes = int(y.max()) + 1 if n_classes is None else n_classes
    else:
        y = y.astype(np.float64)
    if not 0 <= l1_ratio <= 1:
        raise ValueError(f"l1_ratio must be in [0, 1], got {l1_ratio}")
    pf = _as_penalty_factor(penalty_factor, p)
    W = _Working(
        X,
        y,
        family=family,
        weights=weights,
        offset=offset,
        pf=pf,
        feature_groups=feature_groups,
        fit_intercept=fit_intercept,
        standardize=standardize,
        n_classes=n_classes,
    )
    nb = len(W.starts)
    B = np.zeros((p, W.k))
    b0 = np.zeros(W.k)
    free = np.flatnonzero(W.pf == 0)
    penalized = np.flatnonzero((W.pf > 0) & np.isfinite(W.pf))
    # tolerance on objective changes, relative to the null model's working variance
    eta0 = W.eta(B, b0)
    h0, z0 = (t.numpy() for t in W.df.working(torch.from_numpy(eta0)))
    zc = z0 - (h0 * z0).sum(0) / h0.sum(0)
    tol_abs = tol * max(float((h0 * zc**2).sum()), 1e-300)
    n_iter = W.solve(B, b0, free, 1.0, l1_ratio, tol_abs, max_iter)
    gn = W.grad_norms(B, b0)
    null_dev = float(W.df.deviance(torch.from_numpy(W.eta(B, b0))))
    early_stop = penalties is None
    prev_ratio = 0.0
    mix = max(l1_ratio, 1e-3)
    if penalties is None:
        lam_max = float(np.max(gn[penalized] / (W.pf[penalized] * mix), initial=0.0))
        # (1 + 1e-13): keeps the first fit exactly zero despite rounding in the gradient
        lam_max = lam_max * (1 + 1e-13) if lam_max > 0 else 1.0
        ratio = penalty_min_ratio if penalty_min_ratio is not None else (1e-4 if n > p else 1e-2)
        penalties = lam_max * np.logspace(0, np.log10(ratio), n_penalties)
    else:
        penalties = np.asarray(penalties, dtype=np.float64)
        if penalties.ndim != 1 or np.any(penalties < 0) or np.any(np.diff(penalties) > 0):
            raise ValueError(
                f"penalties must be a 1-D non-negative decreasing sequence, got {penalties!r}"
            )
    coefs = np.empty((len(penalties), p, W.k))
    icpts = np.empty((len(penalties), W.k))
    ever = np.zeros(nb, dtype=bool)
    ever[free] = True
    lam_prev = float(penalties[0])
    for i, lam in enumerate(penalties):
        lam = float(lam)
        cand = np.zeros(nb, dtype=bool)
        cand[penalized] = (gn[penalized] >= mix * W.pf[penalized] * (2 * lam - lam_prev)) | (
            l1_ratio == 0
        )
        active = ever | cand
        while True:
            blocks = np.flatnonzero(active)
            n_iter += W.solve(B, b0, blocks, lam, l1_ratio, tol_abs, max_iter)
            gn = W.grad_norms(B, b0)
            viol = np.zeros(nb, dtype=bool)
            viol[penalized] = (~active[penalized]) & (
                gn[penalized] > l1_ratio * W.pf[penalized] * lam * (1 + 1e-9) + 1e-14
            )
            if not viol.any():
                break
            active |= viol
        nz = np.add.reduceat((B**2).sum(1), W.starts) > 0
        ever |= nz
        lam_prev = lam
        coef = np.empty_like(B)
        coef[W.order] = B
        coef /= W.scale[:, None]
        coefs[i] = coef
        icpts[i] = b0 - W.xbar @ coef
        if early_stop:  # glmnet's rule: stop once the fit explains (almost) everything
            dev = float(W.df.deviance(torch.from_numpy(W.eta(B, b0))))
            ratio = 1 - dev / null_dev if null_dev > 0 else 1.0
            if ratio > 0.999 or (i > 0 and ratio - prev_ratio < 1e-5 * max(ratio, 1e-300)):
                penalties, coefs, icpts = penalties[: i + 1], coefs[: i + 1], icpts[: i + 1]
                break
            prev_ratio = ratio
    if W.family == "multinomial":
        icpts -= icpts.mean(1, keepdims=True)
    squeeze = W.df.y.ndim == 1
    return PathResult(
        penalties=penalties,
        coef=coefs[..., 0] if squeeze else coefs,
        intercept=icpts[:, 0] if squeeze else icpts,
        family=family,
        n_iter=int(n_iter),
    )


__getattr__ = deprecated_names(__name__, {"Path": PathResult})
