"""Further uses of pretraining from the pretrained lasso paper (arXiv:2401.12911).

- :class:`SequentialPretrainedLasso`: targets observed in sequence (time series); the
  model of step t takes ``(1 - pretrain_alpha)`` times the out-of-fold linear predictor of step
  t-1 as offset and penalty factors from step t-1's support.
- :class:`PretrainedRLearner`: conditional average treatment effect by an R-learner;
  regress ``y - m(x)`` on ``(w - e(x)) * [1, x]`` (out-of-fold ``m`` and ``e``) with
  penalty factors 1 on the support of ``m`` and ``1 / pretrain_alpha`` elsewhere, no offset.
- :class:`StumpFeatures`: the split indicators of a boosted depth-1 tree ensemble, as
  lasso features (fit a :class:`PretrainedLasso` on them).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.utils.validation import check_is_fitted, validate_data

from mrsolve.solvers.lasso.cv import cv_path
from mrsolve.solvers.lasso.estimators import as_numpy, like_input
from mrsolve.solvers.lasso.path import DEFAULT_TOL
from mrsolve.solvers.lasso.pretrained import PRETRAIN_RENAMES, stage2_penalty_factor
from mrsolve.solvers.validation import RenamedAttributes, check_choice, renamed_kwargs


class _Pretrained(RenamedAttributes, BaseEstimator):
    """Shared by the estimators below: the deprecated names and the CV path call."""

    _renamed: ClassVar[dict[str, str]] = PRETRAIN_RENAMES

    def _cv(self, X, y, **kwargs):
        """:func:`cv_path` with this estimator's folds and path settings."""
        return cv_path(
            X,
            y,
            n_folds=min(self.n_folds, X.shape[0]),
            seed=self.random_state,
            n_penalties=self.n_penalties,
            tol=self.tol,
            **kwargs,
        )


class SequentialPretrainedLasso(_Pretrained):
    """Lasso models for targets ``Y[:, 0], Y[:, 1], ...`` each pretrained on the previous.

    Args:
        pretrain_alpha: in [0, 1]; 1 gives independent lassos per step.
        family: "gaussian", "binomial" or "poisson" (the same for every step).
        lambda_rule, n_folds, n_penalties, tol, random_state: as for :class:`PretrainedLasso`
            (the old keywords ``alpha``, ``n_lambdas``, ``seed`` are deprecated).

    Attributes: ``coef_`` ``(T, p)`` and ``intercept_`` ``(T,)`` of the step models,
    ``supports_`` ``(T, p)``.
    """

    @renamed_kwargs(**PRETRAIN_RENAMES)
    def __init__(
        self,
        pretrain_alpha: float = 0.5,
        family: str = "gaussian",
        lambda_rule: str = "min",
        n_folds: int = 10,
        n_penalties: int = 100,
        tol: float = DEFAULT_TOL,
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        self.pretrain_alpha = pretrain_alpha
        self.family = family
        self.lambda_rule = lambda_rule
        self.n_folds = n_folds
        self.n_penalties = n_penalties
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, Y):
        """Fit one model per column of ``Y`` ``(n, T)``, in order."""
        check_choice("family", self.family, ("gaussian", "binomial", "poisson"))
        if not 0 <= self.pretrain_alpha <= 1:
            raise ValueError(f"pretrain_alpha must be in [0, 1], got {self.pretrain_alpha}")
        X, Y = validate_data(self, as_numpy(X), as_numpy(Y), multi_output=True, dtype=np.float64)
        if Y.ndim != 2:
            raise ValueError(f"Y must have shape (n, T) (one column per step), got {Y.shape}")
        offset, pf = None, None
        coefs, icpts, supports = [], [], []
        for t in range(Y.shape[1]):
            cv = self._cv(X, Y[:, t], family=self.family, offset=offset, penalty_factor=pf)
            i = cv.index(self.lambda_rule)
            coefs.append(cv.path.coef[i])
            icpts.append(cv.path.intercept[i])
            supports.append(cv.path.coef[i] != 0)
            oof = cv.oof_eta[i] + (0.0 if offset is None else offset)
            offset = (1 - self.pretrain_alpha) * oof
            pf = stage2_penalty_factor(supports[-1], self.pretrain_alpha)
        self.coef_, self.intercept_ = np.array(coefs), np.array(icpts)
        self.supports_ = np.array(supports)
        return self

    def predict_linear(self, X):
        """Linear predictors of every step ``(n, T)`` (each includes its pretraining)."""
        check_is_fitted(self, "coef_")
        Xn = validate_data(self, as_numpy(X), reset=False, dtype=np.float64)
        etas, prev = [], 0.0
        for b, b0 in zip(self.coef_, self.intercept_, strict=True):
            prev = (1 - self.pretrain_alpha) * prev + Xn @ b + b0 if etas else Xn @ b + b0
            etas.append(prev)
        return like_input(np.stack(etas, axis=1), X)

    def predict(self, X):
        """Mean responses of every step ``(n, T)``."""
        eta = as_numpy(self.predict_linear(X))
        mean = {"gaussian": eta, "binomial": 1 / (1 + np.exp(-eta)), "poisson": np.exp(eta)}
        return like_input(mean[self.family], X)


class PretrainedRLearner(_Pretrained):
    """Conditional average treatment effect ``tau(x) = tau0 + x @ beta`` by an R-learner.

    Args:
        pretrain_alpha: in [0, 1]; penalty factor ``1 / pretrain_alpha`` off the support of
            the outcome model.
        propensity: known treatment probability (float) or None to fit a binomial lasso.
        lambda_rule, n_folds, n_penalties, tol, random_state: as for
            :class:`PretrainedLasso` (``alpha``, ``n_lambdas``, ``seed`` are deprecated).

    Attributes: ``tau_intercept_``, ``tau_coef_`` ``(p,)``, ``outcome_support_`` ``(p,)``.
    """

    @renamed_kwargs(**PRETRAIN_RENAMES)
    def __init__(
        self,
        pretrain_alpha: float = 0.5,
        propensity: float | None = None,
        lambda_rule: str = "min",
        n_folds: int = 10,
        n_penalties: int = 100,
        tol: float = DEFAULT_TOL,
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        self.pretrain_alpha = pretrain_alpha
        self.propensity = propensity
        self.lambda_rule = lambda_rule
        self.n_folds = n_folds
        self.n_penalties = n_penalties
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y, treatment):
        """``treatment`` ``(n,)`` in {0, 1}."""
        if not 0 <= self.pretrain_alpha <= 1:
            raise ValueError(f"pretrain_alpha must be in [0, 1], got {self.pretrain_alpha}")
        X, y = validate_data(self, as_numpy(X), as_numpy(y), dtype=np.float64)
        w = np.asarray(as_numpy(treatment), dtype=np.float64)
        if w.shape != y.shape or not np.all((w == 0) | (w == 1)):
            raise ValueError(f"treatment must be 0/1 of shape {y.shape}, got shape {w.shape}")
        m = self._cv(X, y)
        i = m.index(self.lambda_rule)
        m_oof = m.oof_eta[i]
        self.outcome_support_ = m.path.coef[i] != 0
        if self.propensity is None:
            e = self._cv(X, w, family="binomial")
            e_oof = 1 / (1 + np.exp(-e.oof_eta[e.index(self.lambda_rule)]))
        else:
            e_oof = np.full_like(y, float(self.propensity))
        Z = (w - e_oof)[:, None] * np.hstack([np.ones((len(y), 1)), X])
        pf = np.r_[0.0, stage2_penalty_factor(self.outcome_support_, self.pretrain_alpha)]
        tau = self._cv(Z, y - m_oof, penalty_factor=pf, fit_intercept=False)
        coef = tau.path.coef[tau.index(self.lambda_rule)]
        self.tau_intercept_, self.tau_coef_ = float(coef[0]), coef[1:]
        return self

    def predict(self, X):
        """Estimated treatment effect ``tau(x)`` ``(n,)``."""
        check_is_fitted(self, "tau_coef_")
        Xn = validate_data(self, as_numpy(X), reset=False, dtype=np.float64)
        return like_input(Xn @ self.tau_coef_ + self.tau_intercept_, X)


class StumpFeatures(RenamedAttributes, TransformerMixin, BaseEstimator):
    """Indicator features ``1[x_j <= threshold]`` of the stumps of a boosted ensemble.

    Args:
        n_estimators, learning_rate: of the gradient boosting (depth-1 trees).
        task: "regression" or "classification" (the boosting loss).
        random_state: random state of the boosting (``seed`` is deprecated).

    Attributes: ``features_`` and ``thresholds_`` ``(n_estimators,)``.
    """

    _renamed: ClassVar[dict[str, str]] = {"seed": "random_state"}

    @renamed_kwargs(seed="random_state")
    def __init__(
        self,
        n_estimators: int = 100,
        learning_rate: float = 0.1,
        task: str = "regression",
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.task = task
        self.random_state = random_state

    def fit(self, X, y):
        check_choice("task", self.task, ("regression", "classification"))
        X, y = validate_data(self, as_numpy(X), as_numpy(y), dtype=np.float64)
        cls = GradientBoostingRegressor if self.task == "regression" else GradientBoostingClassifier
        gb = cls(
            n_estimators=self.n_estimators,
            learning_rate=self.learning_rate,
            max_depth=1,
            random_state=self.random_state,
        ).fit(X, y)
        trees = [est.tree_ for est in gb.estimators_[:, 0]]
        splits = [t for t in trees if t.node_count > 1]
        self.features_ = np.array([t.feature[0] for t in splits], dtype=int)
        self.thresholds_ = np.array([t.threshold[0] for t in splits])
        return self

    def transform(self, X):
        """``(n, n_stumps)`` 0/1 matrix."""
        check_is_fitted(self, "features_")
        Xn = validate_data(self, as_numpy(X), reset=False, dtype=np.float64)
        return (Xn[:, self.features_] <= self.thresholds_).astype(np.float64)
