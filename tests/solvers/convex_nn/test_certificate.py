"""The scaled dual bound: weak duality at arbitrary points against CVXPY's optimum, and
tightness at the optimum."""

import numpy as np
import pytest
import torch

from mrsolve.solvers.convex_nn import ConvexProgram, add_bias, make_datafit, sample_gates, solve
from mrsolve.solvers.convex_nn.certificate import dual_objective, scaled_dual


@pytest.mark.parametrize("loss", ["squared", "squared_3_outputs", "logistic", "multinomial"])
def test_scaled_dual_is_a_lower_bound_everywhere_and_tight_at_the_optimum(loss):
    """Three outputs of the squared loss: each scaled on its own (a separate program), and
    the sum of their bounds is at least the bound of one scale for all."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((30, 2))
    yr = np.cos(2 * X[:, 0]) - X[:, 1]
    y = {
        "squared": yr,
        "squared_3_outputs": np.stack([yr, 3 * X[:, 0], 0.1 * np.sin(X[:, 1])], 1),
        "logistic": (yr > 0).astype(int),
        "multinomial": np.digitize(yr, np.quantile(yr, [1 / 3, 2 / 3])),
    }[loss]
    loss = loss.removesuffix("_3_outputs")
    Xa = add_bias(torch.from_numpy(X))
    gates = sample_gates(Xa, 5, seed=2)
    beta = 0.02
    ref = solve(X, y, gates, beta, activation="gated_relu", loss=loss, bias=True, solver="cvxpy")
    df = make_datafit(loss, torch.from_numpy(y), torch.float64)
    p = ConvexProgram(Xa, gates, None, df.y.shape[1], df, beta)

    def dual_at(u):
        eta = p.forward(u)
        return scaled_dual(df, eta, p.group_norms(p.adjoint(df.grad(eta))), beta)

    def one_scale(u):
        eta = p.forward(u)
        worst = float(p.group_norms(p.adjoint(df.grad(eta))).max())
        return dual_objective(df, eta, min(1.0, beta / worst))

    for scale in (0.0, 0.3, 3.0):  # zero, random small and random large points
        u = scale * torch.from_numpy(rng.standard_normal(p.shape))
        assert one_scale(u) - 1e-12 <= dual_at(u) <= ref.objective * (1 + 1e-8) + 1e-12
    # near the optimum (FISTA to a 1e-10 gap) the bound meets CVXPY's optimum
    ours = solve(X, y, gates, beta, activation="gated_relu", loss=loss, bias=True, tol=1e-10)
    at_opt = dual_at(ours.weights)
    assert at_opt <= ref.objective * (1 + 1e-8)
    assert ref.objective - at_opt <= 1e-6 * ref.objective
