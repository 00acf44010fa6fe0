"""Pretrained lasso: its limits alpha = 1 / alpha = 0, support recovery, variants, errors."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import Lasso

from mrsolve.solvers.lasso import PretrainedLasso, PretrainedLassoCV, fit_path, simulate_groups

FAST = dict(n_penalties=20, n_folds=4, tol=1e-14)


def _small(seed=0):
    return simulate_groups(
        n=150, n_individual=(6, 4, 3), noise_sd=4.0, beta_common=3.0, beta_individual=2.0, seed=seed
    )


def _sk_lasso(X, y, lam):
    return Lasso(alpha=lam, tol=1e-15, max_iter=1_000_000).fit(X, y)


def test_alpha_one_equals_separate_group_lassos():
    d = _small()
    m = PretrainedLasso(pretrain_alpha=1.0, **FAST).fit(d.X, d.y, d.groups)
    for k, g in enumerate(m.tasks_):
        rows = d.groups == g
        cv = m.group_cv_[k]
        lam = cv.path.penalties[cv.index_min]
        ref = _sk_lasso(d.X[rows], d.y[rows], lam)
        np.testing.assert_allclose(m.group_coef_[k], ref.coef_, atol=1e-5)
        np.testing.assert_allclose(
            m.predict(d.X[rows], d.groups[rows]), ref.predict(d.X[rows]), atol=1e-5
        )


def test_alpha_zero_refits_overall_support_with_offset():
    d = _small(seed=1)
    m = PretrainedLasso(pretrain_alpha=0.0, **FAST).fit(d.X, d.y, d.groups)
    S = m.support_
    assert 0 < S.sum() < d.X.shape[1]
    for k, g in enumerate(m.tasks_):
        rows = d.groups == g
        cv = m.group_cv_[k]
        lam = cv.path.penalties[cv.index_min]
        # gaussian offset o: lasso of (y - o) on the support columns only
        ref = _sk_lasso(d.X[rows][:, S], d.y[rows] - m.overall_oof_[rows], lam)
        np.testing.assert_allclose(m.group_coef_[k][S], ref.coef_, atol=1e-5)
        assert not m.group_coef_[k][~S].any()
        # prediction = full overall fit + group model
        Xa = np.hstack([d.X[rows], (d.groups[rows, None] == m.tasks_[None, 1:]).astype(float)])
        overall = (
            Xa @ m.overall_cv_.path.coef[m.overall_.index]
            + m.overall_cv_.path.intercept[m.overall_.index]
        )
        np.testing.assert_allclose(
            m.predict(d.X[rows], d.groups[rows]), overall + ref.predict(d.X[rows][:, S]), atol=1e-5
        )


def test_overall_model_leaves_group_indicators_unpenalized():
    d = _small(seed=2)
    m = PretrainedLasso(pretrain_alpha=0.5, **FAST).fit(d.X, d.y, d.groups)
    first = m.overall_cv_.path.coef[0]
    p = d.X.shape[1]
    assert not first[:p].any() and np.all(first[p:] != 0)


def test_pretraining_recovers_common_support_better_than_separate_lassos():
    d = simulate_groups(seed=3)  # the authors' design: n = 300, K = 5, p = 140, sd 20
    kw = dict(n_penalties=30, n_folds=5, tol=1e-8)
    pre = PretrainedLasso(pretrain_alpha=0.2, **kw).fit(d.X, d.y, d.groups)
    sep = PretrainedLasso(pretrain_alpha=1.0, **kw).fit(d.X, d.y, d.groups)

    def recall(m):
        eff = m.group_coef_ + (1 - m.pretrain_alpha) * m.overall_coef_
        return np.mean(eff[:, d.common] != 0)

    assert recall(pre) >= 0.9
    assert recall(pre) > recall(sep) + 0.1


def test_alpha_cv_picks_the_minimum_and_per_group_choices():
    d = _small(seed=4)
    alphas = (0.0, 0.5, 1.0)
    m = PretrainedLassoCV(pretrain_alphas=alphas, **FAST).fit(d.X, d.y, d.groups)
    sizes = np.bincount(d.groups)
    np.testing.assert_allclose(m.cv_error_, m.cv_error_per_task_ @ sizes / sizes.sum())
    assert m.pretrain_alpha_ == alphas[int(np.argmin(m.cv_error_))]
    assert np.all(m.pretrain_alphas_per_task_ == m.pretrain_alpha_)
    per = PretrainedLassoCV(pretrain_alphas=alphas, pretrain_alpha_rule="per_group", **FAST)
    per.fit(d.X, d.y, d.groups)
    np.testing.assert_array_equal(
        per.pretrain_alphas_per_task_, np.asarray(alphas)[np.argmin(per.cv_error_per_task_, axis=0)]
    )
    mean = PretrainedLassoCV(pretrain_alphas=alphas, pretrain_alpha_rule="mean", **FAST)
    mean.fit(d.X, d.y, d.groups)
    assert mean.pretrain_alpha_ == alphas[int(np.argmin(mean.cv_error_per_task_.mean(axis=1)))]


def test_folds_are_shared_by_stage_one_and_every_stage_two_fit():
    d = _small(seed=4)
    m = PretrainedLassoCV(pretrain_alphas=(0.0, 1.0), **FAST).fit(d.X, d.y, d.groups)
    np.testing.assert_array_equal(m.overall_cv_.foldid, m.foldid_)
    for k, cv in enumerate(m.group_cv_):
        rows = d.groups == m.tasks_[k]
        np.testing.assert_array_equal(cv.foldid, m.foldid_[rows])
        # stratified: each group holds every fold, balanced to one row
        counts = np.bincount(cv.foldid, minlength=FAST["n_folds"])
        assert counts.min() >= 1 and counts.max() - counts.min() <= 1
    # the pre-validated offset of a row comes from the overall fit without its fold
    cv = m.overall_cv_
    test = m.foldid_ == 0
    Xa = m._augment(d.X, d.groups)
    pf = np.r_[np.ones(d.X.shape[1]), np.zeros(Xa.shape[1] - d.X.shape[1])]
    fold = fit_path(
        Xa[~test], d.y[~test], penalties=cv.path.penalties, penalty_factor=pf, tol=1e-14
    )
    np.testing.assert_allclose(
        m.overall_oof_[test], fold.linear_predictor(Xa[test])[cv.index_1se], atol=1e-6
    )


def test_multi_response_alpha_one_equals_separate_lassos_and_shares_support():
    rng = np.random.default_rng(5)
    X = rng.standard_normal((80, 8))
    Y = X[:, :2] @ rng.standard_normal((2, 3)) + 0.5 * rng.standard_normal((80, 3))
    m = PretrainedLasso(pretrain_alpha=1.0, **FAST).fit(X, Y)
    assert m.kind_ == "responses" and m.overall_coef_.shape == (8, 3)
    np.testing.assert_array_equal(m.support_, np.any(m.overall_coef_ != 0, axis=1))
    for r in range(3):
        cv = m.group_cv_[r]
        ref = _sk_lasso(X, Y[:, r], cv.path.penalties[cv.index_min])
        np.testing.assert_allclose(m.group_coef_[r], ref.coef_, atol=1e-5)
    assert m.predict(X).shape == (80, 3)


def test_multinomial_targets_use_union_support_and_one_vs_rest():
    rng = np.random.default_rng(6)
    X = rng.standard_normal((90, 6))
    y = np.argmax(X[:, :3] + 0.7 * rng.standard_normal((90, 3)), axis=1)
    m = PretrainedLasso(
        pretrain_alpha=0.5, family="multinomial", n_penalties=8, n_folds=3, tol=1e-8
    )
    m.fit(X, y)
    np.testing.assert_array_equal(m.support_, np.any(m.overall_coef_ != 0, axis=1))
    assert m.group_coef_.shape == (3, 6) and m.kind_ == "classes"
    assert np.mean(m.predict(X) == y) > 0.6
    np.testing.assert_allclose(m.predict_proba(X).sum(1), 1.0)


def test_binomial_groups():
    d = _small(seed=7)
    yb = (d.y > np.median(d.y)).astype(int)
    m = PretrainedLasso(pretrain_alpha=0.5, family="binomial", n_penalties=10, n_folds=3, tol=1e-8)
    m.fit(d.X, yb, d.groups)
    assert np.mean(m.predict(d.X, d.groups) == yb) > 0.7


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda d: (
                PretrainedLasso(family="binomial"),
                d.X,
                (d.groups == 0).astype(int),
                d.groups,
            ),
            "single class",
        ),
        (lambda d: (PretrainedLasso(family="gamma"), d.X, d.y, d.groups), "family must be"),
        (lambda d: (PretrainedLasso(), d.X, d.y[:-1], d.groups), "y must have 150 rows"),
        (lambda d: (PretrainedLasso(), d.X, d.y, d.groups[:-1]), "groups must have shape"),
        (lambda d: (PretrainedLasso(), np.where(d.X > 2, np.nan, d.X), d.y, d.groups), "NaN"),
        (lambda d: (PretrainedLasso(pretrain_alpha=2.0), d.X, d.y, d.groups), r"alpha must be in"),
        (lambda d: (PretrainedLasso(), d.X, d.y, None), "groups must be given"),
        (lambda d: (PretrainedLasso(), d.X, d.y, np.zeros(150)), "at least 2 groups"),
    ],
)
def test_bad_input_raises(make, match):
    est, X, y, groups = make(_small())
    with pytest.raises(ValueError, match=match):
        est.fit(X, y, groups)


def test_unknown_group_at_predict_raises():
    d = _small(seed=8)
    m = PretrainedLasso(pretrain_alpha=0.5, **FAST).fit(d.X, d.y, d.groups)
    with pytest.raises(ValueError, match="not seen in fit"):
        m.predict(d.X[:2], np.array([0, 9]))


def test_plots_return_figures_with_the_data():
    from matplotlib.figure import Figure

    from mrsolve.solvers.lasso import LassoCV
    from mrsolve.solvers.lasso.plots import plot_coefficient_map, plot_cv_alpha, plot_cv_lambda

    d = _small(seed=9)
    m = PretrainedLassoCV(pretrain_alphas=(0.0, 0.5, 1.0), **FAST).fit(d.X, d.y, d.groups)
    fig = plot_cv_alpha(m)
    assert isinstance(fig, Figure)
    np.testing.assert_allclose(fig.axes[0].lines[len(m.tasks_)].get_ydata(), m.cv_error_)
    fig = plot_coefficient_map(m)
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape[0] == 1 + len(m.tasks_)
    est = LassoCV(n_penalties=10, n_folds=3).fit(d.X, d.y)
    assert isinstance(plot_cv_lambda(est), Figure)
