import math

import pytest
import torch

from mrsolve.propeller.dft import DFT
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.timing import readout_times
from mrsolve.solvers.linop import dot_test


def test_trajectory_first_blade_is_cartesian():
    g = BladeGeometry(n_blades=4, n_lines=8, matrix_size=16)
    traj = g.trajectory()
    assert traj.shape == (4, 8, 16, 2)
    kx, ky = traj[0, ..., 0], traj[0, ..., 1]
    torch.testing.assert_close(kx[0], torch.arange(16.0) - 8)
    torch.testing.assert_close(ky[:, 0], torch.arange(8.0) - 4)


def test_blades_are_rotations_and_angles_recovered():
    g = BladeGeometry(n_blades=6, n_lines=4, matrix_size=12, oversampling=2.0)
    traj = g.trajectory()
    radius = traj.norm(dim=-1)
    torch.testing.assert_close(radius, radius[:1].expand_as(radius), atol=1e-5, rtol=0)
    assert g.n_readout == 24 and traj[0, 0, 1, 0] - traj[0, 0, 0, 0] == 0.5
    torch.testing.assert_close(g.angles(), torch.arange(6) * math.pi / 6)


def test_interleaved_order_and_nyquist():
    g = BladeGeometry(n_blades=4, n_lines=8, matrix_size=16, angle_order="interleaved")
    torch.testing.assert_close(g.angles(), torch.tensor([0, 2, 1, 3]) * math.pi / 4)
    assert g.nyquist_covered  # 4 * 8 = 32 >= 16 pi / 2
    assert not BladeGeometry(n_blades=2, n_lines=8, matrix_size=16).nyquist_covered


def test_timing_spin_and_gradient_echo():
    t = readout_times(8, 4, 10e-6)
    torch.testing.assert_close(t, (torch.arange(8.0) - 4) * 10e-6)
    t_gre = readout_times(8, 4, 10e-6, "gradient_echo", te_s=2e-3)
    torch.testing.assert_close(t_gre, t + 2e-3)
    with pytest.raises(ValueError, match="sequence must be one of"):
        readout_times(8, 4, 10e-6, "epi")


def test_bad_geometry_names_argument():
    with pytest.raises(ValueError, match="n_blades must be a positive integer"):
        BladeGeometry(n_blades=0, n_lines=4, matrix_size=8)


def test_dft_adjoint_and_dc():
    g = BladeGeometry(n_blades=3, n_lines=4, matrix_size=8)
    op = DFT(g.trajectory(), (8, 8), batch_shape=(2,), chunk=50)
    assert dot_test(op) < 1e-5
    x = torch.ones(2, 8, 8, dtype=torch.complex64)
    y = op(x)
    dc = g.trajectory().norm(dim=-1) == 0
    torch.testing.assert_close(y[:, dc].abs(), torch.full_like(y[:, dc].abs(), 64.0))
