import math

import numpy as np
import pytest
import torch
from matplotlib.path import Path

from mrsolve.propeller.density import (
    blade_frames,
    density_compensation,
    pipe_menon_dcf,
    propeller_dcf,
)
from mrsolve.propeller.dft import DFT
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.nufft import NUFFT


def union_area(geometry: BladeGeometry, keep=None) -> float:
    """Area of the union of the blade rectangles, by counting points of a fine grid
    inside any rectangle (matplotlib's point-in-polygon, independent of our code)."""
    n, half_l = geometry.matrix_size, geometry.n_lines / 2
    half_m = geometry.n_readout / (2 * geometry.oversampling)
    step = 1 / geometry.oversampling
    # rectangle in the blade frame: readout [-half_m - step/2, half_m - step/2], lines likewise
    u0, u1 = -half_m - step / 2, half_m - step / 2
    v0, v1 = -half_l - 0.5, half_l - 0.5
    spacing = 0.1
    axis = np.arange(-n, n, spacing) + spacing / 2
    gx, gy = np.meshgrid(axis, axis)
    points = np.stack([gx.ravel(), gy.ravel()], axis=-1)
    inside = np.zeros(len(points), dtype=bool)
    for b, theta in enumerate(geometry.angles().tolist()):
        if keep is not None and not keep[b]:
            continue
        c, s = math.cos(theta), math.sin(theta)
        corners = [(u, v) for u, v in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))]
        poly = [(u * c - v * s, u * s + v * c) for u, v in corners]
        inside |= Path(poly).contains_points(points)
    return float(inside.sum() * spacing**2)


def test_pipe_menon_on_full_cartesian_grid_is_one():
    n = 12
    ky, kx = torch.meshgrid(torch.arange(n) - n // 2.0, torch.arange(n) - n // 2.0, indexing="ij")
    traj = torch.stack([kx, ky], dim=-1)
    w = pipe_menon_dcf(traj, (n, n), operator=DFT)
    torch.testing.assert_close(w, torch.ones(n, n), atol=1e-4, rtol=0)
    assert abs(float(w.sum()) - n * n) < 1e-2


@pytest.mark.parametrize("oversampling", [1.0, 2.0])
def test_dcf_integrates_to_the_sampled_area(oversampling):
    geom = BladeGeometry(n_blades=8, n_lines=8, matrix_size=32, oversampling=oversampling)
    traj = geom.trajectory()
    area = union_area(geom)
    analytic = propeller_dcf(traj)
    assert abs(float(analytic.sum()) / area - 1) < 0.01
    iterative = pipe_menon_dcf(traj, (32, 32), operator=NUFFT)
    # Pipe-Menon inflates the weights at the rim (half the kernel sees no samples)
    assert abs(float(iterative.sum()) / area - 1) < 0.1
    interior = traj.norm(dim=-1) < 32 / 2 - 3
    ratio = iterative[interior] / analytic[interior]
    assert abs(float(ratio.mean()) - 1) < 0.02


@pytest.mark.parametrize("method", ["analytic", "pipe-menon"])
def test_weighted_adjoint_reproduces_a_flat_image(method):
    n = 32
    traj = BladeGeometry(n_blades=10, n_lines=8, matrix_size=n, oversampling=2.0).trajectory()
    w = density_compensation(traj, (n, n), method)
    op = NUFFT(traj, (n, n))
    flat = op.H(w * op(torch.ones(n, n, dtype=torch.complex64))) / (n * n)
    centre = flat[n // 4 : 3 * n // 4, n // 4 : 3 * n // 4]
    assert abs(float(centre.real.mean()) - 1) < 0.02
    assert float((centre - 1).abs().max()) < 0.1
    # the point-spread function's peak is the sampled area / N^2 (a disc: about pi / 4)
    psf = op.H(w.to(torch.complex64)) / (n * n)
    assert abs(float(psf[n // 2, n // 2].real) - float(w.sum()) / n**2) < 1e-3
    assert float(psf.abs().argmax()) == (n // 2) * n + n // 2


def test_blade_weights_drop_a_blade_and_renormalize():
    geom = BladeGeometry(n_blades=6, n_lines=8, matrix_size=24)
    traj = geom.trajectory()
    weights = torch.ones(6)
    weights[2] = 0.0
    w = propeller_dcf(traj, weights)
    assert float(w[2].abs().max()) == 0.0
    keep = [b != 2 for b in range(6)]
    assert abs(float(w.sum()) / union_area(geom, keep) - 1) < 0.01
    # Pipe-Menon with weights: the weighted samples are normalized the same way
    pm = density_compensation(traj, (24, 24), "pipe-menon", blade_weights=weights)
    assert float(pm[2].abs().max()) == 0.0
    assert abs(float(pm.sum()) / float(w.sum()) - 1) < 0.1


def test_blade_frames_of_a_rotated_blade():
    geom = BladeGeometry(n_blades=3, n_lines=4, matrix_size=8, oversampling=2.0)
    f = blade_frames(geom.trajectory())
    theta = geom.angles()
    torch.testing.assert_close(f.e_ro, torch.stack([theta.cos(), theta.sin()], -1))
    torch.testing.assert_close(f.step_ro, torch.full((3,), 0.5))
    torch.testing.assert_close(f.step_pe, torch.ones(3))
    torch.testing.assert_close(f.first[:, 1], torch.full((3,), -2.0))


def test_bad_inputs_name_the_argument():
    traj = BladeGeometry(n_blades=2, n_lines=4, matrix_size=8).trajectory()
    with pytest.raises(ValueError, match="traj must have"):
        propeller_dcf(traj[0])
    with pytest.raises(ValueError, match="blade_weights must be >= 0"):
        propeller_dcf(traj, torch.tensor([1.0, -1.0]))
    with pytest.raises(ValueError, match="blade_weights must have shape"):
        propeller_dcf(traj, torch.ones(3))
    with pytest.raises(ValueError, match="dcf must be one of"):
        density_compensation(traj, (8, 8), "voronoi")
    with pytest.raises(ValueError, match="n_iter must be a positive integer"):
        pipe_menon_dcf(traj, (8, 8), n_iter=0)
    with pytest.raises(TypeError, match="traj must be a torch"):
        pipe_menon_dcf(np.zeros((4, 2)), (8, 8))
