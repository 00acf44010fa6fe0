"""K-fold cross-validation of a regularization path (glmnet's ``cv.glmnet``).

The folds are fitted on the full-data penalty (lambda) sequence; the held-out error is the
datafit's deviance (mean squared error for gaussian), weighted by the observation
weights, averaged over folds with fold weights; its standard error is the weighted
spread over folds divided by sqrt(K - 1). ``lambda_min`` minimizes the mean error and
``lambda_1se`` is the largest lambda whose error is within one standard error of it.
The out-of-fold ("pre-validated") linear predictors are kept for the pretrained lasso.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrsolve.solvers.lasso.glm import Family
from mrsolve.solvers.lasso.path import (
    PATH_RENAMES,
    PathResult,
    family_datafit,
    fit_path,
    numpy_family,
)
from mrsolve.solvers.validation import SeedLike, deprecated_names, make_generator, renamed_kwargs


@dataclass(frozen=True)
class CVPathResult:
    """A path with its cross-validation curve.

    Attributes:
        path: the full-data path.
        cv_mean, cv_se: mean held-out deviance and its standard error, ``(L,)``.
        index_min, index_1se: positions of lambda_min and lambda_1se in ``path.penalties``.
        oof_eta: out-of-fold linear predictor without the offset, ``(L, n)`` or ``(L, n, k)``.
        foldid: fold of each observation ``(n,)``.
    """

    path: PathResult
    cv_mean: np.ndarray
    cv_se: np.ndarray
    index_min: int
    index_1se: int
    oof_eta: np.ndarray
    foldid: np.ndarray

    @property
    def lambda_min(self) -> float:
        return float(self.path.penalties[self.index_min])

    @property
    def lambda_1se(self) -> float:
        return float(self.path.penalties[self.index_1se])

    def index(self, rule: str) -> int:
        """Position of the lambda chosen by ``rule`` ("min" or "1se")."""
        if rule not in ("min", "1se"):
            raise ValueError(f"lambda_rule must be 'min' or '1se', got {rule!r}")
        return self.index_min if rule == "min" else self.index_1se


def make_folds(n: int, n_folds: int, seed: SeedLike = 0) -> np.ndarray:
    """Balanced random fold labels ``0..n_folds-1`` for ``n`` observations."""
    if not 2 <= n_folds <= n:
        raise ValueError(f"n_folds must be in [2, n={n}], got {n_folds}")
    rng = make_generator(seed, "numpy")
    return rng.permutation(np.arange(n) % n_folds)


def _deviances(fam: Family, eta: np.ndarray) -> np.ndarray:
    """Deviance of each path point's held-out linear predictor ``eta`` ``(L, n[, k])``."""
    E = eta if eta.ndim == 3 else eta[..., None]
    return 2.0 * (np.sum(fam.w * fam.loss(E + fam.o), axis=(1, 2)) - fam.saturated)


@renamed_kwargs(**PATH_RENAMES)
def cv_path(
    X: np.ndarray,
    y: np.ndarray,
    *,
    penalties: np.ndarray | None = None,
    n_penalties: int = 100,
    penalty_min_ratio: float | None = None,
    n_folds: int = 10,
    foldid: np.ndarray | None = None,
    seed: SeedLike = 0,
    weights: np.ndarray | None = None,
    offset: np.ndarray | None = None,
    **path_kwargs,
) -> CVPathResult:
    """Fit :func:`~mrsolve.solvers.lasso.path.fit_path` on all data and on K folds.

    Args:
        X, y, weights, offset, penalties, n_penalties, penalty_min_ratio: as for
            ``fit_path`` (the folds are fitted on the full-data penalties).
        n_folds: number of folds K (ignored when ``foldid`` is given).
        foldid: fold label of each observation ``(n,)``.
        seed: seed or Generator of the random fold assignment.
        **path_kwargs: the remaining ``fit_path`` arguments (family, l1_ratio, ...).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n = X.shape[0]
    family = path_kwargs.get("family", "gaussian")
    if family == "multinomial" and path_kwargs.get("n_classes") is None:
        path_kwargs["n_classes"] = int(np.max(y)) + 1
    full = fit_path(
        X,
        y,
        weights=weights,
        offset=offset,
        penalties=penalties,
        n_penalties=n_penalties,
        penalty_min_ratio=penalty_min_ratio,
        **path_kwargs,
    )
    path_kwargs = {**path_kwargs, "penalties": full.penalties}
    if foldid is None:
        foldid = make_folds(n, n_folds, seed)
    foldid = np.asarray(foldid)
    if foldid.shape != (n,):
        raise ValueError(f"foldid must have shape ({n},), got {foldid.shape}")
    folds = np.unique(foldid)
    if len(folds) < 2:
        raise ValueError(f"foldid must hold at least 2 folds, got {len(folds)}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    oof = np.zeros((len(full.penalties), n, *full.intercept.shape[1:]))
    errs = np.empty((len(folds), len(full.penalties)))
    fold_w = np.empty(len(folds))
    for f, fold in enumerate(folds):
        test = foldid == fold
        train = ~test
        sub = lambda a, rows: None if a is None else np.asarray(a)[rows]  # noqa: E731
        fit = fit_path(
            X[train],
            y[train],
            weights=sub(weights, train),
            offset=sub(offset, train),
            **path_kwargs,
        )
        eta = fit.linear_predictor(X[test])
        if len(eta) < len(full.penalties):  # the fold's path stopped early: hold its last fit
            eta = np.concatenate([eta, np.repeat(eta[-1:], len(full.penalties) - len(eta), 0)])
        oof[:, test] = eta
        df = family_datafit(
            family, y[test], w[test], sub(offset, test), n_classes=path_kwargs.get("n_classes")
        )
        errs[f] = _deviances(numpy_family(df, family), eta)
        fold_w[f] = w[test].sum()
    mean = fold_w @ errs / fold_w.sum()
    var = fold_w @ (errs - mean) ** 2 / fold_w.sum()
    se = np.sqrt(var / (len(folds) - 1))
    i_min = int(np.argmin(mean))
    i_1se = int(np.flatnonzero(mean <= mean[i_min] + se[i_min])[0])
    return CVPathResult(
        path=full,
        cv_mean=mean,
        cv_se=se,
        index_min=i_min,
        index_1se=i_1se,
        oof_eta=oof,
        foldid=foldid,
    )


__getattr__ = deprecated_names(__name__, {"CVPath": CVPathResult})
