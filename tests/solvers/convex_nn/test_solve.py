"""Convex programs against CVXPY, certificates, recovered networks, paths and errors."""

import numpy as np
import pytest
import torch

from mrsolve.solvers.convex_nn import (
    add_bias,
    make_datafit,
    network_objective,
    regularization_path,
    sample_gates,
    solve,
)

ACTS = ["gated_relu", "relu", "leaky_relu", "abs"]
LOSSES = ["squared", "logistic", "multinomial"]


def _problem(loss, n=12, d=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    yr = np.sin(2 * X[:, 0]) + 0.5 * X[:, 1] + 0.1 * rng.standard_normal(n)
    y = {
        "squared": yr,
        "logistic": (yr > 0).astype(int),
        "multinomial": np.digitize(yr, np.quantile(yr, [1 / 3, 2 / 3])),
    }[loss]
    gates = sample_gates(add_bias(torch.from_numpy(X)), 6, seed=seed + 1)
    return X, y, gates


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTS)
def test_objective_matches_cvxpy(activation, loss, device):
    X, y, gates = _problem(loss)
    kw = dict(activation=activation, loss=loss, bias=True)
    ours = solve(X, y, gates, 0.02, tol=1e-9, max_iter=20000, device=device, **kw)
    ref = solve(X, y, gates, 0.02, solver="cvxpy", **kw)
    assert ours.info.converged
    assert abs(ours.objective - ref.objective) <= 1e-5 * abs(ref.objective)
    cert = ours.certificate
    assert cert["constraint_violation"] < 1e-6
    # weak duality holds for the certified lower bound, and it is tight
    assert cert["dual"] <= ref.objective * (1 + 1e-7)
    assert 0 <= cert["duality_gap"] + 1e-9 and cert["relative_gap"] < 1e-5
    assert np.isfinite(cert["pattern_gap"])


@pytest.mark.parametrize("activation", ACTS)
def test_recovered_network_reproduces_predictions_and_objective(activation):
    X, y, gates = _problem("squared", seed=3)
    y2 = np.stack([y, np.cos(y)], axis=1)  # two outputs
    # CVXPY (interior point) for the cones: recovery needs feasibility, not our ADMM
    solver = "fista" if activation == "gated_relu" else "cvxpy"
    sol = solve(X, y2, gates, 0.01, activation=activation, bias=True, solver=solver, tol=1e-9)
    net = sol.to_torch()
    Xt = torch.from_numpy(X)
    Xa = add_bias(Xt)
    D = (Xa @ sol.gates.T >= 0).double()
    u = sol.weights
    if sol.kappa is None:
        convex = torch.einsum("np,nd,kpd->nk", D, Xa, u)
    else:
        M = D + sol.kappa * (1 - D)
        convex = torch.einsum("np,nd,kpd->nk", M, Xa, u[0] - u[1])
    with torch.no_grad():
        torch.testing.assert_close(net(Xt), convex, atol=1e-6, rtol=1e-6)
        df = make_datafit("squared", torch.from_numpy(y2), torch.float64)
        nobj = float(network_objective(net, Xt, df, 0.01))
    assert abs(nobj - sol.objective) <= 1e-6 * sol.objective
    assert net.W.shape[0] == int((torch.linalg.vector_norm(u, dim=-1) > 0).sum())
    np.testing.assert_allclose(sol.decision_function(X), net(Xt).detach().numpy())


def test_regularization_path_is_warm_started_and_exact():
    X, y, gates = _problem("squared", seed=5)
    betas = [0.1, 0.03, 0.01]
    kw = dict(activation="gated_relu", loss="logistic", bias=True)
    y = (y > 0).astype(int)
    path = regularization_path(X, y, gates, penalties=betas, tol=1e-10, **kw)
    assert [s.beta for s in path] == sorted(betas, reverse=True)
    for s in path:
        ref = solve(X, y, gates, s.beta, solver="cvxpy", **kw)
        assert abs(s.objective - ref.objective) <= 1e-5 * ref.objective
    norms = [float(torch.linalg.vector_norm(s.weights, dim=-1).sum()) for s in path]
    assert norms == sorted(norms)  # less weight decay, larger weights


def test_exact_enumeration_beats_adam():
    """Rank-2 data (1-D inputs with bias): the enumerated program is the full one, so its
    optimum lower-bounds every non-convex network of any width."""
    from mrsolve.solvers.convex_nn import TwoLayerNet, enumerate_gates

    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-2, 2, 10))[:, None]
    y = np.abs(x[:, 0]) - 0.6 + 0.2 * np.sin(5 * x[:, 0])
    beta = 0.01
    Xt = torch.from_numpy(x)
    gates = enumerate_gates(add_bias(Xt))
    sol = solve(x, y, gates, beta, activation="relu", bias=True, solver="cvxpy")
    assert sol.certificate["relative_gap"] < 1e-6
    df = make_datafit("squared", torch.from_numpy(y), torch.float64)
    best = np.inf
    for seed in range(6):
        net = TwoLayerNet.random(1, 20, seed=seed)
        opt = torch.optim.Adam(net.parameters(), lr=0.02)
        for _ in range(800):
            opt.zero_grad()
            obj = network_objective(net, Xt, df, beta)
            obj.backward()
            opt.step()
        with torch.no_grad():
            best = min(best, float(network_objective(net, Xt, df, beta)))
    assert sol.objective <= best + 1e-7
    # and the recovered network attains the convex optimum exactly
    with torch.no_grad():
        assert abs(float(network_objective(sol.to_torch(), Xt, df, beta)) - sol.objective) < 1e-8


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(beta=-1.0), "beta"),
        (dict(activation="tanh"), "activation"),
        (dict(loss="hinge"), "loss"),
        (dict(solver="newton"), "solver"),
        (dict(gates=np.ones((3, 5))), "gates"),
        (dict(X=np.full((12, 2), np.nan)), "X must be finite"),
        (dict(y=np.ones(5)), "y must have shape"),
        (dict(X=np.ones(12)), "X must have shape"),
        (dict(loss="logistic"), "0/1 labels"),
        (dict(activation="relu", solver="fista"), "fista"),
        (dict(activation="gated_relu", solver="admm"), "admm"),
    ],
)
def test_bad_input_raises(kwargs, match):
    X, y, gates = _problem("squared")
    args = dict(X=X, y=y, gates=gates, beta=0.1, bias=True) | kwargs
    with pytest.raises(ValueError, match=match):
        solve(**args)


def test_the_registry_says_what_each_solver_handles():
    from mrsolve.solvers.convex_nn import SOLVERS

    assert set(SOLVERS) == {"fista", "ipm", "admm", "cvxpy"}
    X = torch.randn(12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    gates = sample_gates(X, 4, seed=0)
    for name, activation in (("fista", "relu"), ("ipm", "gated_relu"), ("admm", "gated_relu")):
        with pytest.raises(ValueError, match=f"solver '{name}' handles"):
            solve(X, X[:, 0], gates, 0.1, activation=activation, solver=name)
    with pytest.raises(ValueError, match="solver must be one of"):
        solve(X, X[:, 0], gates, 0.1, solver="sgd")


def test_default_path_starts_where_the_zero_network_stops_being_optimal():
    from mrsolve.solvers.convex_nn import regularization_path

    g = torch.Generator().manual_seed(3)
    X = torch.randn(30, 3, generator=g, dtype=torch.float64)
    y = X[:, 0].clamp_min(0) - 0.5 * X[:, 1]
    gates = sample_gates(X, 8, seed=1)
    path = regularization_path(
        X, y, gates, n_penalties=3, penalty_min_ratio=0.5, activation="gated_relu", tol=1e-10
    )
    assert [s.beta for s in path] == pytest.approx([path[0].beta * r for r in (1, 0.5**0.5, 0.5)])
    # zero at the top (the group-lasso optimality condition ||F_g^T grad L(0)|| <= beta),
    # up to the rounding of the one group at the boundary
    assert float(path[0].weights.abs().max()) < 1e-12
    assert float(path[-1].weights.abs().max()) > 0.0
    scaled = regularization_path(
        X, y, gates, penalties=[0.99 * path[0].beta], activation="gated_relu"
    )
    assert float(scaled[0].weights.abs().max()) > 0.0  # just below the top the fit is not zero
