"""Lasso paths against scikit-learn, glum and optimality certificates."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from glum import GeneralizedLinearRegressor
from sklearn.linear_model import ElasticNet, Lasso, LogisticRegression, MultiTaskLasso

from mrsolve.solvers.datafit import FAMILIES
from mrsolve.solvers.lasso import fit_path

TIGHT = dict(tol=1e-18, max_iter=1_000_000)


def _data(n=50, p=12, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + 0.3
    beta = np.zeros(p)
    beta[:4] = [2.0, -1.5, 1.0, 0.5]
    y = X @ beta + 0.5 + rng.standard_normal(n)
    return X, y, rng


@pytest.mark.parametrize("lam", [0.3, 0.05, 0.005])
def test_gaussian_lasso_matches_sklearn(lam):
    X, y, _ = _data()
    path = fit_path(X, y, penalties=[lam], **TIGHT)
    ref = Lasso(alpha=lam, tol=1e-15, max_iter=1_000_000).fit(X, y)
    np.testing.assert_allclose(path.coef[0], ref.coef_, atol=1e-5, rtol=0)
    np.testing.assert_allclose(path.intercept[0], ref.intercept_, atol=1e-5, rtol=0)


@pytest.mark.parametrize("l1_ratio", [0.2, 0.7])
def test_elastic_net_matches_sklearn(l1_ratio):
    X, y, _ = _data(seed=1)
    path = fit_path(X, y, penalties=[0.2, 0.02], l1_ratio=l1_ratio, **TIGHT)
    for lam, coef, b0 in zip(path.penalties, path.coef, path.intercept, strict=True):
        ref = ElasticNet(alpha=lam, l1_ratio=l1_ratio, tol=1e-15, max_iter=1_000_000).fit(X, y)
        np.testing.assert_allclose(coef, ref.coef_, atol=1e-5, rtol=0)
        np.testing.assert_allclose(b0, ref.intercept_, atol=1e-5, rtol=0)


def test_l1_logistic_matches_sklearn():
    X, _, rng = _data(n=80, p=6, seed=2)
    yb = (X @ np.r_[1.0, -1.0, 0.5, 0, 0, 0] + 0.5 * rng.standard_normal(80) > 0.3).astype(float)
    C = 0.5
    ref = LogisticRegression(C=C, l1_ratio=1.0, solver="saga", tol=1e-13, max_iter=1_000_000)
    ref.fit(X, yb)
    path = fit_path(X, yb, family="binomial", penalties=[1 / (C * len(yb))], **TIGHT)
    assert np.count_nonzero(ref.coef_) >= 2
    np.testing.assert_allclose(path.coef[0], ref.coef_[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(path.intercept[0], ref.intercept_[0], atol=1e-5, rtol=0)


def test_multitask_lasso_matches_sklearn():
    X, y, rng = _data(seed=3)
    Y = np.c_[y, y + rng.standard_normal(len(y)), rng.standard_normal(len(y))]
    path = fit_path(X, Y, penalties=[0.2], **TIGHT)
    ref = MultiTaskLasso(alpha=0.2, tol=1e-15, max_iter=1_000_000).fit(X, Y)
    np.testing.assert_allclose(path.coef[0], ref.coef_.T, atol=1e-5, rtol=0)
    np.testing.assert_allclose(path.intercept[0], ref.intercept_, atol=1e-5, rtol=0)


def test_poisson_with_offset_weights_and_factors_matches_glum():
    X, _, rng = _data(n=120, p=6, seed=4)
    off = np.log(rng.uniform(0.5, 2.0, 120))
    y = rng.poisson(np.exp(0.3 * X[:, 0] - 0.2 * X[:, 1] + off)).astype(float)
    w = rng.uniform(0.5, 1.5, 120)
    pf = np.array([1.0, 0.5, 2.0, 1.0, 0.0, 1.0])
    lam = 0.02
    path = fit_path(
        X, y, family="poisson", weights=w, offset=off, penalty_factor=pf, penalties=[lam], **TIGHT
    )
    ref = GeneralizedLinearRegressor(
        family="poisson", alpha=lam, l1_ratio=1.0, P1=pf, gradient_tol=1e-12, max_iter=10_000
    )
    ref.fit(X, y, sample_weight=w / w.mean(), offset=off)
    np.testing.assert_allclose(path.coef[0], ref.coef_, atol=1e-5, rtol=0)
    np.testing.assert_allclose(path.intercept[0], ref.intercept_, atol=1e-5, rtol=0)


def test_penalty_factors_equal_rescaled_columns_and_exclusion():
    X, y, _ = _data(seed=5)
    pf = np.array([0.5, 2.0, 1.0, 3.0] + [1.0] * 8)
    path = fit_path(X, y, penalties=[0.1], penalty_factor=pf, **TIGHT)
    # pf_j |b_j| with column x_j equals |c_j| with column x_j / pf_j, c_j = pf_j b_j
    ref = Lasso(alpha=0.1, tol=1e-15, max_iter=1_000_000).fit(X / pf, y)
    np.testing.assert_allclose(path.coef[0], ref.coef_ / pf, atol=1e-5, rtol=0)
    # pf = inf drops the feature; pf = 0 leaves it unpenalized (equals OLS on that column)
    pf_inf = np.r_[np.inf, np.ones(11)]
    dropped = fit_path(X, y, penalties=[0.1], penalty_factor=pf_inf, **TIGHT)
    ref = Lasso(alpha=0.1, tol=1e-15, max_iter=1_000_000).fit(X[:, 1:], y)
    assert dropped.coef[0, 0] == 0.0
    np.testing.assert_allclose(dropped.coef[0, 1:], ref.coef_, atol=1e-5, rtol=0)
    free = fit_path(X[:, :1], y, penalties=[1e3], penalty_factor=[0.0], **TIGHT)
    ols = np.polyfit(X[:, 0], y, 1)
    np.testing.assert_allclose([free.coef[0, 0], free.intercept[0]], ols, atol=1e-8)


def test_offset_equals_shifted_target():
    X, y, rng = _data(seed=6)
    off = rng.standard_normal(len(y))
    a = fit_path(X, y, offset=off, penalties=[0.1, 0.01], **TIGHT)
    b = fit_path(X, y - off, penalties=[0.1, 0.01], **TIGHT)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-10)
    np.testing.assert_allclose(a.linear_predictor(X, off), b.linear_predictor(X) + off, atol=1e-9)


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_integer_weights_equal_repeated_rows(family):
    X, y, rng = _data(n=40, p=5, seed=7)
    if family == "binomial":
        y = (y > np.median(y)).astype(float)
    w = rng.integers(1, 4, len(y)).astype(float)
    a = fit_path(X, y, family=family, weights=w, penalties=[0.05], **TIGHT)
    r = np.repeat(np.arange(len(y)), w.astype(int))
    b = fit_path(X[r], y[r], family=family, penalties=[0.05], **TIGHT)
    np.testing.assert_allclose(a.coef, b.coef, atol=1e-8)


def _kkt_residual(X, y, family, path, i, pf, groups=None, weights=None, offset=None):
    """Largest violation of the lasso optimality conditions at path point i."""
    eta = path.linear_predictor(X)[i]
    n_classes = eta.shape[1] if family == "multinomial" else None
    yt = np.eye(n_classes)[y] if family == "multinomial" else y
    df = FAMILIES[family](
        torch.from_numpy(yt.astype(np.float64)),
        None if weights is None else torch.from_numpy(weights),
        None if offset is None else torch.from_numpy(offset),
    )
    g = df.grad(torch.from_numpy(np.ascontiguousarray(eta))).numpy()
    G = X.T @ (g if g.ndim == 2 else g[:, None])
    lam = path.penalties[i]
    coef = path.coef[i] if path.coef[i].ndim == 2 else path.coef[i][:, None]
    worst = float(np.abs(g.sum(0)).max())  # intercept: zero gradient
    labels = np.arange(X.shape[1]) if groups is None else groups
    for gl in np.unique(labels):
        idx = labels == gl
        scale = lam * pf[idx][0] * np.sqrt(idx.sum())
        cols = (
            [slice(None)]
            if family != "multinomial"
            else [slice(c, c + 1) for c in range(n_classes)]
        )
        for c in cols:
            Gg, Bg = G[idx][:, c], coef[idx][:, c]
            nb = np.linalg.norm(Bg)
            if nb > 0:  # stationarity: grad = -lambda * pf * B / ||B||
                worst = max(worst, float(np.abs(Gg + scale * Bg / nb).max()))
            else:
                worst = max(worst, float(np.linalg.norm(Gg) - scale))
    return worst


@pytest.mark.parametrize("free", [True, False], ids=["unpenalized", "all-penalized"])
@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson", "multinomial"])
def test_glm_paths_satisfy_kkt_with_weights_offsets_factors(family, free):
    X, y, rng = _data(n=60, p=6, seed=8)
    if family == "binomial":
        y = (y > np.median(y)).astype(float)
    elif family == "poisson":
        y = rng.poisson(np.exp(0.3 * X[:, 0])).astype(float)
    else:
        y = np.digitize(y, np.quantile(y, [0.33, 0.66]))
    w = rng.uniform(0.5, 1.5, 60)
    off = 0.2 * rng.standard_normal((60, 3) if family == "multinomial" else 60)
    # with / without an unpenalized feature (the compiled gaussian and binomial solves
    # project it out of the dual point, or are bypassed)
    pf = np.array([1.0, 0.5, 2.0, 1.0, 0.0 if free else 3.0, 1.0])
    path = fit_path(
        X,
        y,
        family=family,
        weights=w,
        offset=off,
        penalty_factor=pf,
        n_penalties=8,
        penalty_min_ratio=0.05,
        tol=1e-16,
    )
    # multinomial classes take majorize-minimize steps (linear convergence): looser bound
    bound = 1e-5 if family == "multinomial" else 1e-7
    for i in range(len(path.penalties)):
        assert _kkt_residual(X, y, family, path, i, pf, weights=w, offset=off) < bound
    assert np.count_nonzero(path.coef[-1]) > np.count_nonzero(path.coef[0])


def test_group_lasso_satisfies_kkt_and_zeroes_whole_groups():
    X, y, _ = _data(n=60, p=12, seed=9)
    groups = np.repeat([0, 1, 2, 3], 3)
    pf = np.ones(12)
    path = fit_path(X, y, feature_groups=groups, n_penalties=10, tol=1e-18)
    for i in range(len(path.penalties)):
        assert _kkt_residual(X, y, "gaussian", path, i, pf, groups=groups) < 1e-6
        nz = np.abs(path.coef[i]) > 0
        for gl in range(4):
            assert nz[groups == gl].all() or not nz[groups == gl].any()
    assert not path.coef[0].any()  # lambda_max gives the all-zero fit


def test_standardize_penalizes_scaled_columns():
    X, y, _ = _data(seed=10)
    sd = X.std(0)
    a = fit_path(X, y, standardize=True, penalties=[0.1], **TIGHT)
    ref = Lasso(alpha=0.1, tol=1e-15, max_iter=1_000_000).fit(X / sd, y)
    np.testing.assert_allclose(a.coef[0], ref.coef_ / sd, atol=1e-5)


def test_default_path_starts_at_lambda_max():
    X, y, _ = _data(seed=11)
    path = fit_path(X, y, n_penalties=5)
    lam_max = np.abs(X.T @ (y - y.mean())).max() / len(y)
    np.testing.assert_allclose(path.penalties[0], lam_max, rtol=1e-12)
    assert not path.coef[0].any() and np.count_nonzero(path.coef[1]) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(family="tweedie"), "family must be one of"),
        (dict(penalty_factor=np.ones(3)), r"penalty_factor must have shape \(12,\)"),
        (dict(penalty_factor=-np.ones(12)), "penalty_factor must be >= 0"),
        (dict(l1_ratio=1.5), r"l1_ratio must be in \[0, 1\]"),
        (dict(penalties=[0.1, 0.2]), "decreasing"),
        (dict(feature_groups=np.arange(3)), r"feature_groups must have shape \(12,\)"),
        (dict(weights=np.ones(5)), "weights must have shape"),
        (dict(gram=np.eye(5)), r"gram must be a \(12, 12\) array"),
        (dict(gram=np.eye(12), family="poisson"), "for a gaussian family"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    X, y, _ = _data()
    with pytest.raises(ValueError, match=match):
        fit_path(X, y, **kwargs)
