"""Wedge-product features: geometry, lasso vs CVXPY, recovered network, estimators."""

import math

import cvxpy as cp
import numpy as np
import pytest
import torch
from sklearn.utils.estimator_checks import check_estimator

from mrsolve.solvers import wedge as W


def data(n, d, seed=0):
    return torch.as_tensor(np.random.default_rng(seed).standard_normal((n, d)))


@pytest.mark.parametrize("d", [1, 2, 3, 4])
def test_neurons_orthogonal_to_differences_and_through_anchor(d):
    X = data(9, d)
    V, b, subsets = W.wedge_neurons(X)
    assert V.shape[0] == 2 * math.comb(9, d)
    torch.testing.assert_close(torch.linalg.vector_norm(V, dim=1), torch.ones(V.shape[0]).double())
    pts = X[subsets]  # (p, d, d)
    diffs = pts[:, 1:] - pts[:, :1]
    assert diffs.numel() == 0 or float((diffs @ V[:, :, None]).abs().max()) < 1e-10
    # through the anchor and every other sample of its subset
    assert float(((pts @ V[:, :, None])[..., 0] + b[:, None]).abs().max()) < 1e-10


def test_2d_neuron_is_rotated_difference():
    X = data(5, 2, seed=1)
    V, _b, subsets = W.wedge_neurons(X)
    i, j = subsets[0]
    diff = X[j] - X[i]
    rot = torch.stack([-diff[1], diff[0]]) / torch.linalg.vector_norm(diff)
    torch.testing.assert_close(V[0], rot)
    torch.testing.assert_close(V[V.shape[0] // 2], -rot)


@pytest.mark.parametrize("d", [2, 3, 5])
def test_generalized_cross_is_determinant_expansion(d):
    rng = np.random.default_rng(d)
    A, x = rng.standard_normal((d - 1, d)), rng.standard_normal(d)
    c = W.generalized_cross(torch.as_tensor(A)).numpy()
    assert c @ x == pytest.approx(np.linalg.det(np.vstack([A, x])), rel=1e-10)
    assert c @ c == pytest.approx(np.linalg.det(np.vstack([A, c])), rel=1e-10)


def test_random_subsets_and_degenerate_dropped():
    X = data(30, 3)
    V, _b, subsets = W.wedge_neurons(X, max_features=100, seed=2)
    assert V.shape[0] == 100
    half = subsets[: V.shape[0] // 2]
    assert torch.unique(half, dim=0).shape[0] == half.shape[0]
    Xd = torch.cat([X[:4], X[:1]])  # a repeated sample: subsets holding both are degenerate
    V2, _, s2 = W.wedge_neurons(Xd)
    assert V2.shape[0] == 2 * (math.comb(5, 3) - 3)
    assert not any({0, 4} <= set(s.tolist()) for s in s2)


def lasso_cvxpy(Phi, y, beta):
    n, p = Phi.shape
    w, c = cp.Variable(p), cp.Variable()
    obj = cp.sum_squares(y - Phi @ w - c) / (2 * n) + beta * cp.norm1(w)
    prob = cp.Problem(cp.Minimize(obj))
    prob.solve(solver="CLARABEL")
    return prob.value, w.value, c.value


def lasso_objective(Phi, y, fit):
    r = y - Phi @ fit.coef[:, 0].numpy() - float(fit.intercept[0])
    return r @ r / (2 * len(y)) + fit.beta * np.abs(fit.coef.numpy()).sum()


def test_lasso_matches_cvxpy():
    X = data(10, 2, seed=3)
    y = np.sin(3 * X[:, 0].numpy()) + X[:, 1].numpy()
    V, b, _ = W.wedge_neurons(X)
    Phi = W.wedge_features(X, V, b)
    beta = 0.02
    fit = W.lasso(Phi, torch.as_tensor(y)[:, None], beta)
    assert fit.converged and fit.gap <= 1e-7
    value, w_ref, c_ref = lasso_cvxpy(Phi.numpy(), y, beta)
    assert lasso_objective(Phi.numpy(), y, fit) == pytest.approx(value, rel=1e-6, abs=1e-9)
    pred = Phi.numpy() @ fit.coef[:, 0].numpy() + float(fit.intercept[0])
    np.testing.assert_allclose(pred, Phi.numpy() @ w_ref + c_ref, atol=1e-4)


def test_path_starts_at_zero_and_matches_cvxpy_at_the_end():
    X = data(8, 2, seed=4)
    y = torch.as_tensor(np.random.default_rng(4).standard_normal(8))
    V, b, _ = W.wedge_neurons(X)
    Phi = W.wedge_features(X, V, b)
    top = W.beta_max(Phi, y[:, None])
    fits = W.lasso_path(Phi, y[:, None], n_penalties=4, penalty_min_ratio=0.1)
    assert [f.beta for f in fits] == sorted((f.beta for f in fits), reverse=True)
    assert fits[0].beta == pytest.approx(top) and float(fits[0].coef.abs().max()) == 0.0
    assert float(W.lasso(Phi, y[:, None], 0.9 * top).coef.abs().max()) > 0
    value, _, _ = lasso_cvxpy(Phi.numpy(), y.numpy(), fits[-1].beta)
    assert lasso_objective(Phi.numpy(), y.numpy(), fits[-1]) == pytest.approx(value, rel=1e-5)


def kkt_violation(Phi, y, fit):
    """Largest violation of the lasso optimality conditions, relative to beta: the
    centered correlations ``g = Phi_c^T r / n`` satisfy ``|g| <= beta`` everywhere and
    ``g = beta sign(w)`` on the support (and the intercept makes ``mean(r) = 0``)."""
    w, c = fit.coef[:, 0].numpy(), float(fit.intercept[0])
    r = y - Phi @ w - c
    g = (Phi - Phi.mean(0)).T @ r / len(y)
    off = np.max(np.abs(g)) - fit.beta
    on = np.abs(g[w != 0] - fit.beta * np.sign(w[w != 0])).max(initial=0.0)
    return max(off, on, abs(r.mean())) / fit.beta


@pytest.mark.parametrize("seed", [8, 9])
def test_every_path_point_converges(seed):
    # small beta on a coherent dictionary is where first-order solvers stalled: every
    # point must reach the gap tolerance, satisfy KKT and match CVXPY's optimum
    X = data(14, 2, seed=seed)
    y = np.sign(np.sin(2 * X[:, 0].numpy()) + X[:, 1].numpy())
    V, b, _ = W.wedge_neurons(X)
    Phi = W.wedge_features(X, V, b)
    fits = W.lasso_path(Phi, torch.as_tensor(y)[:, None], n_penalties=6, penalty_min_ratio=1e-4)
    for fit in fits:
        assert fit.converged and fit.gap <= 1e-7
        assert kkt_violation(Phi.numpy(), y, fit) < 1e-4
        value, _, _ = lasso_cvxpy(Phi.numpy(), y, fit.beta)
        assert lasso_objective(Phi.numpy(), y, fit) == pytest.approx(value, rel=1e-6, abs=1e-12)
    assert fits[-1].coef.count_nonzero() < Phi.shape[1] // 4  # sparse, not interior-dense


def test_unconverged_fit_is_reported():
    X = data(14, 2, seed=8)
    y = torch.as_tensor(np.random.default_rng(8).standard_normal(14))[:, None]
    Phi = W.wedge_features(X, *W.wedge_neurons(X)[:2])
    fit = W.lasso(Phi, y, 1e-4 * W.beta_max(Phi, y), max_iter=1, tol=1e-300)
    assert not fit.converged and fit.gap > 0
    with pytest.raises(ValueError, match="max_iter"):
        W.lasso(Phi, y, 0.1, max_iter=0)


def test_network_reproduces_lasso_predictions():
    X = data(12, 3, seed=5)
    y = torch.relu(X[:, 0] - X[:, 1]) - X[:, 2] ** 2
    model = W.fit_wedge(X, y, 1e-3)
    net = model.network()
    assert net.W.shape[0] == model.active.numel() > 0
    X_new = data(20, 3, seed=6)
    for Z in (X, X_new):
        with torch.no_grad():
            out = net(Z) + model.fit.intercept
        torch.testing.assert_close(out, model.predict(Z), rtol=1e-10, atol=1e-10)


def test_classifier_fits_spiral():
    X, y = W.make_spiral(40, seed=0)
    clf = W.WedgeClassifier(beta=1e-3).fit(X, y)
    assert clf.score(X, y) >= 0.95
    assert clf.coef_.shape[0] < clf.n_dictionary_  # sparse
    assert set(clf.predict(X)) <= {-1.0, 1.0}


def test_regressor_and_multiclass():
    rng = np.random.default_rng(7)
    X = rng.standard_normal((30, 2))
    y = np.abs(X[:, 0]) + 0.5 * X[:, 1]
    reg = W.WedgeRegressor(beta=1e-4).fit(X, y)
    assert reg.score(X, y) > 0.95
    labels = np.digitize(X[:, 0], [-0.5, 0.5])
    clf = W.WedgeClassifier(beta=1e-3).fit(X, labels)
    assert clf.decision_function(X).shape == (30, 3)
    assert clf.score(X, labels) > 0.9


@pytest.mark.parametrize(
    "est",
    [
        W.WedgeRegressor(max_features=20, tol=1e-5),
        W.WedgeClassifier(max_features=20, tol=1e-5),
    ],
)
def test_sklearn_compatible(est):
    failed = [r for r in check_estimator(est, on_fail=None) if r["status"] == "failed"]
    assert failed == []


def test_bad_input():
    with pytest.raises(ValueError, match="A must have shape"):
        W.generalized_cross(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="max_features"):
        W.wedge_neurons(data(5, 2), max_features=1)
    with pytest.raises(ValueError, match="beta"):
        W.WedgeRegressor(beta=-1.0).fit(np.zeros((4, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="n must be"):
        W.make_spiral(1)
