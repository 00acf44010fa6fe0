"""Sampling targets: densities, gradients and proximal steps against numpy/scipy references."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.optimize
import torch

from mrsolve.solvers.sampling import (
    BayesianLinearRegression,
    BayesianLogisticRegression,
    LocalDensities,
)


def _linear_data(rng, n_agents=3, m=20, d=3):
    X = [rng.normal(size=(m, d)) for _ in range(n_agents)]
    y = [Xi @ rng.normal(size=d) + rng.normal(0, 2, m) for Xi in X]
    return X, y


def _logistic_data(rng, sizes=(15, 25), d=3):
    X = [rng.normal(size=(m, d)) for m in sizes]
    y = [
        (rng.random(m) < 1 / (1 + np.exp(-Xi @ np.array([1.0, -2.0, 0.5])))).astype(float)
        for m, Xi in zip(sizes, X, strict=True)
    ]
    return X, y


def test_linear_density_and_posterior_match_numpy():
    rng = np.random.default_rng(0)
    X, y = _linear_data(rng)
    T = BayesianLinearRegression(X, y, noise_sd=2.0, prior_var=5.0, dtype=torch.float64)
    x = rng.normal(size=(3, 4, 3))
    f = T.neg_log_density(torch.as_tensor(x)).numpy()
    for i in range(3):
        ref = ((y[i][None] - x[i] @ X[i].T) ** 2).sum(1) / 8 + (x[i] ** 2).sum(1) / (2 * 5 * 3)
        np.testing.assert_allclose(f[i], ref, rtol=1e-12)
    # Posterior of the pooled data, computed directly.
    Xa, ya = np.vstack(X), np.concatenate(y)
    prec = Xa.T @ Xa / 4 + np.eye(3) / 5
    mean, cov = T.posterior()
    assert isinstance(mean, np.ndarray)  # numpy in, numpy out
    np.testing.assert_allclose(cov, np.linalg.inv(prec), rtol=1e-10)
    np.testing.assert_allclose(mean, np.linalg.solve(prec, Xa.T @ ya / 4), rtol=1e-10)


@pytest.mark.parametrize("family", ["linear", "logistic"])
def test_gradient_matches_finite_differences(family):
    rng = np.random.default_rng(1)
    if family == "linear":
        T = BayesianLinearRegression(*_linear_data(rng), 2.0, 5.0, dtype=torch.float64)
    else:
        T = BayesianLogisticRegression(*_logistic_data(rng), 5.0, dtype=torch.float64)
    x0 = rng.normal(size=(T.n_agents, 1, 3))
    for i in range(T.n_agents):

        def f(z, i=i):
            x = np.repeat(x0, 1, 0).copy()
            x[i, 0] = z
            return float(T.neg_log_density(torch.as_tensor(x))[i, 0])

        def g(z, i=i):
            x = x0.copy()
            x[i, 0] = z
            return T.grad(torch.as_tensor(x))[i, 0].numpy()

        assert scipy.optimize.check_grad(f, g, x0[i, 0]) < 1e-5


def test_logistic_density_matches_numpy_with_unequal_agents():
    rng = np.random.default_rng(2)
    X, y = _logistic_data(rng, sizes=(7, 30))
    T = BayesianLogisticRegression(X, y, prior_var=3.0, dtype=torch.float64)
    x = rng.normal(size=(2, 5, 3))
    f = T.neg_log_density(torch.as_tensor(x)).numpy()
    for i in range(2):
        z = x[i] @ X[i].T
        ref = (np.logaddexp(0, z) - y[i] * z).sum(1) + (x[i] ** 2).sum(1) / (2 * 3 * 2)
        np.testing.assert_allclose(f[i], ref, rtol=1e-12)


@pytest.mark.parametrize("family", ["linear", "logistic"])
def test_prox_matches_scipy_minimize(family):
    rng = np.random.default_rng(3)
    if family == "linear":
        T = BayesianLinearRegression(*_linear_data(rng, n_agents=2), 2.0, 5.0, dtype=torch.float64)
    else:
        T = BayesianLogisticRegression(*_logistic_data(rng), 5.0, dtype=torch.float64)
    v, p = rng.normal(size=(2, 3, 3)) * 2, rng.normal(size=(2, 3, 3)) * 3
    tau = np.array([0.0, 7.5])  # tau = 0 is the agent without neighbours
    out = T.prox(
        *(torch.as_tensor(a) for a in (v, p, tau)), torch.zeros(2, 3, 3, dtype=torch.float64)
    )
    for i in range(2):
        for c in range(3):

            def obj(z, i=i, c=c):
                x = np.zeros((2, 1, 3))
                x[i, 0] = z
                fi = float(T.neg_log_density(torch.as_tensor(x))[i, 0])
                return fi + p[i, c] @ z + 0.5 * tau[i] * ((z - v[i, c]) ** 2).sum()

            ref = scipy.optimize.minimize(obj, np.zeros(3), method="BFGS", options={"gtol": 1e-9}).x
            np.testing.assert_allclose(out[i, c].numpy(), ref, atol=1e-5)


def test_local_densities_agree_with_linear_closed_form():
    rng = np.random.default_rng(4)
    X, y = _linear_data(rng, n_agents=2)
    T = BayesianLinearRegression(X, y, 2.0, 5.0, dtype=torch.float64)
    fns = [
        lambda x, A=T.A[i], b=T.b[i], c=T.c[i]: 0.5 * ((x @ A) * x).sum(-1) - x @ b + c
        for i in range(2)
    ]
    L = LocalDensities(fns, dim=3, dtype=torch.float64)
    x = torch.as_tensor(rng.normal(size=(2, 4, 3)))
    v, p = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    tau = torch.tensor([1.0, 4.0], dtype=torch.float64)
    torch.testing.assert_close(L.neg_log_density(x), T.neg_log_density(x))
    torch.testing.assert_close(L.grad(x), T.grad(x))
    torch.testing.assert_close(L.prox(v, p, tau, x), T.prox(v, p, tau, x))


def test_local_holds_one_agents_data_only():
    rng = np.random.default_rng(5)
    X, y = _logistic_data(rng, sizes=(7, 30))
    T = BayesianLogisticRegression(X, y, prior_var=3.0, dtype=torch.float64)
    x = torch.as_tensor(rng.normal(size=(2, 4, 3)))
    loc = T.local(0)
    assert loc.n_agents == 1 and loc.features.shape == (1, 7, 3)
    torch.testing.assert_close(loc.neg_log_density(x[:1]), T.neg_log_density(x)[:1])
    torch.testing.assert_close(loc.grad(x[:1]), T.grad(x)[:1])
    with pytest.raises(ValueError, match="agent"):
        T.local(2)


def test_bad_inputs_raise_clear_errors():
    rng = np.random.default_rng(6)
    X, y = _linear_data(rng, n_agents=2)
    with pytest.raises(ValueError, match="noise_sd"):
        BayesianLinearRegression(X, y, 0.0, 1.0)
    with pytest.raises(ValueError, match=r"y_parts\[1\]"):
        BayesianLinearRegression(X, [y[0], y[1][:-1]], 1.0, 1.0)
    with pytest.raises(ValueError, match="same length"):
        BayesianLinearRegression(X, y[:1], 1.0, 1.0)
    with pytest.raises(TypeError, match="one array per agent"):
        BayesianLinearRegression(X[0], y[0], 1.0, 1.0)
    with pytest.raises(ValueError, match=r"\{0, 1\}"):
        BayesianLogisticRegression(X, y, 1.0)
    with pytest.raises(ValueError, match="finite"):
        BayesianLinearRegression([np.full((3, 2), np.nan)], [np.zeros(3)], 1.0, 1.0)
    L = LocalDensities([lambda x: x.sum()], dim=2)
    with pytest.raises(ValueError, match="shape"):
        L.neg_log_density(torch.zeros(1, 3, 2))
