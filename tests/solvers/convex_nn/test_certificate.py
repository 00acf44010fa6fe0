"""The scaled dual bound: weak duality at arbitrary points against CVXPY's optimum, and
tightness at the optimum; the fresh patterns' norms against non-negative least squares."""

import numpy as np
import pytest
import torch
from scipy.optimize import nnls

from mrsolve.solvers.convex_nn import ConvexProgram, add_bias, make_datafit, sample_gates, solve
from mrsolve.solvers.convex_nn.certificate import (
    _fresh_norms,
    dual_bounds,
    dual_objective,
    scaled_dual,
    subspace_dual,
)
from mrsolve.solvers.convex_nn.fista_solver import solve_fista


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


@pytest.mark.parametrize("k", [1, 2])
def test_subspace_dual_is_a_lower_bound_and_tighter_than_the_scaled_residual(k):
    """On a wide design (n ~ 2 d), from FISTA iterates at a certified gap of 3e-2: the bound
    from the span of the last 8 gradients stays below CVXPY's optimum and closes at least
    a third of the scaled newest residual's gap (about half in docs/convex_nn_design.md)."""
    rng = np.random.default_rng(6)
    X = rng.standard_normal((40, 19))
    y = X[:, :4] @ rng.standard_normal((4, k)) + 0.3 * rng.standard_normal((40, k))
    Xa = add_bias(torch.from_numpy(X))
    gates = sample_gates(Xa, 12, seed=3)
    beta = 1e-3 * k
    ref = solve(X, y, gates, beta, activation="gated_relu", bias=True, solver="cvxpy")
    df = make_datafit("squared", torch.from_numpy(y), torch.float64)
    p = ConvexProgram(Xa, gates, None, k, df, beta)
    xs = []
    solve_fista(p, None, 100000, 3e-2, callback=lambda i, x: xs.append(x) if i % 5 == 0 else 0)
    etas = torch.stack([p.forward(x) for x in xs[-8:]])
    grads = torch.stack([p.adjoint(df.grad(e)) for e in etas])
    sub = float(subspace_dual(df, etas, grads, beta).sum())
    newest = float(dual_bounds(df, etas[-1], p.group_norms(grads[-1]), beta).sum())
    assert sub <= ref.objective * (1 + 1e-9)
    assert ref.objective - sub <= (2 / 3) * (ref.objective - newest)


def test_fresh_pattern_bounds_are_upper_bounds_near_the_exact_norms():
    """The fresh patterns' norms ``min_{mu >= 0} ||X^T M theta - X^T S mu||``, refined only
    where they are largest: each an upper bound on the exact value (non-negative least
    squares, scipy), and their maximum, the reported pattern gap, within 1 % of the exact
    maximum."""
    rng = np.random.default_rng(5)
    X = add_bias(torch.from_numpy(rng.standard_normal((60, 3))))
    theta = torch.from_numpy(rng.standard_normal((60, 2)))
    D = (X @ sample_gates(X, 16, seed=6).T >= 0).to(torch.float64)
    bounds = _fresh_norms(X, D, D, True, theta, 200)  # (2, k, Q)
    S = (2 * D - 1).numpy()
    exact = np.empty(bounds.shape)
    for q in range(D.shape[1]):
        A = X.numpy().T * S[:, q]  # columns s_i x_i
        for c in range(2):
            g = X.numpy().T @ (D[:, q].numpy() * theta[:, c].numpy())
            for j, sign in enumerate((1.0, -1.0)):
                exact[j, c, q] = nnls(A, sign * g)[1]
    assert bool((bounds.numpy() >= exact - 1e-9).all())
    assert bounds.max().item() == pytest.approx(exact.max(), rel=1e-2)
