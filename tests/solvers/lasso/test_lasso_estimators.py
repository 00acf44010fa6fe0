"""LassoPath / LassoCV: scikit-learn conventions, cross-validation against sklearn refits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from sklearn.linear_model import Lasso
from sklearn.utils.estimator_checks import check_estimator

from mrsolve.solvers.lasso import LassoCV, LassoPath

CV_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data": (
        "random folds of repeated rows differ from folds of weighted rows"
    )
}


@pytest.mark.parametrize(
    "est",
    [
        LassoPath(n_penalties=8),
        LassoCV(n_penalties=8, n_folds=3),
        LassoPath(family="binomial", n_penalties=3, penalty_min_ratio=0.3, tol=1e-8),
    ],
    ids=["path", "cv", "binomial"],
)
def test_check_estimator(est):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xfail = CV_XFAIL if isinstance(est, LassoCV) else {}
        results = check_estimator(est, on_fail=None, expected_failed_checks=xfail)
    failed = [r["check_name"] for r in results if r["status"] == "failed"]
    assert failed == []


def _data(seed=0, n=60, p=10):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    y = X[:, :3] @ np.array([1.5, -1.0, 0.7]) + rng.standard_normal(n)
    return X, y


def test_cv_curve_matches_sklearn_refits_on_the_same_folds():
    X, y = _data()
    est = LassoCV(n_penalties=12, n_folds=4, random_state=3, tol=1e-16).fit(X, y)
    folds = est.cv_.foldid
    L = len(est.penalties_)  # the default path may stop early, as glmnet's does
    errs = np.zeros((4, L))
    for f in range(4):
        tr, te = folds != f, folds == f
        for i, lam in enumerate(est.penalties_):
            m = Lasso(alpha=lam, tol=1e-14, max_iter=100_000).fit(X[tr], y[tr])
            errs[f, i] = np.mean((m.predict(X[te]) - y[te]) ** 2)
            if i == est.cv_.index_min:
                np.testing.assert_allclose(est.cv_.oof_eta[i, te], m.predict(X[te]), atol=1e-5)
    sizes = np.bincount(folds)
    mean = sizes @ errs / sizes.sum()
    se = np.sqrt((sizes @ (errs - mean) ** 2 / sizes.sum()) / 3)
    np.testing.assert_allclose(est.cv_mean_, mean, rtol=1e-5)
    np.testing.assert_allclose(est.cv_se_, se, rtol=1e-4)
    i_min = int(np.argmin(mean))
    assert est.lambda_min_ == est.penalties_[i_min]
    i_1se = np.flatnonzero(mean <= mean[i_min] + se[i_min])[0]
    assert est.lambda_1se_ == est.penalties_[i_1se] and est.lambda_1se_ >= est.lambda_min_
    assert est.lambda_ == est.lambda_min_
    one_se = LassoCV(n_penalties=12, n_folds=4, random_state=3, lambda_rule="1se").fit(X, y)
    assert one_se.lambda_ == est.lambda_1se_


def test_torch_in_torch_out_and_offset_in_predict():
    X, y = _data(seed=1)
    est = LassoPath(n_penalties=5).fit(torch.from_numpy(X), torch.from_numpy(y))
    out = est.predict(torch.from_numpy(X))
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(est.predict(X, offset=np.ones(60)), out.numpy() + 1, atol=1e-12)


def test_multinomial_classifier_predicts_labels():
    X, _ = _data(seed=2)
    noisy = X[:, :3] + 0.5 * np.random.default_rng(0).standard_normal((60, 3))
    labels = np.array(["a", "b", "c"])[np.argmax(noisy, axis=1)]
    est = LassoCV(
        family="multinomial", n_penalties=6, n_folds=3, penalty_min_ratio=0.1, tol=1e-8
    ).fit(X, labels)
    assert est.score(X, labels) > 0.7
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert set(est.predict(X)) <= {"a", "b", "c"}


@pytest.mark.parametrize(
    ("est", "y", "match"),
    [
        (LassoPath(family="binomial"), np.zeros(60), "1 class"),
        (LassoPath(family="binomial"), np.arange(60) % 3, "Only binary classification"),
        (LassoPath(family="nope"), None, "family must be one of"),
        (LassoPath(family="poisson"), -np.ones(60), "y must be >= 0"),
        (LassoCV(lambda_rule="max"), None, "lambda_rule must be one of"),
        (LassoPath(), np.ones(59), "inconsistent numbers of samples"),
    ],
)
def test_bad_input_raises(est, y, match):
    X, y0 = _data()
    with pytest.raises(ValueError, match=match):
        est.fit(X, y0 if y is None else y)


def test_nan_in_X_raises():
    X, y = _data()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        LassoPath().fit(X, y)


def test_default_tol_is_within_the_gap_rule_of_scikit_learn_along_the_path():
    """The estimators' default tol is the gap rule's 1e-4: every penalty's objective is
    within 1e-4 of the null deviance of scikit-learn's tight optimum."""
    rng = np.random.default_rng(7)
    X = rng.standard_normal((90, 25))
    y = X[:, :4] @ np.array([2.0, -1.0, 1.0, 0.5]) + rng.standard_normal(90)
    est = LassoPath(n_penalties=15).fit(X, y)
    null_dev = np.var(y)

    def obj(coef, b0, lam):
        return 0.5 * np.mean((y - X @ coef - b0) ** 2) + lam * np.abs(coef).sum()

    for lam, coef, b0 in zip(est.penalties_, est.coef_path_, est.intercept_path_, strict=True):
        ref = Lasso(alpha=lam, tol=1e-15, max_iter=1_000_000).fit(X, y)
        sub = obj(coef, b0, lam) - obj(ref.coef_, ref.intercept_, lam)
        assert -1e-12 <= sub / null_dev <= 1e-4
