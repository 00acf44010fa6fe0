"""The compiled per-penalty solves: sparse gaussian (residual form on CSC columns) and
poisson proximal Newton, against scikit-learn, glum and the duality-gap certificate."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from glum import GeneralizedLinearRegressor
from sklearn.linear_model import Lasso

from mrsolve.solvers.lasso import fit_path

TIGHT = dict(tol=1e-18, max_iter=1_000_000)


def _text_like(n=150, p=300, seed=0):
    """Sparse positive design (tf-idf-like), a gaussian target and weights."""
    rng = np.random.default_rng(seed)
    X = sp.random(n, p, density=0.05, random_state=seed, format="csr")
    X.data = np.log1p(10 * X.data)
    beta = np.zeros(p)
    beta[:8] = rng.standard_normal(8) * 3
    y = X @ beta + 0.4 + 0.3 * rng.standard_normal(n)
    return X, y, rng.uniform(0.5, 1.5, n)


@pytest.mark.parametrize("fit_intercept", [True, False])
def test_sparse_gaussian_matches_sklearn_with_weights(fit_intercept):
    X, y, w = _text_like()
    lam = 0.02 * np.abs(X.T @ (y - y.mean())).max() / len(y)
    path = fit_path(X, y, weights=w, penalties=[lam], fit_intercept=fit_intercept, **TIGHT)
    ref = Lasso(alpha=lam, fit_intercept=fit_intercept, tol=1e-15, max_iter=1_000_000)
    ref.fit(sp.csc_matrix(X), y, sample_weight=w / w.mean())
    assert np.count_nonzero(path.coef[0]) > 5
    np.testing.assert_allclose(path.coef[0], ref.coef_, atol=1e-5, rtol=0)
    np.testing.assert_allclose(path.intercept[0], ref.intercept_, atol=1e-5, rtol=0)


def test_sparse_gaussian_default_tol_gap_bounds_suboptimality():
    """Along a path at the default tol, each point is within its reported gap (relative
    to the null deviance) of scikit-learn's tight optimum, standardized columns included."""
    X, y, _ = _text_like(seed=1)
    path = fit_path(X, y, n_penalties=12, penalty_min_ratio=0.01, standardize=True)
    sd = np.sqrt(np.asarray(X.multiply(X).mean(0)).ravel() - np.asarray(X.mean(0)).ravel() ** 2)
    sd = np.where(sd > 0, sd, 1.0)  # an all-zero column is left unscaled (as standardize does)
    Xs = sp.csc_matrix(X @ sp.diags(1 / sd))
    null = np.mean((y - y.mean()) ** 2)

    def objective(coef, b0, lam):
        return 0.5 * np.mean((y - Xs @ coef - b0) ** 2) + lam * np.abs(coef).sum()

    for i, lam in enumerate(path.penalties):
        ref = Lasso(alpha=lam, tol=1e-14, max_iter=1_000_000).fit(Xs, y)
        coef = path.coef[i] * sd  # on the standardized scale
        sub = objective(coef, path.intercept[i], lam) - objective(ref.coef_, ref.intercept_, lam)
        assert path.converged[i] and path.gap[i] <= 1e-4
        assert -1e-12 <= sub / null <= path.gap[i] + 1e-12


def test_poisson_default_tol_gap_bounds_suboptimality_against_glum():
    rng = np.random.default_rng(3)
    n, p = 200, 15
    X = rng.standard_normal((n, p)) + 0.2
    off = np.log(rng.uniform(0.5, 2.0, n))
    y = rng.poisson(np.exp(0.4 * X[:, 0] - 0.3 * X[:, 1] + 0.2 + off)).astype(float)
    w = rng.uniform(0.5, 1.5, n)
    w /= w.mean()
    path = fit_path(X, y, family="poisson", weights=w, offset=off, n_penalties=8)
    null_fit = GeneralizedLinearRegressor(family="poisson", alpha=1e6, l1_ratio=1.0)
    null_fit.fit(X, y, sample_weight=w, offset=off)

    def objective(coef, b0, lam):
        eta = X @ coef + b0 + off
        return np.mean(w * (np.exp(eta) - y * eta)) + lam * np.abs(coef).sum()

    sat = np.mean(w * (y - np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0.0)))
    null = 2 * (objective(np.zeros(p), null_fit.intercept_, 0.0) - sat)
    for i, lam in enumerate(path.penalties[1:], start=1):
        ref = GeneralizedLinearRegressor(
            family="poisson", alpha=lam, l1_ratio=1.0, gradient_tol=1e-12, max_iter=10_000
        ).fit(X, y, sample_weight=w, offset=off)
        sub = objective(path.coef[i], path.intercept[i], lam) - objective(
            ref.coef_, ref.intercept_, lam
        )
        assert path.converged[i] and path.gap[i] <= 1e-4
        assert -1e-9 <= sub / null <= path.gap[i] + 1e-9
    assert np.count_nonzero(path.coef[-1]) > 2
