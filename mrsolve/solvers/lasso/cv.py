"""K-fold cross-validation of a regularization path (glmnet's ``cv.glmnet``).

The folds are fitted on the full-data penalty (lambda) sequence; the held-out error is the
datafit's deviance (mean squared error for gaussian), weighted by the observation
weights, averaged over folds with fold weights; its standard error is the weighted
spread over folds divided by sqrt(K - 1). ``lambda_min`` minimizes the mean error and
``lambda_1se`` is the largest lambda whose error is within one standard error of it.
The out-of-fold ("pre-validated") linear predictors are kept for the pretrained lasso.

Warm start across folds (gaussian, dense, where the solver works on the full Gram): the
Gram of the whole design is formed once, and each fold's as it minus the held-out rows'
(``n / K`` rows instead of ``n (K - 1) / K``, and no centered copy of the fold's ``X``).
Each fold's path itself starts at the top penalty and is warm-started along the path:
starting a fold's solve from the full-data solution at the same penalty was measured
slower (docs/lasso_design.md).
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
from mrsolve.solvers.lasso.solver import uses_full_gram
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


class _FoldGrams:
    """The weighted centered Gram of all rows and, by downdating, of each fold's training
    rows (the ``gram`` argument of ``fit_path``).

    Rows are centered at the full-data mean ``mu`` first: a training set's mean differs
    from ``mu`` by ``d``, and its Gram is ``(A - A_test) / W_train - d d^T``, with no
    cancellation between large uncentered moments.
    """

    def __init__(self, X: np.ndarray, w: np.ndarray, center: bool):
        self.X, self.w, self.center = X, w, center
        self.wsum = w.sum()
        self.mu = w @ X / self.wsum if center else np.zeros(X.shape[1])
        self.A, _ = self._moments(X, w)

    def _moments(self, X: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(X - mu)^T diag(w) (X - mu)`` (one symmetric product) and ``w^T (X - mu)``."""
        Xc = X - self.mu
        s = w @ Xc
        if np.any(w != 1.0):
            Xc *= np.sqrt(w)[:, None]
        return Xc.T @ Xc, s

    def full(self) -> np.ndarray:
        return self.A / self.wsum

    def train(self, test: np.ndarray) -> np.ndarray:
        """Gram of the rows outside the boolean mask ``test``."""
        wt = self.w[test]
        w_train = self.wsum - wt.sum()
        At, st = self._moments(self.X[test], wt)
        G = np.subtract(self.A, At, out=At)
        G /= w_train
        if self.center:
            d = st / w_train  # mu - train mean
            G -= np.outer(d, d)
        return G


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
    warm_start: bool = True,
    **path_kwargs,
) -> CVPathResult:
    """Fit :func:`~mrsolve.solvers.lasso.path.fit_path` on all data and on K folds.

    Args:
        X, y, weights, offset, penalties, n_penalties, penalty_min_ratio: as for
            ``fit_path`` (the folds are fitted on the full-data penalties).
        n_folds: number of folds K (ignored when ``foldid`` is given).
        foldid: fold label of each observation ``(n,)``.
        seed: seed or Generator of the random fold assignment.
        warm_start: form each fold's Gram from the full one (module docstring); the
            fits are the same up to rounding. False forms every fold's from its rows.
        **path_kwargs: the remaining ``fit_path`` arguments (family, l1_ratio, ...).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y)
    n = X.shape[0]
    family = path_kwargs.get("family", "gaussian")
    if family == "multinomial" and path_kwargs.get("n_classes") is None:
        path_kwargs["n_classes"] = int(np.max(y)) + 1
    if foldid is None:
        foldid = make_folds(n, n_folds, seed)
    foldid = np.asarray(foldid)
    if foldid.shape != (n,):
        raise ValueError(f"foldid must have shape ({n},), got {foldid.shape}")
    folds, fold_sizes = np.unique(foldid, return_counts=True)
    if len(folds) < 2:
        raise ValueError(f"foldid must hold at least 2 folds, got {len(folds)}")
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    family_datafit(family, y, weights, offset, path_kwargs.get("n_classes"))  # validates
    grams = None
    n_train = n - fold_sizes.max()
    if warm_start and family == "gaussian" and uses_full_gram(n_train, X.shape[1], False):
        grams = _FoldGrams(X, w, path_kwargs.get("fit_intercept", True))
    full = fit_path(
        X,
        y,
        weights=weights,
        offset=offset,
        penalties=penalties,
        n_penalties=n_penalties,
        penalty_min_ratio=penalty_min_ratio,
        gram=None if grams is None else grams.full(),
        **path_kwargs,
    )
    path_kwargs = {**path_kwargs, "penalties": full.penalties}
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
            gram=None if grams is None else grams.train(test),
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
