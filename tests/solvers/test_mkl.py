"""Masked kernels, NTK weights and the reweighting to the gated-ReLU group lasso."""

import math

import numpy as np
import pytest
import torch

from mrsolve.solvers.convex_nn import add_bias, enumerate_gates, sample_gates, solve
from mrsolve.solvers.mkl import (
    group_lasso_objective,
    kernel_predict,
    masked_kernel,
    ntk_weights,
    reweight,
)


def _data(n=25, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, 2))
    y = np.sin(2 * X[:, 0]) + X[:, 1] ** 2
    return add_bias(torch.from_numpy(X)), torch.from_numpy(y)


def test_masked_kernel_is_the_sum_of_masked_gram_matrices():
    X, _ = _data(8)
    gates = sample_gates(X, 10, seed=1)
    eta = torch.rand(gates.shape[0], generator=torch.Generator().manual_seed(0)).double()
    K = torch.zeros(8, 8, dtype=torch.float64)
    for i in range(gates.shape[0]):
        Di = torch.diag((X @ gates[i] >= 0).double())
        K += eta[i] * Di @ X @ X.T @ Di
    torch.testing.assert_close(masked_kernel(X, gates, eta), K)
    Z = X[:3] * 1.5
    torch.testing.assert_close(
        kernel_predict(X, gates, eta, torch.eye(8, dtype=torch.float64), Z),
        masked_kernel(X, gates, eta, Z),
    )


def test_ntk_weights_are_cell_angles_in_two_dimensions():
    X = torch.from_numpy(np.random.default_rng(2).standard_normal((6, 2)))
    gates = enumerate_gates(X)
    # exact: a Gaussian direction is uniform in angle; cells lie between the critical
    # angles where some x_j^T h changes sign
    crit = np.sort(
        np.concatenate([np.arctan2(X[:, 1], X[:, 0]) + s * np.pi / 2 for s in (1, -1)])
        % (2 * np.pi)
    )
    widths = np.diff(np.concatenate([crit, [crit[0] + 2 * np.pi]]))
    mids = crit + widths / 2
    H = torch.from_numpy(np.stack([np.cos(mids), np.sin(mids)], 1))
    exact = {}
    for h, w in zip(H, widths, strict=True):
        exact[tuple((X @ h >= 0).tolist())] = w / (2 * math.pi)
    eta = ntk_weights(X, gates, n_samples=200000, seed=0)
    for g, e in zip(gates, eta, strict=True):
        assert abs(float(e) - exact[tuple((X @ g >= 0).tolist())]) < 4e-3
    assert abs(float(eta.sum()) - 1.0) < 1e-12  # the enumeration covers every pattern


def test_reweighting_from_ntk_reaches_group_lasso_optimum():
    X, y = _data()
    gates = sample_gates(X, 16, seed=1)
    beta = 0.01
    res = reweight(X, y, gates, beta, max_iter=1000, tol=1e-13)
    obj = np.array(res.objectives)
    assert np.all(np.diff(obj) <= 1e-12 * obj[1:])  # majorize-minimize: monotone
    ref = solve(
        X[:, :-1].numpy(),
        y.numpy(),
        gates,
        beta,
        activation="gated_relu",
        bias=True,
        solver="cvxpy",
    )
    assert abs(obj[-1] - ref.objective) <= 1e-6 * ref.objective
    assert obj[0] > ref.objective * (1 + 1e-3)  # the NTK kernel alone is not optimal
    D = (X @ gates.T >= 0).double()
    pred = torch.einsum("np,nd,pdk->nk", D, X, res.u)
    torch.testing.assert_close(pred, masked_kernel(X, gates, res.eta) @ res.dual_coef)
    assert abs(group_lasso_objective(X, gates, res.u, y, beta) - obj[-1]) < 1e-12


def test_mkl_errors():
    X, y = _data(5)
    gates = sample_gates(X, 4, seed=0)
    with pytest.raises(ValueError, match="eta"):
        masked_kernel(X, gates, -torch.ones(gates.shape[0], dtype=torch.float64))
    with pytest.raises(ValueError, match="gates"):
        ntk_weights(X, torch.ones(3, 2))
    with pytest.raises(ValueError, match="beta"):
        reweight(X, y, gates, 0.0)
    with pytest.raises(ValueError, match="rows"):
        reweight(X, y[:3], gates, 0.1)


def test_ntk_gates_frequencies_match_the_drawn_patterns():
    from mrsolve.solvers.mkl import ntk_gates

    X, _ = _data(12)
    gates, eta = ntk_gates(X, n_samples=500, seed=3)
    h = torch.randn(
        500, X.shape[1], generator=torch.Generator().manual_seed(3), dtype=torch.float64
    )
    pats = (X @ h.T >= 0).T
    for g, e in zip(gates, eta, strict=True):
        same = (pats == (X @ g >= 0)).all(1).double().mean()
        assert abs(float(same) - float(e)) < 1e-12
    # the Monte Carlo kernel is the average masked Gram matrix over the draws
    K = sum(torch.diag(p.double()) @ X @ X.T @ torch.diag(p.double()) for p in pats) / 500
    torch.testing.assert_close(masked_kernel(X, gates, eta), K)
