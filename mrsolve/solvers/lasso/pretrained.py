"""The pretrained lasso (Craig, Pilanci, Le Menestrel, Narasimhan, Rivas, Dehghannasiri,
Salzman, Taylor, Tibshirani; arXiv:2401.12911).

Stage 1 fits an overall lasso on all the data (input groups: with the K-1 group
indicators unpenalized) and keeps its out-of-fold linear predictor ``eta_oof`` and its
support ``S``. Stage 2 fits one lasso per task with offset ``(1 - alpha) * eta_oof`` and
penalty factors 1 on ``S`` and ``1 / alpha`` elsewhere; it predicts
``(1 - alpha) * eta_overall(x) + eta_task(x)``. ``alpha = 1`` gives separate per-task
lassos; ``alpha = 0`` refits the overall support with the overall fit as offset. The
paper's ``alpha`` is the argument ``pretrain_alpha`` here (``alpha`` elsewhere in the
solvers is a penalty strength).

Tasks are, by the shape of the problem:

- input groups (``groups`` given; gaussian, binomial, poisson): one task per group;
- multinomial targets (family "multinomial", no groups): an overall multinomial lasso,
  ``S`` the union over classes, then one-vs-rest binomial lassos per class;
- multi-response (gaussian ``y`` of shape ``(n, r)``, no groups): an overall multi-task
  lasso, ``S`` the rows with any nonzero, then one gaussian lasso per response.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from mrsolve.solvers.datafit import FAMILIES
from mrsolve.solvers.lasso.cv import CVPathResult, cv_path, make_folds
from mrsolve.solvers.lasso.estimators import as_numpy, like_input
from mrsolve.solvers.lasso.path import DEFAULT_TOL
from mrsolve.solvers.validation import RenamedAttributes, check_choice, renamed_kwargs

DEFAULT_ALPHAS = tuple(np.round(np.linspace(0, 1, 11), 2))
ALPHA_RULES = ("overall", "mean", "per_group")
#: old keyword -> new, deprecated (the paper's alpha, the path length, the seed)
PRETRAIN_RENAMES = {"alpha": "pretrain_alpha", "n_lambdas": "n_penalties", "seed": "random_state"}


@dataclass(frozen=True)
class _Overall:
    """Stage 1: the overall model at its chosen lambda."""

    cv: CVPathResult
    index: int
    coef: np.ndarray  # (p,) or (p, k), group indicators excluded
    support: np.ndarray  # (p,) bool

    def eta(self, Xa: np.ndarray) -> np.ndarray:
        """Full-data linear predictor on the augmented design (indicators appended)."""
        return self.cv.path.linear_predictor(Xa)[self.index]


def stage2_penalty_factor(support: np.ndarray, alpha: float) -> np.ndarray:
    """1 on the overall support, ``1 / alpha`` elsewhere (``inf`` at alpha = 0)."""
    with np.errstate(divide="ignore"):
        off_support = np.inf if alpha == 0 else 1.0 / alpha
    return np.where(support, 1.0, off_support)


class PretrainedLasso(RenamedAttributes, BaseEstimator):
    """Pretrained lasso at a fixed ``pretrain_alpha`` (see the module docstring).

    Args:
        pretrain_alpha: the paper's alpha in [0, 1], mixing the overall model (0) and
            separate task models (1).
        family: "gaussian", "binomial", "poisson" (input groups, or a 2-D gaussian y for
            multi-response) or "multinomial" (targets as tasks).
        overall_lambda_rule: "1se" (default) or "min", for stage 1.
        lambda_rule: "min" (default) or "1se", for the stage-2 lassos.
        n_folds: folds of every cross-validation (one assignment, stratified by input
            group, shared by all fits: ``foldid_``).
        l1_ratio, n_penalties, standardize, tol: as for :func:`fit_path`.
        random_state: seed (int, numpy Generator or None) of the fold assignments.

    The old keywords ``alpha``, ``n_lambdas`` and ``seed`` still work for one release
    (DeprecationWarning).

    Attributes after ``fit``: ``tasks_`` (group labels, class labels or response
    indices), ``support_`` ``(p,)``, ``overall_coef_`` ``(p,)`` or ``(p, k)``,
    ``group_coef_`` ``(K, p)`` and ``group_intercept_`` ``(K,)`` of stage 2,
    ``group_cv_`` (one CVPathResult per task), ``overall_cv_``.
    """

    _renamed: ClassVar[dict[str, str]] = PRETRAIN_RENAMES

    @renamed_kwargs(**PRETRAIN_RENAMES)
    def __init__(
        self,
        pretrain_alpha: float = 0.5,
        family: str = "gaussian",
        overall_lambda_rule: str = "1se",
        lambda_rule: str = "min",
        n_folds: int = 10,
        l1_ratio: float = 1.0,
        n_penalties: int = 100,
        standardize: bool = False,
        tol: float = DEFAULT_TOL,
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        self.pretrain_alpha = pretrain_alpha
        self.family = family
        self.overall_lambda_rule = overall_lambda_rule
        self.lambda_rule = lambda_rule
        self.n_folds = n_folds
        self.l1_ratio = l1_ratio
        self.n_penalties = n_penalties
        self.standardize = standardize
        self.tol = tol
        self.random_state = random_state

    # -- validation ----------------------------------------------------------------
    def _cv(self, X, y, foldid, **kwargs) -> CVPathResult:
        """:func:`cv_path` with this estimator's path settings on the folds ``foldid``."""
        return cv_path(
            X,
            y,
            foldid=foldid,
            l1_ratio=self.l1_ratio,
            n_penalties=self.n_penalties,
            standardize=self.standardize,
            tol=self.tol,
            **kwargs,
        )

    def _validate(self, X, y, groups):
        check_choice("family", self.family, FAMILIES)
        check_choice("overall_lambda_rule", self.overall_lambda_rule, ("min", "1se"))
        check_choice("lambda_rule", self.lambda_rule, ("min", "1se"))
        X = as_numpy(X)
        y = as_numpy(y)
        if X is None or X.ndim != 2:
            raise ValueError(f"X must be a 2-D array (n, p), got {None if X is None else X.shape}")
        X = X.astype(np.float64)
        n = X.shape[0]
        if y.shape[0] != n:
            raise ValueError(f"y must have {n} rows like X, got {y.shape[0]}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X must be finite, got NaN or infinite values")
        if y.dtype.kind in "fc" and not np.all(np.isfinite(y)):
            raise ValueError("y must be finite, got NaN or infinite values")
        if groups is not None:
            groups = as_numpy(groups)
            if groups.shape != (n,):
                raise ValueError(f"groups must have shape ({n},) like X's rows, got {groups.shape}")
            if self.family == "multinomial":
                raise ValueError("groups must be None for family='multinomial' (classes are tasks)")
        elif self.family in ("binomial", "poisson") or (self.family == "gaussian" and y.ndim == 1):
            raise ValueError(
                f"groups must be given for family={self.family!r} with a 1-D y "
                "(only multinomial or 2-D gaussian targets define their own tasks)"
            )
        return X, y, groups

    # -- fitting -------------------------------------------------------------------
    def fit(self, X, y, groups=None):
        """Fit both stages at ``pretrain_alpha``; ``groups`` (n,) labels the input groups."""
        if not 0 <= self.pretrain_alpha <= 1:
            raise ValueError(f"pretrain_alpha must be in [0, 1], got {self.pretrain_alpha}")
        X, y, groups = self._validate(X, y, groups)
        self._fit_overall(X, y, groups)
        self._set_stage2(self._fit_stage2(X, self.pretrain_alpha))
        return self

    def _encode_targets(self, y, groups):
        """Family-encoded targets of stage 1 and the list of stage-2 tasks."""
        fam = self.family
        if fam in ("binomial", "multinomial"):
            self.classes_, y = np.unique(y, return_inverse=True)
            if fam == "binomial" and len(self.classes_) != 2:
                raise ValueError(
                    f"y must hold 2 classes for family='binomial', got {len(self.classes_)}"
                )
            if fam == "multinomial" and len(self.classes_) < 2:
                raise ValueError(f"y must hold at least 2 classes, got {len(self.classes_)}")
        y = y.astype(np.int64) if fam == "multinomial" else y.astype(np.float64)
        if groups is not None:
            self.tasks_ = np.unique(groups)
            if len(self.tasks_) < 2:
                raise ValueError(f"groups must hold at least 2 groups, got {len(self.tasks_)}")
            for g in self.tasks_:
                yk = y[groups == g]
                if fam == "binomial" and len(np.unique(yk)) < 2:
                    raise ValueError(
                        f"group {g!r} holds a single class of y; every group needs both "
                        "classes for family='binomial'"
                    )
                if len(yk) < 3:
                    raise ValueError(f"group {g!r} has {len(yk)} rows; each group needs >= 3")
            self.kind_ = "groups"
        elif fam == "multinomial":
            self.tasks_ = np.arange(len(self.classes_))
            self.kind_ = "classes"
        else:
            self.tasks_ = np.arange(y.shape[1])
            self.kind_ = "responses"
        return y

    def _augment(self, X, groups):
        """X with the K-1 group indicators appended (input groups only)."""
        if self.kind_ != "groups":
            return X
        if not np.all(np.isin(groups, self.tasks_)):
            unknown = np.setdiff1d(groups, self.tasks_)
            raise ValueError(f"groups holds labels not seen in fit: {unknown[:5].tolist()}")
        ind = (groups[:, None] == self.tasks_[None, 1:]).astype(np.float64)
        return np.hstack([X, ind])

    def _folds(self, n, groups):
        """One fold label per row, shared by every fit (ptLasso's ``foldid``): a row is
        held out of the stage-2 fits in the fold whose overall model gave its
        pre-validated offset. Stratified by input group, so each group sees every fold."""
        rng = np.random.default_rng(self.random_state)
        if groups is None:
            return make_folds(n, min(self.n_folds, n), rng)
        foldid = np.empty(n, dtype=np.int64)
        for g in self.tasks_:
            rows = np.flatnonzero(groups == g)
            foldid[rows] = make_folds(len(rows), min(self.n_folds, len(rows)), rng)
        return foldid

    def _fit_overall(self, X, y, groups):
        self.y_enc_ = self._encode_targets(y, groups)
        self.groups_ = groups
        self.n_features_in_ = X.shape[1]
        Xa = self._augment(X, groups)
        p = X.shape[1]
        pf = np.r_[np.ones(p), np.zeros(Xa.shape[1] - p)]
        self.foldid_ = self._folds(X.shape[0], groups)
        cv = self._cv(Xa, self.y_enc_, self.foldid_, family=self.family, penalty_factor=pf)
        index = cv.index(self.overall_lambda_rule)
        coef = cv.path.coef[index][:p]
        support = (np.abs(coef) > 0) if coef.ndim == 1 else np.any(np.abs(coef) > 0, axis=1)
        self.overall_ = _Overall(cv=cv, index=index, coef=coef, support=support)
        self.overall_cv_ = cv
        self.overall_coef_ = coef
        self.support_ = support
        self.overall_oof_ = cv.oof_eta[index]

    def _task_data(self, X, t):
        """Rows, target, offset column and family of stage-2 task ``t``."""
        if self.kind_ == "groups":
            rows = self.groups_ == self.tasks_[t]
            return rows, self.y_enc_[rows], self.overall_oof_[rows], self.family
        rows = np.ones(X.shape[0], dtype=bool)
        if self.kind_ == "classes":
            return rows, (self.y_enc_ == t).astype(np.float64), self.overall_oof_[:, t], "binomial"
        return rows, self.y_enc_[:, t], self.overall_oof_[:, t], "gaussian"

    def _fit_stage2(self, X, alpha):
        """One CV lasso per task at ``alpha``: list of (CVPathResult, chosen index)."""
        pf = stage2_penalty_factor(self.support_, alpha)
        fits = []
        for t in range(len(self.tasks_)):
            rows, yt, off, fam = self._task_data(X, t)
            cv = self._cv(
                X[rows],
                yt,
                self.foldid_[rows],
                family=fam,
                offset=(1 - alpha) * off,
                penalty_factor=pf,
            )
            fits.append((cv, cv.index(self.lambda_rule)))
        return fits

    def _set_stage2(self, fits, alphas=None):
        self.pretrain_alphas_per_task_ = (
            np.full(len(fits), float(self.pretrain_alpha)) if alphas is None else np.asarray(alphas)
        )
        self.group_cv_ = [cv for cv, _ in fits]
        self.group_coef_ = np.stack([cv.path.coef[i] for cv, i in fits])
        self.group_intercept_ = np.array([cv.path.intercept[i] for cv, i in fits])
        self.group_cv_error_ = np.array([cv.cv_mean[i] for cv, i in fits])

    # -- prediction ------------------------------------------------------------------
    def decision_function(self, X, groups=None):
        """Linear predictor ``(1 - alpha_t) eta_overall + eta_t``: ``(n,)`` for input
        groups, ``(n, K)`` (one column per class / response) otherwise."""
        check_is_fitted(self, "group_coef_")
        Xn = as_numpy(X)
        if Xn is None or Xn.ndim != 2 or Xn.shape[1] != self.n_features_in_:
            got = None if Xn is None else Xn.shape
            raise ValueError(f"X must have shape (n, {self.n_features_in_}), got {got}")
        Xn = Xn.astype(np.float64)
        if self.kind_ == "groups":
            groups = as_numpy(groups)
            if groups is None or groups.shape != (Xn.shape[0],):
                got = None if groups is None else groups.shape
                raise ValueError(f"groups must have shape ({Xn.shape[0]},), got {got}")
            eta_all = self.overall_.eta(self._augment(Xn, groups))
            t = np.searchsorted(self.tasks_, groups)
            own = np.einsum("np,np->n", Xn, self.group_coef_[t]) + self.group_intercept_[t]
            return like_input((1 - self.pretrain_alphas_per_task_[t]) * eta_all + own, X)
        eta_all = self.overall_.eta(Xn)
        own = Xn @ self.group_coef_.T + self.group_intercept_
        return like_input((1 - self.pretrain_alphas_per_task_) * eta_all + own, X)

    def predict_proba(self, X, groups=None):
        """Class probabilities (binomial: ``(n, 2)``; multinomial: one-vs-rest
        probabilities normalized to sum to 1, ``(n, K)``)."""
        if self.family not in ("binomial", "multinomial"):
            raise AttributeError(f"predict_proba needs a classification family, not {self.family}")
        eta = as_numpy(self.decision_function(X, groups))
        p = 1 / (1 + np.exp(-eta))
        prob = np.stack([1 - p, p], 1) if p.ndim == 1 else p / p.sum(1, keepdims=True)
        return like_input(prob, X)

    def predict(self, X, groups=None):
        """Mean response (gaussian: ``(n,)`` or ``(n, r)``; poisson) or class labels."""
        eta = as_numpy(self.decision_function(X, groups))
        if self.family == "poisson":
            return like_input(np.exp(eta), X)
        if self.family == "binomial":
            return self.classes_[(eta > 0).astype(int)]
        if self.family == "multinomial":
            return self.classes_[np.argmax(eta, axis=1)]
        return like_input(eta, X)


class PretrainedLassoCV(PretrainedLasso):
    """Pretrained lasso with ``pretrain_alpha`` chosen by cross-validation over
    ``pretrain_alphas``.

    As the authors' ``cv.ptLasso``: stage 1 (with its folds and pre-validated offset) is
    fitted once and reused; stage 2 is fitted for every alpha on the same folds; each
    task's penalty is chosen by ``lambda_rule`` and its held-out error there is the
    alpha's CV error for that task. ``pretrain_alpha_rule="overall"`` picks the alpha
    minimizing the error over all rows (the task-size weighted mean), ``"mean"`` the
    unweighted mean over tasks (ptLasso's ``alphahat.choice``), ``"per_group"`` one alpha
    per task. Attributes:
    ``pretrain_alpha_`` (the overall choice), ``pretrain_alphas_``,
    ``pretrain_alphas_per_task_``, ``cv_error_`` ``(n_alphas,)``, ``cv_error_per_task_``
    ``(n_alphas, K)``, plus those of :class:`PretrainedLasso`. The old names (``alphas``,
    ``alpha_rule``, ``alpha_``, ...) still work for one release (DeprecationWarning).
    """

    _renamed: ClassVar[dict[str, str]] = {
        **PRETRAIN_RENAMES,
        "alphas": "pretrain_alphas",
        "alpha_rule": "pretrain_alpha_rule",
        "alpha_": "pretrain_alpha_",
        "alphas_": "pretrain_alphas_",
        "alphas_per_task_": "pretrain_alphas_per_task_",
    }

    @renamed_kwargs(
        alphas="pretrain_alphas",
        alpha_rule="pretrain_alpha_rule",
        n_lambdas="n_penalties",
        seed="random_state",
    )
    def __init__(
        self,
        pretrain_alphas=DEFAULT_ALPHAS,
        pretrain_alpha_rule: str = "overall",
        family: str = "gaussian",
        overall_lambda_rule: str = "1se",
        lambda_rule: str = "min",
        n_folds: int = 10,
        l1_ratio: float = 1.0,
        n_penalties: int = 100,
        standardize: bool = False,
        tol: float = DEFAULT_TOL,
        random_state: int | np.random.Generator | None = 0,
    ) -> None:
        self.pretrain_alphas = pretrain_alphas
        self.pretrain_alpha_rule = pretrain_alpha_rule
        self.family = family
        self.overall_lambda_rule = overall_lambda_rule
        self.lambda_rule = lambda_rule
        self.n_folds = n_folds
        self.l1_ratio = l1_ratio
        self.n_penalties = n_penalties
        self.standardize = standardize
        self.tol = tol
        self.random_state = random_state

    def fit(self, X, y, groups=None):
        check_choice("pretrain_alpha_rule", self.pretrain_alpha_rule, ALPHA_RULES)
        alphas = np.asarray(self.pretrain_alphas, dtype=np.float64)
        if alphas.ndim != 1 or len(alphas) == 0 or np.any((alphas < 0) | (alphas > 1)):
            raise ValueError(
                f"pretrain_alphas must be a non-empty 1-D grid in [0, 1], got {self.pretrain_alphas}"
            )
        X, y, groups = self._validate(X, y, groups)
        self._fit_overall(X, y, groups)
        all_fits = [self._fit_stage2(X, a) for a in alphas]
        err = np.array([[cv.cv_mean[i] for cv, i in fits] for fits in all_fits])
        sizes = np.array([self._task_data(X, t)[0].sum() for t in range(len(self.tasks_))])
        self.pretrain_alphas_ = alphas
        self.cv_error_per_task_ = err
        self.cv_error_ = err @ sizes / sizes.sum()
        criterion = err.mean(axis=1) if self.pretrain_alpha_rule == "mean" else self.cv_error_
        best = int(np.argmin(criterion))
        self.pretrain_alpha_ = float(alphas[best])
        if self.pretrain_alpha_rule == "per_group":
            chosen = np.argmin(err, axis=0)
        else:
            chosen = np.full(len(self.tasks_), best)
        self._set_stage2([all_fits[a][t] for t, a in enumerate(chosen)], alphas[chosen])
        return self
