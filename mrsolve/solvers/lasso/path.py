"""Regularization paths of the lasso, elastic net and group lasso for GLMs (glmnet style).

For each penalty ``lambda`` of a decreasing sequence ``penalties``, :func:`fit_path` minimizes::

    datafit(X B + b0 + offset) + lambda * sum_g pf_g * (l1_ratio ||B_g|| + (1 - l1_ratio)/2 ||B_g||^2)

where the datafit is the weighted mean loss of :mod:`mrsolve.solvers.datafit` (so for
gaussian ``(1/2n) sum_i w_i (y_i - eta_i)^2``, scikit-learn's ``Lasso``/``ElasticNet``
scaling with ``alpha = lambda``), ``B_g`` is a single coefficient (lasso), a feature
group (group lasso) or, for a 2-D gaussian ``y``, a row of ``B`` shared by all
responses (multi-task lasso). Penalty factors are used as given (no rescaling): 0 leaves
a feature unpenalized, ``inf`` excludes it. The intercept is never penalized.

Method (:mod:`~mrsolve.solvers.lasso.solver`): at each penalty, warm-started from the
previous one, working sets grown from the KKT violators, gap-safe screening, and an inner
solve by coordinate descent with Anderson extrapolation (gaussian, in covariance form
when n is not much smaller than p) or proximal Newton with backtracking (other
families; multinomial one class at a time, glmnet's "ungrouped" multinomial), until the
duality gap relative to the null deviance is below ``tol``. ``X`` may be scipy.sparse.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import scipy.sparse as sp
import torch

from mrsolve.solvers.datafit import FAMILIES, Datafit
from mrsolve.solvers.lasso.design import Design
from mrsolve.solvers.lasso.glm import FAMILY_CLASSES, Family
from mrsolve.solvers.lasso.solver import PathSolver
from mrsolve.solvers.validation import (
    RenamedAttributes,
    check_choice,
    deprecated_names,
    renamed_kwargs,
)

#: default relative duality gap (scikit-learn's Lasso accuracy, see fit_path)
DEFAULT_TOL = 1e-4

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
        gap: duality gap at each penalty relative to the null deviance ``(L,)`` (the
            quantity ``tol`` bounds).
        converged: whether each penalty reached ``tol`` (or machine precision) ``(L,)``.
    """

    _renamed: ClassVar[dict[str, str]] = {"lambdas": "penalties"}

    penalties: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    family: str
    n_iter: int
    gap: np.ndarray
    converged: np.ndarray

    def linear_predictor(self, X: np.ndarray, offset: np.ndarray | None = None) -> np.ndarray:
        """``X @ coef + intercept (+ offset)`` for every penalty: ``(L, n)`` or ``(L, n, k)``."""
        if not sp.issparse(X):
            X = np.asarray(X, dtype=np.float64)
        if self.coef.ndim == 2:
            eta = X @ self.coef.T + self.intercept[None, :]
            eta = eta.T
        else:
            eta = np.stack([X @ c for c in self.coef]) + self.intercept[:, None, :]
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


def numpy_family(df: Datafit, family: str) -> Family:
    """The solver's numpy loss with the targets, weights (sum 1) and offset of ``df``."""
    yk = df.y.numpy()
    yk = yk if yk.ndim == 2 else yk[:, None]
    w = (df.weights.numpy() / len(yk))[:, None]
    o = df.offset.numpy()
    o = o[:, None] if o.ndim == 1 else o
    return FAMILY_CLASSES[family](yk, w, o)


def _blocks(feature_groups, pf: np.ndarray, p: int):
    """Column order, block ranges and per-block penalty factors (times sqrt(size))."""
    if feature_groups is None:  # one block per feature
        starts = np.arange(p, dtype=np.int64)
        return np.arange(p), starts, starts + 1, pf.copy()
    else:
        labels = np.asarray(feature_groups)
        if labels.shape != (p,):
            raise ValueError(
                f"feature_groups must have shape ({p},) (one label per feature), got {labels.shape}"
            )
    order = np.argsort(labels, kind="stable")
    _, starts, sizes = np.unique(labels[order], return_index=True, return_counts=True)
    pf_sorted = pf[order]
    pf_block = pf_sorted[starts]
    for g, (s, e) in enumerate(zip(starts, starts + sizes, strict=True)):
        if not np.all(pf_sorted[s:e] == pf_block[g]):
            raise ValueError(
                f"penalty_factor must be constant within each feature group; group {g} "
                f"has {np.unique(pf_sorted[s:e])}"
            )
    starts = starts.astype(np.int64)
    return order, starts, (starts + sizes).astype(np.int64), pf_block * np.sqrt(sizes)


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
    X: np.ndarray | sp.spmatrix,
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
    tol: float = DEFAULT_TOL,
    max_iter: int = 100_000,
    gram: np.ndarray | None = None,
) -> PathResult:
    """Fit a lasso / elastic-net / group-lasso path (see the module docstring).

    Args:
        X: design ``(n, p)``, dense or scipy.sparse (kept sparse).
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
        tol: bound on the duality gap at every penalty, relative to the null deviance
            (the deviance of the fit with only the unpenalized terms); the default
            1e-4 is scikit-learn's ``Lasso`` accuracy (its gap bound is
            ``tol * ||y - mean||^2 / n``, the gaussian null deviance).
        max_iter: cap on coordinate-descent passes per penalty.
        gram: gaussian, dense ``X``: its weighted Gram matrix
            ``sum_i w_i (x_i - xbar)(x_i - xbar)^T`` ``(p, p)``, with ``w = weights /
            sum(weights)`` and ``xbar`` the weighted column means (0 without an
            intercept), used instead of forming it; ``X`` is then not copied
            (:func:`~mrsolve.solvers.lasso.cv.cv_path` passes each fold's, the full Gram
            minus the held-out rows').

    The old keywords ``lambdas``, ``n_lambdas``, ``lambda_min_ratio`` and ``max_sweeps``
    still work for one release (DeprecationWarning).
    """
    if not sp.issparse(X):
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
    if not tol > 0:
        raise ValueError(f"tol must be > 0 (a relative duality gap), got {tol}")
    pf = _as_penalty_factor(penalty_factor, p)
    if gram is not None:
        gram = np.asarray(gram, dtype=np.float64)
        if family != "gaussian" or sp.issparse(X) or gram.shape != (p, p):
            raise ValueError(
                f"gram must be a ({p}, {p}) array for a gaussian family and a dense X, got "
                f"shape {gram.shape}, family {family!r}, {'sparse' if sp.issparse(X) else 'dense'} X"
            )
    df = family_datafit(family, y, weights, offset, n_classes)  # validates y, weights, offset
    fam = numpy_family(df, family)
    yk = fam.y
    order, starts, ends, pf_block = _blocks(feature_groups, pf, p)
    design = Design(X, fam.w[:, 0], order, fit_intercept, standardize, gram)
    S = PathSolver(design, fam, starts, ends, pf_block, l1_ratio, fit_intercept)
    S.prepare()
    k = yk.shape[1]
    # the null fit (only the unpenalized terms) sets the scale of the gap
    _, n_iter, _ = S.solve(np.inf, 0.0, max_iter)
    null_dev = max(S.dev, 1e-300)
    S.obj_scale = null_dev
    tol_abs = tol * null_dev
    _, _, gnorm = S.full_gap(np.inf)
    pen = S.pen
    early_stop = penalties is None
    mix = max(l1_ratio, 1e-3)
    if penalties is None:
        lam_max = float(np.max(gnorm.max(1)[pen] / (pf_block[pen] * mix), initial=0.0))
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
    L = len(penalties)
    coefs = np.empty((L, p, k))
    icpts = np.empty((L, k))
    gaps = np.empty(L)
    conv = np.empty(L, dtype=bool)
    prev_ratio = 0.0
    for i, lam in enumerate(penalties):
        gap, done, conv[i] = S.solve(float(lam), tol_abs, max_iter)
        n_iter += done
        gaps[i] = gap / null_dev
        coefs[i], icpts[i] = S.B, S.b0  # design scale, converted below
        if early_stop:  # glmnet's rule: stop once the fit explains (almost) everything
            ratio = 1 - S.dev / null_dev
            if ratio > 0.999 or (i > 0 and ratio - prev_ratio < 1e-5 * max(ratio, 1e-300)):
                penalties = penalties[: i + 1]
                coefs, icpts, gaps, conv = (
                    coefs[: i + 1],
                    icpts[: i + 1],
                    gaps[: i + 1],
                    conv[: i + 1],
                )
                break
            prev_ratio = ratio
    # back to the original columns and scale, all penalties at once (per penalty, the
    # small numpy calls were a tenth of a cross-validated pretrained lasso's time)
    coefs /= design.scale[:, None]
    icpts -= np.einsum("j,ljk->lk", design.xbar, coefs)
    if not np.array_equal(order, np.arange(p)):
        coefs = coefs[:, np.argsort(order)]
    if family == "multinomial":
        icpts -= icpts.mean(1, keepdims=True)
    squeeze = df.y.ndim == 1
    return PathResult(
        penalties=penalties,
        coef=coefs[..., 0] if squeeze else coefs,
        intercept=icpts[:, 0] if squeeze else icpts,
        family=family,
        n_iter=int(n_iter),
        gap=gaps,
        converged=conv,
    )


__getattr__ = deprecated_names(__name__, {"Path": PathResult})
