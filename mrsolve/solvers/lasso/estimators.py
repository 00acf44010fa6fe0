"""scikit-learn style estimators over :func:`fit_path` and :func:`cv_path`.

``LassoPath`` fits a whole regularization path and predicts at its smallest penalty;
``LassoCV`` picks the penalty (glmnet's lambda) by K-fold cross-validation ("min" or "1se"). Both handle the
gaussian (1-D or multi-task 2-D ``y``), binomial, multinomial and poisson families,
observation weights (``sample_weight``), offsets (``offset=`` in fit and predict),
penalty factors, the elastic net (``l1_ratio``) and the group lasso
(``feature_groups``). Classification families encode labels into ``classes_`` and
predict labels; ``predict_proba`` gives probabilities, ``decision_function`` the
linear predictor. Torch inputs give torch outputs.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from sklearn.base import BaseEstimator
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils import ClassifierTags, RegressorTags, check_array
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mrsolve.solvers.datafit import FAMILIES
from mrsolve.solvers.lasso.cv import cv_path
from mrsolve.solvers.lasso.path import DEFAULT_TOL, PATH_RENAMES, fit_path
from mrsolve.solvers.validation import RenamedAttributes, check_choice, renamed_kwargs

CLASSIFICATION = ("binomial", "multinomial")


def as_numpy(a) -> np.ndarray | None:
    """Torch tensors and array-likes to numpy (None passes through)."""
    if a is None:
        return None
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().numpy()
    return a if hasattr(a, "toarray") else np.asarray(a)  # sparse: let sklearn reject it


def like_input(out: np.ndarray, ref):
    """Return ``out`` as a torch tensor when ``ref`` was one."""
    return torch.from_numpy(np.ascontiguousarray(out)) if isinstance(ref, torch.Tensor) else out


def sample_weight_array(sample_weight, n: int) -> np.ndarray:
    """Observation weights as a float64 ``(n,)`` array (a scalar is broadcast)."""
    sw = as_numpy(sample_weight)
    if np.ndim(sw) == 0:
        return np.full(n, float(sw))
    sw = check_array(sw, ensure_2d=False, dtype=np.float64, input_name="sample_weight")
    if sw.shape != (n,):
        raise ValueError(f"sample_weight must have shape ({n},), got {sw.shape}")
    if not np.any(sw):
        raise ValueError("Sample weights must contain at least one non-zero number, got all 0")
    return sw


def _is_clf(est) -> bool:
    return est.family in CLASSIFICATION


class _GLMPathBase(RenamedAttributes, BaseEstimator):
    _renamed: ClassVar[dict[str, str]] = {**PATH_RENAMES, "lambdas_": "penalties_"}

    @renamed_kwargs(**PATH_RENAMES)
    def __init__(
        self,
        family: str = "gaussian",
        l1_ratio: float = 1.0,
        n_penalties: int = 100,
        penalty_min_ratio: float | None = None,
        penalties=None,
        penalty_factor=None,
        feature_groups=None,
        fit_intercept: bool = True,
        standardize: bool = False,
        tol: float = DEFAULT_TOL,
    ) -> None:
        self.family = family
        self.l1_ratio = l1_ratio
        self.n_penalties = n_penalties
        self.penalty_min_ratio = penalty_min_ratio
        self.penalties = penalties
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
        multi = self.family == "gaussian"
        X, y = validate_data(
            self,
            as_numpy(X),
            as_numpy(y),
            multi_output=multi,
            y_numeric=not _is_clf(self),
            dtype=np.float64,
        )
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
        sw = None if sample_weight is None else sample_weight_array(sample_weight, X.shape[0])
        off = self._check_offset(offset, X.shape[0])
        kwargs = dict(
            family=self.family,
            l1_ratio=self.l1_ratio,
            n_penalties=self.n_penalties,
            penalty_min_ratio=self.penalty_min_ratio,
            penalties=self.penalties,
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
        off = as_numpy(offset)
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
        Xn = validate_data(self, as_numpy(X), reset=False, dtype=np.float64)
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
        eta = as_numpy(self.predict_linear(X, offset))
        if self.family == "binomial":
            p1 = 1 / (1 + np.exp(-eta))
            prob = np.stack([1 - p1, p1], axis=1)
        else:
            z = np.exp(eta - eta.max(1, keepdims=True))
            prob = z / z.sum(1, keepdims=True)
        return like_input(prob, X)

    def predict(self, X, offset=None):
        """Mean response (gaussian, poisson) or the most probable class label."""
        eta = as_numpy(self.predict_linear(X, offset))
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
        pred = as_numpy(self.predict(X))
        metric = accuracy_score if _is_clf(self) else r2_score
        return metric(as_numpy(y), pred, sample_weight=as_numpy(sample_weight))


class LassoPath(_GLMPathBase):
    """Regularization path of a GLM lasso / elastic net / group lasso.

    Parameters are those of :func:`mrsolve.solvers.lasso.path.fit_path`. After ``fit``:
    ``penalties_`` ``(L,)``, ``coef_path_`` ``(L, p[, k])``, ``intercept_path_``, and
    ``coef_`` / ``intercept_`` at the smallest penalty (used by ``predict``).
    """

    def fit(self, X, y, sample_weight=None, offset=None):
        X, y, sw, off, kwargs = self._prepare(X, y, sample_weight, offset)
        path = fit_path(X, y, weights=sw, offset=off, **kwargs)
        self.path_ = path
        self.penalties_ = path.penalties
        self.coef_path_ = path.coef
        self.intercept_path_ = path.intercept
        self._set_coef(path, -1)
        return self


class LassoCV(_GLMPathBase):
    """A GLM lasso path with the penalty (glmnet's lambda) chosen by K-fold cross-validation.

    Extra parameters: ``n_folds``, ``lambda_rule`` ("min": lowest CV deviance, "1se":
    the largest penalty within one standard error of it) and ``random_state`` (int,
    numpy Generator or None) for the folds. After ``fit``: ``lambda_min_``,
    ``lambda_1se_``, ``lambda_`` (the chosen one), ``cv_mean_``, ``cv_se_`` ``(L,)``,
    ``penalties_``, ``coef_path_``, ``coef_``, ``intercept_``, ``oof_decision_``
    (out-of-fold linear predictor at ``lambda_``, no offset) and ``cv_`` (the full
    :class:`~mrsolve.solvers.lasso.cv.CVPathResult`).
    """

    _renamed: ClassVar[dict[str, str]] = {**_GLMPathBase._renamed, "seed": "random_state"}

    @renamed_kwargs(**PATH_RENAMES, seed="random_state")
    def __init__(
        self,
        family: str = "gaussian",
        l1_ratio: float = 1.0,
        n_penalties: int = 100,
        penalty_min_ratio: float | None = None,
        penalties=None,
        penalty_factor=None,
        feature_groups=None,
        fit_intercept: bool = True,
        standardize: bool = False,
        tol: float = DEFAULT_TOL,
        n_folds: int = 10,
        lambda_rule: str = "min",
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        super().__init__(
            family=family,
            l1_ratio=l1_ratio,
            n_penalties=n_penalties,
            penalty_min_ratio=penalty_min_ratio,
            penalties=penalties,
            penalty_factor=penalty_factor,
            feature_groups=feature_groups,
            fit_intercept=fit_intercept,
            standardize=standardize,
            tol=tol,
        )
        self.n_folds = n_folds
        self.lambda_rule = lambda_rule
        self.random_state = random_state

    def fit(self, X, y, sample_weight=None, offset=None, foldid=None):
        check_choice("lambda_rule", self.lambda_rule, ("min", "1se"))
        X, y, sw, off, kwargs = self._prepare(X, y, sample_weight, offset)
        if X.shape[0] < 2:
            raise ValueError(f"n_samples={X.shape[0]}: cross-validation needs at least 2 samples")
        n_folds = min(self.n_folds, X.shape[0])
        cv = cv_path(
            X,
            y,
            n_folds=n_folds,
            foldid=as_numpy(foldid),
            seed=self.random_state,
            weights=sw,
            offset=off,
            **kwargs,
        )
        self.cv_ = cv
        self.penalties_ = cv.path.penalties
        self.coef_path_ = cv.path.coef
        self.cv_mean_, self.cv_se_ = cv.cv_mean, cv.cv_se
        self.lambda_min_, self.lambda_1se_ = cv.lambda_min, cv.lambda_1se
        index = cv.index(self.lambda_rule)
        self.lambda_ = float(cv.path.penalties[index])
        self.oof_decision_ = cv.oof_eta[index]
        self._set_coef(cv.path, index)
        return self
