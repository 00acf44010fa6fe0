import math
from dataclasses import replace

import pytest
import torch

from mrsolve.data.phantom import make_phantom
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


@pytest.fixture(scope="module")
def obj():
    return make_phantom(size=N, n_coils=1, max_offres_hz=0.0, fat=False).water


def make_scan(kspace: torch.Tensor, geom: BladeGeometry) -> Scan:
    times = readout_times(geom.n_readout, geom.center_sample, 1e-5)
    return Scan(
        kspace=kspace,
        traj=geom.trajectory(),
        times=times.expand(geom.n_blades, geom.n_lines, -1).contiguous(),
        image_shape=(N, N),
        dwell_s=1e-5,
        center_sample=geom.center_sample,
    )


def moving_object_kspace(obj, geom, rotation_deg, shift_px):
    """Exact samples of the object rotated by alpha_b, then shifted by s_b, per blade:
    y_j = e^{-i 2 pi k_j . s_b / N} X(R(-alpha_b) k_j), by an explicit DFT (1 coil)."""
    traj = geom.trajectory()
    a = -torch.deg2rad(rotation_deg)[:, None, None]
    kx, ky = traj[..., 0], traj[..., 1]
    rotated = torch.stack([a.cos() * kx - a.sin() * ky, a.sin() * kx + a.cos() * ky], dim=-1)
    phase = -2 * math.pi * (kx * shift_px[:, None, None, 0] + ky * shift_px[:, None, None, 1]) / N
    return (DFT(rotated, (N, N))(obj) * torch.polar(torch.ones_like(phase), phase))[None]


def test_recovers_known_rotation_and_translation(obj):
    geom = BladeGeometry(BLADES, LINES, N, oversampling=2.0)
    gen = torch.Generator().manual_seed(3)
    rotation = (2 * torch.rand(BLADES, generator=gen) - 1) * 5.0
    shift = (2 * torch.rand(BLADES, 2, generator=gen) - 1) * 2.0
    # motion is estimated relative to the blades' mean; a zero-mean motion keeps the
    # mean frame the object's own, so the image can be compared with the object
    rotation, shift = rotation - rotation.mean(), shift - shift.mean(0)
    scan = make_scan(moving_object_kspace(obj, geom, rotation, shift), geom)
    result = pipe_reconstruct(scan, correlation_weighting=False)
    assert float((result.rotation_deg - rotation).abs().max()) < 0.5
    assert float((result.shift_px - shift).abs().max()) < 0.5
    # the corrected image beats plain gridding of the moving object
    plain = nrmse(gridding(scan), obj)
    corrected = nrmse(result.image, obj)
    assert corrected < 0.8 * plain, (corrected, plain)
    # and the motion-free reconstruction is the floor it should approach
    still = make_scan(moving_object_kspace(obj, geom, 0 * rotation, 0 * shift), geom)
    assert corrected < nrmse(gridding(still), obj) + 0.01


def test_rotation_sign_with_a_single_rotated_blade(obj):
    geom = BladeGeometry(BLADES, LINES, N, oversampling=2.0)
    rotation = torch.zeros(BLADES)
    rotation[2] = 4.0
    scan = make_scan(moving_object_kspace(obj, geom, rotation, torch.zeros(BLADES, 2)), geom)
    est = estimate_rotations(scan)
    assert abs(float(est[2]) - (4.0 - 0.5)) < 0.5  # zero-mean estimates: 4 - 4 / 8
    corrected = correct_motion(scan, est)
    torch.testing.assert_close(corrected.traj.norm(dim=-1), scan.traj.norm(dim=-1))


def test_phase_correction_removes_per_blade_phase_errors(obj):
    geom = BladeGeometry(BLADES, LINES, N, oversampling=2.0)
    r = image_coordinates((N, N)).float().reshape(N, N, 2) / N
    gen = torch.Generator().manual_seed(5)
    coef = torch.randn(BLADES, 3, generator=gen) * torch.tensor([2.0, 4.0, 4.0])
    blades = []
    for b, traj in enumerate(geom.trajectory()):
        # smooth image-space phase error: constant plus linear (an echo shift in k-space)
        phi = coef[b, 0] + coef[b, 1] * r[..., 0] + coef[b, 2] * r[..., 1]
        blades.append(DFT(traj, (N, N))(obj * torch.polar(torch.ones_like(phi), phi)))
    scan = make_scan(torch.stack(blades)[None], geom)
    plain = nrmse(gridding(scan), obj)
    corrected = nrmse(gridding(phase_correct(scan)), obj)
    clean = nrmse(
        gridding(
            make_scan(
                moving_object_kspace(obj, geom, torch.zeros(BLADES), torch.zeros(BLADES, 2)), geom
            )
        ),
        obj,
    )
    assert plain > 0.3
    assert corrected < clean + 0.05, (corrected, clean)


def test_correlation_weighting_down_weights_an_inconsistent_blade(obj):
    geom = BladeGeometry(BLADES, LINES, N, oversampling=2.0)
    zero_rot, zero_shift = torch.zeros(BLADES), torch.zeros(BLADES, 2)
    kspace = moving_object_kspace(obj, geom, zero_rot, zero_shift)
    # blade 5 sees a different slice (through-plane motion): another phantom
    other = make_phantom(size=N, n_coils=1, max_offres_hz=0.0, fat=False, seed=7).water
    kspace[:, 5] = moving_object_kspace(other.flip(-1), geom, zero_rot, zero_shift)[:, 5]
    scan = make_scan(kspace, geom)
    weighted = pipe_reconstruct(scan, motion_correction=False)
    assert int(weighted.blade_weights.argmin()) == 5
    others = torch.cat([weighted.blade_weights[:5], weighted.blade_weights[6:]])
    assert float(weighted.blade_weights[5]) < 0.8 * float(others.min())
    assert float(weighted.blade_weights.max()) == 1.0
    unweighted = pipe_reconstruct(scan, motion_correction=False, correlation_weighting=False)
    assert nrmse(weighted.image, obj) < nrmse(unweighted.image, obj)


def test_correlation_weights_formula_and_callback(obj):
    w = correlation_weights(torch.tensor([1.0, 0.9, 0.7]), power=8.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 0.9**8, 0.7**8]))
    torch.testing.assert_close(correlation_weights(torch.tensor([0.5, 0.9]), 0), torch.ones(2))
    geom = BladeGeometry(BLADES, LINES, N, oversampling=2.0)
    scan = make_scan(
        moving_object_kspace(obj, geom, torch.zeros(BLADES), torch.zeros(BLADES, 2)), geom
    )
    steps = []
    result = pipe_reconstruct(
        scan, motion_correction=False, callback=lambda s, t, x: steps.append((s, t, x))
    )
    assert [s for s, _, _ in steps] == [1, 2, 3, 4, 5, 6]
    assert steps[-1][2] is result.image


def test_bad_inputs_name_the_argument(obj):
    geom = BladeGeometry(BLADES, LINES, N, oversampling=2.0)
    scan = make_scan(
        moving_object_kspace(obj, geom, torch.zeros(BLADES), torch.zeros(BLADES, 2)), geom
    )
    with pytest.raises(ValueError, match="center_sample must be the middle readout sample"):
        phase_correct(replace(scan, center_sample=3))
    with pytest.raises(ValueError, match="rotation_deg must have shape"):
        correct_motion(scan, torch.zeros(3))
    with pytest.raises(ValueError, match="shift_px must have shape"):
        correct_motion(scan, shift_px=torch.zeros(BLADES))
    with pytest.raises(ValueError, match="max_angle_deg must be > 0"):
        estimate_rotations(scan, max_angle_deg=-1)
    with pytest.raises(TypeError, match="scan must be a mrsolve"):
        pipe_reconstruct(scan.kspace)
    with pytest.raises(ValueError, match="correlations must have shape"):
        correlation_weights(torch.zeros(2, 2))
