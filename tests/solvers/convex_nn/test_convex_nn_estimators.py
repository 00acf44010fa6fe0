"""scikit-learn estimators: check_estimator, agreement with solve, errors."""

import numpy as np
import pytest
import torch
from sklearn.base import clone
from sklearn.utils.estimator_checks import check_estimator

from mrsolve.solvers.convex_nn import ConvexNNClassifier, ConvexNNRegressor, solve


@pytest.mark.parametrize("cls", [ConvexNNRegressor, ConvexNNClassifier])
def test_check_estimator(cls):
    check_estimator(cls(activation="gated_relu", n_gates=16, max_iter=300, tol=1e-5))


def test_regressor_matches_solve_and_exposes_certificate():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((30, 3))
    y = np.maximum(X[:, 0], 0) - X[:, 1]
    est = ConvexNNRegressor(activation="relu", n_gates=10, beta=0.01, tol=1e-8, random_state=0)
    est.fit(X, y)
    ref = solve(X, y, est.gates_, 0.01, activation="relu", bias=True, solver="cvxpy")
    assert abs(est.objective_ - ref.objective) <= 1e-5 * ref.objective
    assert set(est.certificate_) >= {"duality_gap", "constraint_violation", "pattern_gap"}
    with torch.no_grad():
        net_pred = est.to_torch()(torch.from_numpy(X))[:, 0].numpy()
    np.testing.assert_allclose(est.predict(X), net_pred)
    assert est.score(X, y) > 0.9
    est2 = clone(est).fit(X, np.stack([y, -y], 1))
    assert est2.predict(X).shape == (30, 2)


def test_classifier_three_classes_probabilities():
    rng = np.random.default_rng(1)
    X = rng.standard_normal((45, 2))
    y = np.array(["a", "b", "c"])[np.argmax(np.stack([X[:, 0], X[:, 1], -X.sum(1)], 1), 1)]
    est = ConvexNNClassifier(
        activation="gated_relu", n_gates=8, beta=1e-3, tol=1e-9, random_state=0
    )
    est.fit(X, y)
    codes = np.unique(y, return_inverse=True)[1]
    kw = dict(activation="gated_relu", loss="multinomial", bias=True, solver="cvxpy")
    ref = solve(X, codes, est.gates_, 1e-3, **kw)
    assert abs(est.objective_ - ref.objective) <= 1e-5 * ref.objective
    proba = est.predict_proba(X)
    np.testing.assert_allclose(proba.sum(1), 1.0)
    assert list(est.classes_) == ["a", "b", "c"]
    assert (est.predict(X) == y).mean() > 0.8


@pytest.mark.parametrize(
    ("params", "match"),
    [(dict(beta=-0.1), "beta"), (dict(activation="sigmoid"), "activation")],
)
def test_estimator_bad_parameters(params, match):
    X = np.random.default_rng(0).standard_normal((10, 2))
    with pytest.raises(ValueError, match=match):
        ConvexNNRegressor(**params).fit(X, X[:, 0])
    with pytest.raises(ValueError, match=r"NaN|infinity"):
        ConvexNNRegressor().fit(np.full((10, 2), np.nan), X[:, 0])


@pytest.mark.parametrize(("activation", "tol"), [("gated_relu", 1e-2), ("relu", 1e-3)])
def test_default_tol_certifies_its_gap_against_cvxpy(activation, tol):
    # tol=None: a certified relative gap of 1e-2 (gated, FISTA) / 1e-3 (ReLU, IPM)
    rng = np.random.default_rng(3)
    X = rng.standard_normal((60, 4))
    y = np.abs(X[:, 0]) - np.maximum(X[:, 1], 0)
    est = ConvexNNRegressor(activation=activation, n_gates=12, beta=1e-2, random_state=0)
    est.fit(X, y)
    assert est.tol is None
    ref = solve(X, y, est.gates_, 1e-2, activation=activation, bias=True, solver="cvxpy")
    gap = (est.objective_ - ref.objective) / ref.objective
    assert -1e-6 <= gap <= tol
    assert est.certificate_["relative_gap"] <= tol * 1.2  # the final iterate's own bound
    assert est.certificate_["relative_gap"] >= gap - 1e-6  # a certificate bounds the gap
