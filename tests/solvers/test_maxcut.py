"""Max-Cut rounding for ReLU training: exactness, certificates, bounds, generators."""

import itertools
import math

import numpy as np
import pytest
import torch

from mrsolve.solvers import convex_nn as cnn
from mrsolve.solvers import maxcut as mc
from mrsolve.solvers.convex_nn.network import TwoLayerNet, network_objective


def global_optimum(X, y, beta, bias=False):
    """p* by exhaustive enumeration of every activation pattern, solved by CVXPY."""
    Xt = torch.as_tensor(X)
    Xa = cnn.add_bias(Xt) if bias else Xt
    gates = cnn.enumerate_gates(Xa)
    return cnn.solve(X, y, gates, beta, solver="cvxpy", bias=bias, certify=False).objective


@pytest.mark.parametrize(("seed", "d"), [(0, 2), (1, 3), (2, 2)])
def test_orthogonal_exact_matches_enumeration(seed, d):
    X, y = mc.make_dataset("orthogonal", 8, d, seed=seed)
    sol = mc.solve_orthogonal(X, y, 0.2, solver="cvxpy")
    assert sol.exact
    assert sol.n_patterns == 2
    p_star = global_optimum(X, y, 0.2)
    assert sol.objective == pytest.approx(p_star, rel=1e-6)
    assert sol.ratio == pytest.approx(1.0, abs=1e-6)


def test_orthogonal_small_beta_is_reported_inexact():
    # at small beta the two-pattern network overshoots labels and is not optimal: the
    # closed-form test must say so, and the certificate must stay valid
    X, y = mc.make_dataset("orthogonal", 8, 3, seed=0)
    sol = mc.solve_orthogonal(X, y, 0.01, solver="cvxpy")
    p_star = global_optimum(X, y, 0.01)
    assert not sol.exact
    assert sol.objective > p_star * 1.1
    assert sol.lower_bound <= p_star * (1 + 1e-6)


@pytest.mark.parametrize("kind", mc.CLASSES)
def test_ratio_and_lower_bound_valid(kind):
    X, y = mc.make_dataset(kind, 10, 2, seed=3)
    beta = 0.05
    sol = mc.solve(X, y, beta, n_hyperplanes=6, n_rounds=1, bound="both", solver="cvxpy")
    assert sol.ratio >= 1 - 1e-6
    p_star = global_optimum(X, y, beta)
    assert sol.objective >= p_star * (1 - 1e-6)
    for L in sol.bounds.values():
        assert L <= p_star * (1 + 1e-6)
    # below every feasible objective: random ReLU networks too
    datafit = cnn.make_datafit("squared", torch.as_tensor(y), torch.float64)
    for s in range(3):
        net = TwoLayerNet.random(2, 5, bias=False, seed=s)
        value = float(network_objective(net, torch.as_tensor(X), datafit, beta).detach())
        assert sol.lower_bound <= value
    # the reported objective is that of the returned network
    net = sol.to_torch()
    value = float(network_objective(net, torch.as_tensor(X), datafit, beta).detach())
    assert sol.objective == pytest.approx(value, rel=1e-12)
    assert sol.bounds["arrangement"] >= sol.bounds["relaxation"] - 1e-9  # exact is tighter


def test_default_solver_and_bias():
    X, y = mc.make_dataset("general", 8, 2, seed=4)
    sol = mc.solve(
        X, y, 0.1, n_hyperplanes=8, n_rounds=0, bias=True, bound="both", sdp="burer_monteiro"
    )
    assert sol.ratio >= 1
    assert sol.lower_bound <= global_optimum(X, y, 0.1, bias=True) * (1 + 1e-6)
    out = sol.decision_function(X)
    assert isinstance(out, np.ndarray) and out.shape == (8,)
    sol_t = mc.solve(torch.as_tensor(X), torch.as_tensor(y), 0.1, n_hyperplanes=8, n_rounds=0)
    assert isinstance(sol_t.decision_function(torch.as_tensor(X)), torch.Tensor)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_negative_correlation_ratio_within_sqrt_pi_over_2(seed):
    X, y = mc.make_dataset("negative", 10, 2, seed=seed)
    beta = 0.05
    sol = mc.solve(X, y, beta, n_hyperplanes=10, n_rounds=1, solver="cvxpy", seed=seed)
    assert sol.objective / global_optimum(X, y, beta) <= math.sqrt(math.pi / 2)


@pytest.mark.parametrize("seed", [0, 1])
def test_negative_correlation_relaxation_within_sqrt_pi_over_2(seed):
    # for a dual point with the class signs, C(theta) is a PSD Max-Cut on each class and
    # the SDP overestimates it by at most sqrt(pi / 2) (Nesterov's pi/2 theorem)
    X, y = mc.make_dataset("negative", 9, 2, seed=seed)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    theta = -yt * torch.as_tensor(np.random.default_rng(seed).random(9))
    exact = mc.arrangement_bound(Xt, theta)
    relaxed, _ = mc.relaxation_bound(Xt, theta, "cvxpy")
    assert exact * (1 - 1e-6) <= relaxed <= math.sqrt(math.pi / 2) * exact


def test_gw_cuts_reach_two_over_pi_of_sdp():
    rng = np.random.default_rng(3)
    X, a = rng.standard_normal((8, 3)), rng.random(8)
    B, Z = mc.maxcut_bound(torch.as_tensor(X), torch.as_tensor(a), "cvxpy", n_cuts=400, seed=1)
    mean_cut = np.mean([np.linalg.norm(X.T @ (a * z)) ** 2 for z in Z])
    assert mean_cut >= 2 / math.pi * B**2 * 0.95  # Monte Carlo slack


def brute_maxcut(X, a):
    return max(
        np.linalg.norm(X.T @ (a * np.array(z)))
        for z in itertools.product([0.0, 1.0], repeat=len(a))
    )


@pytest.mark.parametrize("method", ["cvxpy", "burer_monteiro"])
def test_maxcut_bound_above_brute_force(method):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((9, 3))
    a = np.abs(rng.standard_normal(9))
    a[2] = 0.0
    B, Z = mc.maxcut_bound(torch.as_tensor(X), torch.as_tensor(a), method, n_cuts=5)
    exact = brute_maxcut(X, a)
    assert exact <= B * (1 + 1e-9)
    assert B <= 1.5 * exact  # the SDP relaxation is not vacuous
    assert Z.shape == (5, 9) and set(np.unique(Z)) <= {0.0, 1.0} and np.all(Z[:, 2] == 0)
    # every GW cut is feasible, so its value is at most the optimum
    assert all(np.linalg.norm(X.T @ (a * z)) <= exact + 1e-12 for z in Z)


def test_sdp_methods_agree():
    rng = np.random.default_rng(1)
    X, a = torch.as_tensor(rng.standard_normal((8, 2))), torch.as_tensor(rng.random(8))
    b_cvx, _ = mc.maxcut_bound(X, a, "cvxpy")
    b_bm, _ = mc.maxcut_bound(X, a, "burer_monteiro")
    assert b_bm == pytest.approx(b_cvx, rel=1e-3)


def test_arrangement_bound_matches_dense_search():
    rng = np.random.default_rng(2)
    X = torch.as_tensor(rng.standard_normal((7, 2)))
    theta = torch.as_tensor(rng.standard_normal(7))
    angles = torch.linspace(0, 2 * math.pi, 20001, dtype=torch.float64)
    U = torch.stack([angles.cos(), angles.sin()], 1)
    dense = float((torch.relu(X @ U.T).T @ theta).abs().max())
    B = mc.arrangement_bound(X, theta)
    assert dense <= B * (1 + 1e-9)
    assert B == pytest.approx(dense, rel=1e-4)


def test_orthogonal_bound_is_exact_for_class_signed_theta():
    X, y = mc.make_dataset("orthogonal", 7, 2, seed=5)
    Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
    theta = -yt * torch.as_tensor(np.random.default_rng(0).random(7))
    assert mc.bounds.orthogonal_bound(Xt, yt, theta) == pytest.approx(
        mc.arrangement_bound(Xt, theta), rel=1e-6
    )


@pytest.mark.parametrize("kind", mc.CLASSES)
def test_generators(kind):
    X, y = mc.make_dataset(kind, 12, 3, seed=7)
    assert X.shape == (12, 3) and set(np.unique(y)) == {-1.0, 1.0}
    assert mc.dataset_class(X, y) == kind
    assert (mc.geometric_factor(X, y) == 0.0) == (kind != "general")
    X2, _ = mc.make_dataset(kind, 12, 3, seed=7)
    np.testing.assert_array_equal(X, X2)


@pytest.mark.parametrize("angle", [0.3, 1.2, 2.0])
def test_our_geometric_factor_closed_form(angle):
    # our proxy (not the paper's factor): the largest cross-class cosine, clipped at 0;
    # same-class pairs do not count and scaling a sample does not change it
    X = np.array([[2.0, 0.0], [math.cos(angle), math.sin(angle)], [0.0, -3.0], [-1.0, 0.0]])
    y = np.array([1.0, -1.0, 1.0, 1.0])
    cross = [math.cos(angle), math.cos(angle + math.pi / 2), math.cos(math.pi - angle)]
    assert mc.geometric_factor(X, y) == pytest.approx(max(0.0, *cross), abs=1e-12)
    X[1] *= 5.0
    assert mc.geometric_factor(X, y) == pytest.approx(max(0.0, *cross), abs=1e-12)


def test_bad_input():
    X, y = mc.make_dataset("general", 6, 2, seed=0)
    with pytest.raises(ValueError, match="beta"):
        mc.solve(X, y, -1.0)
    with pytest.raises(ValueError, match="y must have shape"):
        mc.solve(X, y[:3], 0.1)
    with pytest.raises(ValueError, match="bound"):
        mc.solve(X, y, 0.1, bound="nope")
    with pytest.raises(ValueError, match="n_hyperplanes"):
        mc.solve(X, y, 0.1, n_hyperplanes=0)
    with pytest.raises(ValueError, match="orthogonally separable"):
        mc.solve_orthogonal(X, y, 0.1)
    with pytest.raises(ValueError, match="kind"):
        mc.make_dataset("spiral", 6)
    with pytest.raises(TypeError, match="seed"):
        mc.make_dataset("general", 6, seed=1.5)
