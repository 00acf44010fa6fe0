import math
from dataclasses import replace

import pytest
import torch

from mrsolve.data.phantom import make_phantom
from mrsolve.data.simulate import simulate
from mrsolve.propeller.dft import DFT, image_coordinates
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.gridding import gridding
from mrsolve.propeller.pipe import (
    correct_motion,
    correlation_weights,
    estimate_rotations,
    phase_correct,
    pipe_reconstruct,
)
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import readout_times
from mrsolve.recon.metrics import nrmse

N, BLADES, LINES = 32, 8, 16
GEOM = BladeGeometry(BLADES, LINES, N, oversampling=2.0)
NO_ROTATION, NO_SHIFT = torch.zeros(BLADES), torch.zeros(BLADES, 2)


@pytest.fixture(scope="module")
def obj():
    return make_phantom(size=N, n_coils=1, max_offres_hz=0.0, fat=False).water


@pytest.fixture(scope="module")
def still(obj):
    """The motion-free scan of the object."""
    return make_scan(moving_object_kspace(obj, NO_ROTATION, NO_SHIFT))


def make_scan(kspace: torch.Tensor) -> Scan:
    times = readout_times(GEOM.n_readout, GEOM.center_sample, 1e-5)
    return Scan(
        kspace=kspace,
        traj=GEOM.trajectory(),
        times=times.expand(BLADES, LINES, -1).contiguous(),
        image_shape=(N, N),
        dwell_s=1e-5,
        center_sample=GEOM.center_sample,
    )


def moving_object_kspace(obj, rotation_deg, shift_px):
    """Exact samples of the object rotated by alpha_b, then shifted by s_b, per blade:
    y_j = e^{-i 2 pi k_j . s_b / N} X(R(-alpha_b) k_j), by an explicit DFT (1 coil)."""
    traj = GEOM.trajectory()
    a = -torch.deg2rad(rotation_deg)[:, None, None]
    kx, ky = traj[..., 0], traj[..., 1]
    rotated = torch.stack([a.cos() * kx - a.sin() * ky, a.sin() * kx + a.cos() * ky], dim=-1)
    phase = -2 * math.pi * (kx * shift_px[:, None, None, 0] + ky * shift_px[:, None, None, 1]) / N
    return (DFT(rotated, (N, N))(obj) * torch.polar(torch.ones_like(phase), phase))[None]


def test_recovers_known_rotation_and_translation(obj, still):
    gen = torch.Generator().manual_seed(3)
    rotation = (2 * torch.rand(BLADES, generator=gen) - 1) * 5.0
    shift = (2 * torch.rand(BLADES, 2, generator=gen) - 1) * 2.0
    # motion is estimated relative to the blades' mean; a zero-mean motion keeps the
    # mean frame the object's own, so the image can be compared with the object
    rotation, shift = rotation - rotation.mean(), shift - shift.mean(0)
    scan = make_scan(moving_object_kspace(obj, rotation, shift))
    result = pipe_reconstruct(scan, correlation_weighting=False)
    assert float((result.rotation_deg - rotation).abs().max()) < 0.5
    assert float((result.shift_px - shift).abs().max()) < 0.5
    # the corrected image beats plain gridding of the moving object
    plain = nrmse(gridding(scan), obj)
    corrected = nrmse(result.image, obj)
    assert corrected < 0.8 * plain, (corrected, plain)
    # and the motion-free reconstruction is the floor it should approach
    assert corrected < nrmse(gridding(still), obj) + 0.01


def test_rotation_sign_with_a_single_rotated_blade(obj):
    rotation = torch.zeros(BLADES)
    rotation[2] = 4.0
    scan = make_scan(moving_object_kspace(obj, rotation, NO_SHIFT))
    est = estimate_rotations(scan)
    assert abs(float(est[2]) - (4.0 - 0.5)) < 0.5  # zero-mean estimates: 4 - 4 / 8
    corrected = correct_motion(scan, est)
    torch.testing.assert_close(corrected.traj.norm(dim=-1), scan.traj.norm(dim=-1))


def test_phase_correction_removes_per_blade_phase_errors(obj, still):
    r = image_coordinates((N, N)).float().reshape(N, N, 2) / N
    gen = torch.Generator().manual_seed(5)
    coef = torch.randn(BLADES, 3, generator=gen) * torch.tensor([2.0, 4.0, 4.0])
    blades = []
    for b, traj in enumerate(GEOM.trajectory()):
        # smooth image-space phase error: constant plus linear (an echo shift in k-space)
        phi = coef[b, 0] + coef[b, 1] * r[..., 0] + coef[b, 2] * r[..., 1]
        blades.append(DFT(traj, (N, N))(obj * torch.polar(torch.ones_like(phi), phi)))
    scan = make_scan(torch.stack(blades)[None])
    plain = nrmse(gridding(scan), obj)
    corrected = nrmse(gridding(phase_correct(scan)), obj)
    clean = nrmse(gridding(still), obj)
    assert plain > 0.3
    assert corrected < clean + 0.05, (corrected, clean)


def test_correlation_weighting_down_weights_an_inconsistent_blade(obj, still):
    kspace = still.kspace.clone()
    # blade 5 sees a different slice (through-plane motion): another phantom
    other = make_phantom(size=N, n_coils=1, max_offres_hz=0.0, fat=False, seed=7).water
    blade = GEOM.trajectory()[5]
    kspace[0, 5] = DFT(blade, (N, N))(other.flip(-1))
    scan = make_scan(kspace)
    weighted = pipe_reconstruct(scan, motion_correction=False)
    assert int(weighted.blade_weights.argmin()) == 5
    others = torch.cat([weighted.blade_weights[:5], weighted.blade_weights[6:]])
    assert float(weighted.blade_weights[5]) < 0.8 * float(others.min())
    assert float(weighted.blade_weights.max()) == 1.0
    unweighted = pipe_reconstruct(scan, motion_correction=False, correlation_weighting=False)
    assert nrmse(weighted.image, obj) < nrmse(unweighted.image, obj)


def test_correlation_weights_formula_and_callback(still):
    w = correlation_weights(torch.tensor([1.0, 0.9, 0.7]), power=8.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.9**8, 0.7**8]))
    torch.testing.assert_close(correlation_weights(torch.tensor([0.5, 0.9]), 0), torch.ones(2))
    steps = []
    result = pipe_reconstruct(
        still, motion_correction=False, callback=lambda s, t, x: steps.append((s, t, x))
    )
    assert [s for s, _, _ in steps] == [1, 2, 3, 4, 5, 6]
    assert steps[-1][2] is result.image


def test_bad_inputs_name_the_argument(still):
    with pytest.raises(ValueError, match="center_sample must be the middle readout sample"):
        phase_correct(replace(still, center_sample=3))
    with pytest.raises(ValueError, match="center_sample must be the middle readout sample"):
        estimate_rotations(replace(still, center_sample=3))
    with pytest.raises(ValueError, match="rotation_deg must have shape"):
        correct_motion(still, torch.zeros(3))
    with pytest.raises(ValueError, match="shift_px must have shape"):
        correct_motion(still, shift_px=torch.zeros(BLADES))
    with pytest.raises(ValueError, match="max_angle_deg must be > 0"):
        estimate_rotations(still, max_angle_deg=-1)
    with pytest.raises(TypeError, match="scan must be a mrsolve"):
        pipe_reconstruct(still.kspace)
    with pytest.raises(ValueError, match="correlations must have shape"):
        correlation_weights(torch.zeros(2, 2))


def test_agrees_with_the_simulators_motion_convention_with_coils():
    # the simulator moves the object under fixed birdcage coils (its own code, per sample)
    sim = simulate(
        size=N,
        n_blades=BLADES,
        n_lines=LINES,
        n_coils=2,
        max_offres_hz=0.0,
        fat=False,
        max_rotation_deg=4.0,
        max_shift_px=1.5,
        seed=2,
    )
    rotation, shift = sim.phantom.rotation_deg, sim.phantom.shift_px
    result = pipe_reconstruct(sim.scan)
    assert float((result.rotation_deg - (rotation - rotation.mean())).abs().max()) < 0.5
    assert float((result.shift_px - (shift - shift.mean(0))).abs().max()) < 0.5
    assert nrmse(result.image, sim.truth.image) < 0.7 * nrmse(gridding(sim.scan), sim.truth.image)
