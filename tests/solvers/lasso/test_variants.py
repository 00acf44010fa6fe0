"""Sequential pretraining, the R-learner and boosted-stump features."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Lasso

from mrsolve.solvers.lasso import PretrainedLasso, cv_path
from mrsolve.solvers.lasso.variants import (
    PretrainedRLearner,
    SequentialPretrainedLasso,
    StumpFeatures,
)

KW = dict(n_folds=4, n_penalties=20, tol=1e-14)


def test_sequential_alpha_one_is_independent_lassos_and_chains_predictions():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 8))
    Y = np.cumsum(X[:, :2] @ rng.standard_normal((2, 3)), axis=1) + rng.standard_normal((80, 3))
    m = SequentialPretrainedLasso(pretrain_alpha=1.0, **KW).fit(X, Y)
    for t in range(3):
        cv = cv_path(X, Y[:, t], n_folds=4, n_penalties=20, tol=1e-14, seed=0)
        lam = cv.lambda_min
        ref = Lasso(alpha=lam, tol=1e-15, max_iter=100_000).fit(X, Y[:, t])
        np.testing.assert_allclose(m.coef_[t], ref.coef_, atol=1e-5)
    half = SequentialPretrainedLasso(pretrain_alpha=0.5, **KW).fit(X, Y)
    eta = half.predict(X)
    lin = X @ half.coef_.T + half.intercept_
    np.testing.assert_allclose(eta[:, 1], 0.5 * eta[:, 0] + lin[:, 1], atol=1e-10)
    np.testing.assert_allclose(eta[:, 2], 0.5 * eta[:, 1] + lin[:, 2], atol=1e-10)


def test_r_learner_recovers_a_sparse_treatment_effect():
    rng = np.random.default_rng(1)
    n, p = 400, 8
    X = rng.standard_normal((n, p))
    w = (rng.random(n) < 0.5).astype(float)
    tau = 2.0 + 1.5 * X[:, 0]
    y = X[:, 1] - X[:, 2] + w * tau + 0.5 * rng.standard_normal(n)
    m = PretrainedRLearner(pretrain_alpha=0.5, propensity=0.5, **KW).fit(X, y, w)
    assert abs(m.tau_intercept_ - 2.0) < 0.3 and abs(m.tau_coef_[0] - 1.5) < 0.3
    assert np.sqrt(np.mean((m.predict(X) - tau) ** 2)) < 0.4
    est = PretrainedRLearner(pretrain_alpha=0.5, **KW).fit(X, y, w)  # estimated propensity
    assert np.sqrt(np.mean((est.predict(X) - tau) ** 2)) < 0.5
    with pytest.raises(ValueError, match="treatment must be 0/1"):
        PretrainedRLearner().fit(X, y, w + 0.5)


def test_stump_features_are_split_indicators_usable_by_pretrained_lasso():
    rng = np.random.default_rng(2)
    X = rng.standard_normal((120, 4))
    groups = np.arange(120) % 2
    y = 3 * (X[:, 0] > 0.2) + (X[:, 1] > 0) * (groups + 1) + 0.3 * rng.standard_normal(120)
    sf = StumpFeatures(n_estimators=20).fit(X, y)
    F = sf.transform(X)
    j, thr = sf.features_[0], sf.thresholds_[0]
    np.testing.assert_array_equal(F[:, 0], (X[:, j] <= thr).astype(float))
    assert sf.features_[0] == 0 and abs(thr - 0.2) < 0.3  # strongest split first
    m = PretrainedLasso(pretrain_alpha=0.5, n_folds=3, n_penalties=15, tol=1e-8).fit(F, y, groups)
    assert np.mean((m.predict(F, groups) - y) ** 2) < 0.5
