"""The best nonnegative rescaling of a point's groups against the same program in CVXPY."""

import cvxpy as cp
import numpy as np
import pytest
import torch

from mrsolve.solvers.convex_nn import ConvexProgram, add_bias, sample_gates
from mrsolve.solvers.convex_nn.group_scaling import rescale_groups
from mrsolve.solvers.datafit import Quadratic


def _program(kappa, seed, device="cpu", n=50, d=3, P=5, k=2):
    rng = np.random.default_rng(seed)
    X = add_bias(torch.from_numpy(rng.standard_normal((n, d))))
    y = torch.sin(X[:, :k] * 2) + 0.1 * torch.from_numpy(rng.standard_normal((n, k)))
    weights = torch.from_numpy(rng.random(n) + 0.5)
    offset = torch.from_numpy(0.1 * rng.standard_normal((n, k)))
    gates = sample_gates(X, P, seed=seed)
    df = Quadratic(y.to(device), weights.to(device), offset.to(device))
    return ConvexProgram(X.to(device), gates.to(device), kappa, k, df, 0.02)


def _feasible_point(p, rng):
    """Cone programs: nonnegative multiples of each pattern's gate (inside its cone);
    gated ReLU (no cones): arbitrary weights."""
    ghat = p.gates / torch.linalg.vector_norm(p.gates, dim=1, keepdim=True)
    if not p.constrained:
        return torch.from_numpy(rng.standard_normal(p.shape)).to(ghat)
    scale = torch.from_numpy(rng.random(p.shape[:-1])).to(ghat)
    return scale[..., None] * ghat


def _reference(p, u):
    """min_{alpha >= 0} of the objective at alpha * u, by output, in CVXPY."""
    df = p.datafit
    xu = p.project(u)
    if p.constrained:
        cols = torch.cat([xu[:, 0], -xu[:, 1]], -1) * torch.cat([p.weight, p.weight], -1)[:, None]
        norms = torch.cat([p.group_norms(u)[0], p.group_norms(u)[1]], -1)
    else:
        cols, norms = xu * p.weight[:, None], p.group_norms(u)
    w = (df.weights / df.n).numpy()
    out = []
    for c in range(p.n_outputs):
        a = cp.Variable(cols.shape[-1], nonneg=True)
        r = cols[:, c].numpy() @ a + (df.offset[:, c] - df.y[:, c]).numpy()
        obj = 0.5 * cp.sum(cp.multiply(w, cp.square(r))) + p.beta * norms[c].numpy() @ a
        out.append(cp.Problem(cp.Minimize(obj)).solve(solver=cp.CLARABEL))
    return np.array(out)


@pytest.mark.parametrize(("kappa", "seed"), [(0.0, 0), (0.1, 1), (-1.0, 2), (None, 3)])
def test_rescaling_is_the_best_and_stays_feasible(kappa, seed, device):
    p = _program(kappa, seed, device)
    u = _feasible_point(p, np.random.default_rng(seed))
    v, value = rescale_groups(p, u)
    ref = _reference(_program(kappa, seed), u.cpu())
    np.testing.assert_allclose(value.cpu().numpy(), ref, rtol=1e-6)
    assert float(value.sum()) == pytest.approx(p.objective(v), rel=1e-12)
    assert float(value.sum()) < p.objective(u)
    assert p.violation(u) == 0.0
    assert p.violation(v) == 0.0
    ratio = v / u  # every group a nonnegative multiple of itself
    assert bool((ratio >= 0).all())
    torch.testing.assert_close(ratio, ratio[..., :1].expand_as(ratio))
