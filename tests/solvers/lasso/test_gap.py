"""The duality-gap stopping rule, sparse designs and the solver's numpy losses."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import Lasso, LogisticRegression

from mrsolve.solvers.datafit import FAMILIES
from mrsolve.solvers.lasso import fit_path
from mrsolve.solvers.lasso.glm import FAMILY_CLASSES


def _data(n=80, p=30, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p)) + 0.2
    beta = np.zeros(p)
    beta[:5] = [2.0, -1.5, 1.0, 0.5, -0.5]
    y = X @ beta + 0.3 + rng.standard_normal(n)
    return X, y


def _gaussian_objective(X, y, coef, b0, lam):
    return 0.5 * np.mean((y - X @ coef - b0) ** 2) + lam * np.abs(coef).sum()


@pytest.mark.parametrize("lam_ratio", [0.5, 0.05, 0.005])
def test_default_tol_is_a_certified_suboptimality_bound(lam_ratio):
    """At the default tol the objective is within tol * null deviance of the optimum
    (scikit-learn's tight fit), and the reported gap bounds the true suboptimality."""
    X, y = _data()
    null_dev = np.var(y)
    lam = lam_ratio * np.abs(X.T @ (y - y.mean())).max() / len(y)
    path = fit_path(X, y, penalties=[lam])
    ref = Lasso(alpha=lam, tol=1e-15, max_iter=1_000_000).fit(X, y)
    p_ref = _gaussian_objective(X, y, ref.coef_, ref.intercept_, lam)
    p_ours = _gaussian_objective(X, y, path.coef[0], path.intercept[0], lam)
    assert path.converged[0] and path.gap[0] <= 1e-4
    assert -1e-12 <= (p_ours - p_ref) / null_dev <= path.gap[0] + 1e-12
    sk_default = Lasso(alpha=lam).fit(X, y)  # scikit-learn at its own default tol
    p_sk = _gaussian_objective(X, y, sk_default.coef_, sk_default.intercept_, lam)
    assert (p_sk - p_ref) / null_dev <= 1e-4


def test_binomial_gap_bounds_suboptimality():
    X, y = _data(seed=1)
    yb = (y > np.median(y)).astype(float)
    lam = 0.02
    path = fit_path(X, yb, family="binomial", penalties=[lam], tol=1e-6)
    ref = LogisticRegression(C=1 / (lam * len(yb)), l1_ratio=1.0, solver="saga", tol=1e-12)
    ref.set_params(max_iter=1_000_000).fit(X, yb)

    def obj(coef, b0):
        eta = X @ coef + b0
        return np.mean(np.logaddexp(0, eta) - yb * eta) + lam * np.abs(coef).sum()

    sub = obj(path.coef[0], path.intercept[0]) - obj(ref.coef_[0], ref.intercept_[0])
    p0 = yb.mean()
    null_dev = -2 * (p0 * np.log(p0) + (1 - p0) * np.log(1 - p0))
    assert path.gap[0] <= 1e-6
    assert -1e-9 <= sub / null_dev <= path.gap[0] + 1e-9


@pytest.mark.parametrize("family", ["gaussian", "binomial"])
def test_sparse_design_equals_dense(family):
    X, y = _data(seed=2)
    X[np.abs(X) < 0.8] = 0.0
    if family == "binomial":
        y = (y > np.median(y)).astype(float)
    kw = dict(family=family, n_penalties=10, penalty_min_ratio=0.05, tol=1e-12)
    dense = fit_path(X, y, **kw)
    sparse = fit_path(sp.csr_matrix(X), y, **kw)
    np.testing.assert_allclose(sparse.penalties, dense.penalties, rtol=1e-12)
    np.testing.assert_allclose(sparse.coef, dense.coef, atol=1e-6)
    np.testing.assert_allclose(sparse.intercept, dense.intercept, atol=1e-6)
    if family == "gaussian":  # and both equal scikit-learn on the sparse input
        lam = dense.penalties[-1]
        ref = Lasso(alpha=lam, tol=1e-15, max_iter=1_000_000).fit(sp.csc_matrix(X), y)
        np.testing.assert_allclose(sparse.coef[-1], ref.coef_, atol=1e-5)


@pytest.mark.parametrize("family", ["gaussian", "binomial", "poisson", "multinomial"])
def test_numpy_losses_equal_the_torch_datafit(family):
    rng = np.random.default_rng(3)
    n, k = 20, 3 if family == "multinomial" else 1
    eta = rng.standard_normal((n, k))
    off = 0.1 * rng.standard_normal((n, k))
    w = rng.uniform(0.5, 1.5, n)
    y = {
        "gaussian": rng.standard_normal((n, 1)),
        "binomial": rng.integers(0, 2, (n, 1)).astype(float),
        "poisson": rng.poisson(1.0, (n, 1)).astype(float),
        "multinomial": np.eye(3)[rng.integers(0, 3, n)],
    }[family]

    def t(a):
        return torch.from_numpy(np.ascontiguousarray(a if k > 1 else a[:, 0]))

    ref = FAMILIES[family](t(y), torch.from_numpy(w), t(off))
    ours = FAMILY_CLASSES[family](y, (w / w.mean() / n)[:, None], off)
    np.testing.assert_allclose(ours.value(eta), float(ref.value(t(eta))), rtol=1e-12)
    g, h = ours.grad_hess(eta)
    np.testing.assert_allclose(g.reshape(-1), ref.grad(t(eta)).numpy().reshape(-1), rtol=1e-12)
    np.testing.assert_allclose(
        h.reshape(-1), ref.hessian_diag(t(eta)).numpy().reshape(-1), rtol=1e-12
    )


def test_tol_must_be_positive():
    X, y = _data()
    with pytest.raises(ValueError, match="tol must be > 0"):
        fit_path(X, y, tol=0.0)
