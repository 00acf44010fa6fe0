"""Proximal maps against closed forms, CVXPY and the Moreau identity."""

import cvxpy as cp
import numpy as np
import pytest
import torch

from mrsolve.solvers.prox import (
    group_soft_threshold,
    project_box,
    project_l2_ball,
    project_nonneg,
    soft_threshold,
)


def test_soft_threshold_matches_cvxpy():
    rng = np.random.default_rng(0)
    v = rng.standard_normal(7)
    z = cp.Variable(7)
    cp.Problem(cp.Minimize(0.3 * cp.norm1(z) + 0.5 * cp.sum_squares(z - v))).solve()
    out = soft_threshold(torch.from_numpy(v), 0.3).numpy()
    np.testing.assert_allclose(out, z.value, atol=1e-6)


def test_soft_threshold_complex_shrinks_modulus():
    x = torch.tensor([3 + 4j, 0.1 + 0j, 0j], dtype=torch.complex128)
    out = soft_threshold(x, 1.0)
    np.testing.assert_allclose(out.numpy(), [(3 + 4j) * 4 / 5, 0, 0], atol=1e-12)


def test_group_soft_threshold_matches_cvxpy_with_group_weights():
    rng = np.random.default_rng(1)
    v = rng.standard_normal((4, 3))
    w = np.array([0.1, 0.5, 2.0, 0.8])
    z = cp.Variable((4, 3))
    pen = cp.sum(cp.multiply(w, cp.norm(z, 2, axis=1)))
    cp.Problem(cp.Minimize(pen + 0.5 * cp.sum_squares(z - v))).solve()
    out = group_soft_threshold(torch.from_numpy(v), torch.from_numpy(w)[:, None], dim=-1)
    np.testing.assert_allclose(out.numpy(), z.value, atol=1e-6)
    assert float(out[2].abs().sum()) == 0.0


def test_moreau_decomposition_group():
    x = torch.randn(5, 4, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    t = 0.7
    recon = group_soft_threshold(x, t) + project_l2_ball(x, t)
    torch.testing.assert_close(recon, x)


def test_projections():
    x = torch.tensor([-2.0, -0.5, 0.3, 4.0])
    torch.testing.assert_close(project_nonneg(x), torch.tensor([0.0, 0.0, 0.3, 4.0]))
    torch.testing.assert_close(project_box(x, -1.0, 1.0), torch.tensor([-1.0, -0.5, 0.3, 1.0]))
    lo = torch.tensor([-3.0, 0.0, 0.5, 0.0])
    torch.testing.assert_close(project_box(x, lo, 2.0), torch.tensor([-2.0, 0.0, 0.5, 2.0]))
    with pytest.raises(ValueError, match="lower"):
        project_box(x, 1.0, -1.0)
