"""cv_path's warm start across folds: each fold's Gram is the full one minus the held-out
rows', against direct Grams, scikit-learn fits on the fold data and cold-started CV."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.linear_model import Lasso

from mrsolve.solvers.lasso import cv_path
from mrsolve.solvers.lasso.cv import _FoldGrams

TIGHT = dict(tol=1e-18, max_iter=1_000_000)


def _data(seed=0, n=120, p=15, mean=0.0):
    """Columns of unequal scale around ``mean`` (large means test the downdate's centering)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) * rng.uniform(0.5, 2.0, p) + mean
    y = (X[:, :4] - mean) @ np.array([1.5, -1.0, 0.7, 0.4]) + rng.standard_normal(n) + 3.0
    return X, y, rng.uniform(0.3, 3.0, n)


@pytest.mark.parametrize("center", [True, False])
def test_fold_gram_equals_the_training_rows_gram(center):
    X, _, w = _data(mean=1e3)
    test = np.arange(len(X)) % 5 == 2
    Xt, wt = X[~test], w[~test] / w[~test].sum()
    Xc = Xt - wt @ Xt if center else Xt
    ref = Xc.T @ (wt[:, None] * Xc)
    got = _FoldGrams(X, w, center).train(test)
    np.testing.assert_allclose(got, ref, rtol=1e-9, atol=1e-11 * np.abs(ref).max())


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_warm_started_folds_match_sklearn_on_the_fold_data(fit_intercept):
    X, y, w = _data(seed=1, mean=5.0)
    cv = cv_path(X, y, weights=w, n_penalties=6, n_folds=4, fit_intercept=fit_intercept, **TIGHT)
    for f in range(4):
        tr, te = cv.foldid != f, cv.foldid == f
        for i, lam in enumerate(cv.path.penalties):
            ref = Lasso(alpha=lam, fit_intercept=fit_intercept, tol=1e-12, max_iter=1_000_000)
            ref.fit(X[tr], y[tr], sample_weight=w[tr])
            np.testing.assert_allclose(cv.oof_eta[i, te], ref.predict(X[te]), atol=1e-5)


@pytest.mark.parametrize(
    "kwargs",
    [
        {},
        {"standardize": True},
        {"l1_ratio": 0.5},
        {"feature_groups": np.arange(15) % 4},  # non-contiguous groups: permuted Gram
        {"penalty_factor": np.r_[0.0, np.ones(14)]},
    ],
    ids=["lasso", "standardize", "enet", "groups", "unpenalized"],
)
@pytest.mark.parametrize("tol", [1e-4, 1e-18])
def test_warm_start_gives_the_cold_cv_curve(kwargs, tol):
    X, y, w = _data(seed=2, mean=2.0)
    kw = dict(weights=w, n_penalties=15, n_folds=5, seed=3, tol=tol, max_iter=1_000_000)
    warm = cv_path(X, y, **kw, **kwargs)
    cold = cv_path(X, y, warm_start=False, **kw, **kwargs)
    # the same iterates up to rounding; at tol 1e-4 both are within the gap of the optimum
    rtol = 1e-3 if tol > 1e-10 else 1e-8
    np.testing.assert_allclose(warm.cv_mean, cold.cv_mean, rtol=rtol)
    np.testing.assert_allclose(warm.path.coef, cold.path.coef, atol=10 * rtol)
    assert (warm.index_min, warm.index_1se) == (cold.index_min, cold.index_1se)


def test_multitask_warm_start_gives_the_cold_cv_curve():
    X, y, _ = _data(seed=4)
    Y = np.c_[y, y[::-1]]
    warm = cv_path(X, Y, n_penalties=10, n_folds=4, **TIGHT)
    cold = cv_path(X, Y, n_penalties=10, n_folds=4, warm_start=False, **TIGHT)
    np.testing.assert_allclose(warm.cv_mean, cold.cv_mean, rtol=1e-8)


def test_negative_weights_raise_before_the_grams_are_formed():
    X, y, w = _data()
    w[3] = -1.0
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no invalid sqrt on the way to the error
        with pytest.raises(ValueError, match="weights must be >= 0"):
            cv_path(X, y, weights=w, n_folds=3)
