"""scikit-learn style estimators over :func:`fit_path` and :func:`cv_path`.

``LassoPath`` fits a whole regularization path and predicts at its smallest lambda;
``LassoCV`` picks lambda by K-fold cross-validation ("min" or "1se"). Both handle the
gaussian (1-D or multi-task 2-D ``y``), binomial, multinomial and poisson families,
observation weights (``sample_weight``), offsets (``offset=`` in fit and predict),
penalty factors, the elastic net (``l1_ratio``) and the group lasso
(``feature_groups``). Classification families encode labels into ``classes_`` and
predict labels; ``predict_proba`` gives probabilities, ``decision_function`` the
linear predictor. Torch inputs give torch outputs.
"""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import ClassifierTags, RegressorTags
from sklearn.utils._available_if import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from mrsolve.solvers.datafit import FAMILIES
from mrsolve.solvers.lasso.cv import cv_path
from mrsolve.solvers.lasso.path import fit_path
from mrsolve.solvers.validation import check_choice

CLASSIFICATION = ("binomial", "multinomial")


def as_numpy(a, name: str) -> np.ndarray | None:
    """Torch tensors and array-likes to numpy (None passes through)."""
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a if hasattr(a, "toarray") else np.asarray(a)  # sparse: let sklearn reject it


def like_input(out: np.ndarray, ref):
    """Return ``out`` as a torch tensor when ``ref`` was one."""
    return torch.from_numpy(np.ascontiguousarray(out)) if isinstance(ref, torch.Tensor) else out


def _is_clf(est) -> bool:
    return est.family in CLASSIFICATION


class _GLMPathBase(BaseEstimator):
    def __init__(
        self,
        family: str = "gaussian",
        l1_ratio: float = 1.0,
        n_lambdas: int = 100,
        lambda_min_ratio: float | None = None,
        lambdas=None,
        penalty_factor=None,
        feature_groups=None,
        fit_intercept: bool = True,
        standardize: bool = False,
        tol: float = 1e-14,
    ) -> None:
        self.family = family
        self.l1_ratio = l1_ratio
        self.n_lambdas = n_lambdas
        self.lambda_min_ratio = lambda_min_ratio
        self.lambdas = lambdas
        self.penalty_factor = penalty_factor
        self.feature_groups = feature_groups
        self.fit_intercept = fit_intercept
        self.standardize = standardize
        self.tol = tol

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        if self.family in CLASSIFICATION:
            tags.estimator_type = "classifier"
            tags.classifier_tags = ClassifierTags(multi_class=self.family == "multinomial")
            tags.regressor_tags = None
        else:
            tags.estimator_type = "regressor"
            tags.regressor_tags = RegressorTags()
            tags.target_tags.multi_output = self.family == "gaussian"
            tags.target_tags.positive_only = self.family == "poisson"
        tags.target_tags.required = True
        return tags

    # -- fitting helpers -----------------------------------------------------------
    def _prepare(self, X, y, sample_weight, offset):
        check_choice("family", self.family, FAMILIES)
        X = as_numpy(X, "X")
        y = as_numpy(y, "y")
        multi = self.family == "gaussian"
        X, y = validate_data(self, X, y, multi_output=multi, y_numeric=not _is_clf(self),
                             dtype=np.float64)  # fmt: skip
        if _is_clf(self):
            check_classification_targets(y)
            self.classes_, y = np.unique(y, return_inverse=True)
            if len(self.classes_) < 2:
                raise ValueError("y must hold at least 2 classes, got 1 class")
            if self.family == "binomial" and len(self.classes_) != 2:
                raise ValueError(
                    "Only binary classification is supported. family='binomial' needs 2 "
                    f"classes in y, got {len(self.classes_)}; use family='multinomial'"
                )
        elif self.family == "poisson" and np.any(y < 0):
            raise ValueError("y must be >= 0 for family='poisson', got negative values")
        sw = None if sample_weight is None else _check_sample_weight(as_numpy(sample_weight,
                                                                              "w"), X)  # fmt: skip
        off = self._check_offset(offset, X.shape[0])
        kwargs = dict(
            family=self.family,
            l1_ratio=self.l1_ratio,
            n_lambdas=self.n_lambdas,
            lambda_min_ratio=self.lambda_min_ratio,
            lambdas=self.lambdas,
            penalty_factor=self.penalty_factor,
            feature_groups=self.feature_groups,
            fit_intercept=self.fit_intercept,
            standardize=self.standardize,
            tol=self.tol,
        )
        if self.family == "multinomial":
            kwargs["n_classes"] = len(self.classes_)
        return X, y, sw, off, kwargs

    @staticmethod
    def _check_offset(offset, n):
        off = as_numpy(offset, "offset")
        if off is None:
            return None
        off = off.astype(np.float64)
        if off.shape[0] != n or off.ndim > 2:
            raise ValueError(f"offset must have {n} rows (one per sample), got {off.shape}")
        if not np.all(np.isfinite(off)):
            raise ValueError("offset must be finite, got NaN or infinite values")
        return off

    def _set_coef(self, path, index):
        self.coef_ = path.coef[index]
        self.intercept_ = path.intercept[index]

    # -- prediction ------------------------------------------------------------------
    def predict_linear(self, X, offset=None):
        """Linear predictor ``X @ coef_ + intercept_ (+ offset)``: ``(n,)`` or ``(n, k)``."""
        check_is_fitted(self, "coef_")
        Xn = validate_data(self, as_numpy(X, "X"), reset=False, dtype=np.float64)
        eta = Xn @ self.coef_ + self.intercept_
        off = self._check_offset(offset, Xn.shape[0])
        if off is not None:
            eta = eta + (off[:, None] if (eta.ndim == 2 and off.ndim == 1) else off)
        return like_input(eta, X)

    @available_if(_is_clf)
    def decision_function(self, X, offset=None):
        """Linear predictor (classification families; see :meth:`predict_linear`); for two
        classes the log-odds of the second, ``(n,)``."""
        eta = self.predict_linear(X, offset)
        if eta.ndim == 2 and eta.shape[1] == 2:
            eta = eta[:, 1] - eta[:, 0]
        return eta

    @available_if(_is_clf)
    def predict_proba(self, X, offset=None):
        """Class probabilities ``(n, n_classes)`` (classification families)."""
        eta = as_numpy(self.predict_linear(X, offset), "eta")
        if self.family == "binomial":
            p1 = 1 / (1 + np.exp(-eta))
            prob = np.stack([1 - p1, p1], axis=1)
        else:
            z = np.exp(eta - eta.max(1, keepdims=True))
            prob = z / z.sum(1, keepdims=True)
        return like_input(prob, X)

    def predict(self, X, offset=None):
        """Mean response (gaussian, poisson) or the most probable class label."""
        eta = as_numpy(self.predict_linear(X, offset), "eta")
        if self.family == "gaussian":
            out = eta
        elif self.family == "poisson":
            out = np.exp(eta)
        elif self.family == "binomial":
            out = self.classes_[(eta > 0).astype(int)]
        else:
            out = self.classes_[np.argmax(eta, axis=1)]
        return like_input(out, X) if out.dtype.kind in "fiu" else out

    def score(self, X, y, sample_weight=None):
        """Accuracy (classification) or R^2 (regression) of :meth:`predict`."""
        pred = as_numpy(self.predict(X), "pred")
        metric = accuracy_score if _is_clf(self) else r2_score
        return metric(as_numpy(y, "y"), pred, sample_weight=as_numpy(sample_weight, "w"))


class LassoPath(_GLMPathBase):
    """Regularization path of a GLM lasso / elastic net / group lasso.

    Parameters are those of :func:`mrsolve.solvers.lasso.path.fit_path`. After ``fit``:
    ``lambdas_`` ``(L,)``, ``coef_path_`` ``(L, p[, k])``, ``intercept_path_``, and
    ``coef_`` / ``intercept_`` at the smallest lambda (used by ``predict``).
    """

    def fit(self, X, y, sample_weight=None, offset=None):
        X, y, sw, off, kwargs = self._prepare(X, y, sample_weight, offset)
        path = fit_path(X, y, weights=sw, offset=off, **kwargs)
        self.path_ = path
        self.lambdas_ = path.lambdas
        self.coef_path_ = path.coef
        self.intercept_path_ = path.intercept
        self._set_coef(path, -1)
        return self


class LassoCV(_GLMPathBase):
    """A GLM lasso path with lambda chosen by K-fold cross-validation.

    Extra parameters: ``n_folds``, ``lambda_rule`` ("min": lowest CV deviance, "1se":
    the largest lambda within one standard error of it) and ``seed`` for the folds.
    After ``fit``: ``lambda_min_``, ``lambda_1se_``, ``lambda_`` (the chosen one),
    ``cv_mean_``, ``cv_se_`` ``(L,)``, ``lambdas_``, ``coef_path_``, ``coef_``,
    ``intercept_``, ``oof_decision_`` (out-of-fold linear predictor at ``lambda_``, no
    offset) and ``cv_`` (the full :class:`~mrsolve.solvers.lasso.cv.CVPath`).
    """

    def __init__(
        self,
        family: str = "gaussian",
        l1_ratio: float = 1.0,
        n_lambdas: int = 100,
        lambda_min_ratio: float | None = None,
        lambdas=None,
        penalty_factor=None,
        feature_groups=None,
        fit_intercept: bool = True,
        standardize: bool = False,
        tol: float = 1e-14,
        n_folds: int = 10,
        lambda_rule: str = "min",
        seed: int | None = 0,
    ) -> None:
        super().__init__(family, l1_ratio, n_lambdas, lambda_min_ratio, lambdas,
                         penalty_factor, feature_groups, fit_intercept, standardize, tol)  # fmt: skip
        self.n_folds = n_folds
        self.lambda_rule = lambda_rule
        self.seed = seed

    def fit(self, X, y, sample_weight=None, offset=None, foldid=None):
        check_choice("lambda_rule", self.lambda_rule, ("min", "1se"))
        X, y, sw, off, kwargs = self._prepare(X, y, sample_weight, offset)
        if X.shape[0] < 2:
            raise ValueError(f"n_samples={X.shape[0]}: cross-validation needs at least 2 samples")
        n_folds = min(self.n_folds, X.shape[0])
        cv = cv_path(X, y, n_folds=n_folds, foldid=as_numpy(foldid, "foldid"),
                     seed=self.seed, weights=sw, offset=off, **kwargs)  # fmt: skip
        self.cv_ = cv
        self.lambdas_ = cv.path.lambdas
        self.coef_path_ = cv.path.coef
        self.cv_mean_, self.cv_se_ = cv.cv_mean, cv.cv_se
        self.lambda_min_, self.lambda_1se_ = cv.lambda_min, cv.lambda_1se
        index = cv.index(self.lambda_rule)
        self.lambda_ = float(cv.path.lambdas[index])
        self.oof_decision_ = cv.oof_eta[index]
        self._set_coef(cv.path, index)
        return self
