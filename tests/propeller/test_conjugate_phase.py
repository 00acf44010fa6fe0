import math

import pytest
import torch

from mrsolve.data.simulate import simulate
from mrsolve.propeller.conjugate_phase import TimeSegmented, conjugate_phase, time_interpolators
from mrsolve.propeller.dft import DFT, dft_matrix
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.gridding import gridding
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import readout_times
from mrsolve.recon.metrics import nrmse
from mrsolve.solvers.linop import dot_test

N = 12


@pytest.fixture(scope="module")
def tiny():
    """12 x 12 gradient-echo case with a rough field map and the exact per-sample matrix."""
    geom = BladeGeometry(n_blades=4, n_lines=6, matrix_size=N, oversampling=2.0)
    traj = geom.trajectory()
    t_line = readout_times(geom.n_readout, geom.center_sample, 100e-6, "gradient_echo", 2e-3)
    times = t_line.expand(4, 6, -1).contiguous()
    gen = torch.Generator().manual_seed(0)
    psi = torch.randn(N, N, generator=gen) * 80
    # E_jr = e^{-i 2 pi k_j . r / N} e^{+i 2 pi psi(r) t_j}, written out sample by sample
    phase = 2 * math.pi * times.reshape(-1, 1).double() * psi.reshape(1, -1).double()
    exact = dft_matrix(traj.reshape(-1, 2), (N, N)).to(torch.complex128) * torch.polar(
        torch.ones_like(phase), phase
    )
    x = torch.randn(N, N, generator=gen, dtype=torch.complex64)
    return traj, times, psi, exact, x


def test_time_segmented_matches_the_exact_per_sample_model(tiny):
    traj, times, psi, exact, x = tiny
    reference = (exact @ x.reshape(-1).to(torch.complex128)).reshape(times.shape)
    model = TimeSegmented(DFT(traj, (N, N)), psi, times)  # least squares, default segments
    assert float((model(x) - reference).norm() / reference.norm()) < 1e-3
    hanning = TimeSegmented(DFT(traj, (N, N)), psi, times, n_segments=12, interpolator="hanning")
    assert float((hanning(x) - reference).norm() / reference.norm()) < 0.02
    # too few segments cannot follow the phase: the comparison is sensitive
    coarse = TimeSegmented(DFT(traj, (N, N)), psi, times, n_segments=2)
    assert float((coarse(x) - reference).norm() / reference.norm()) > 0.05
    # adjoint against the exact matrix's conjugate transpose, and the dot test
    y = torch.randn(times.shape, generator=torch.Generator().manual_seed(1), dtype=torch.complex64)
    adjoint = (exact.mH @ y.reshape(-1).to(torch.complex128)).reshape(N, N)
    assert float((model.H(y) - adjoint).norm() / adjoint.norm()) < 1e-3
    assert dot_test(model) < 1e-5
    assert dot_test(hanning) < 1e-5


def test_interpolators_are_a_partition_of_unity_on_resonance(tiny):
    _, times, _, _, _ = tiny
    tau = torch.linspace(float(times.min()), float(times.max()), 5, dtype=torch.float64)
    for kind in ("least-squares", "hanning"):
        a = time_interpolators(times, torch.zeros(N, N), tau, kind)
        assert a.shape == (5, *times.shape)
        torch.testing.assert_close(a.sum(0), torch.ones_like(a[0]), atol=1e-4, rtol=0)


def test_sign_convention_with_an_off_resonant_point():
    n, psi_hz = 16, 400.0
    geom = BladeGeometry(n_blades=6, n_lines=8, matrix_size=n, oversampling=2.0)
    traj = geom.trajectory()
    t_line = readout_times(geom.n_readout, geom.center_sample, 200e-6)  # 6.4 ms readout
    times = t_line.expand(6, 8, -1).contiguous()
    point = torch.zeros(n, n, dtype=torch.complex64)
    point[n // 2, n // 2] = 1.0
    # the point's own phase: y_j = e^{+i 2 pi psi t_j} (the point sits at r = 0)
    phase = 2 * math.pi * psi_hz * times.double()
    kspace = torch.polar(torch.ones_like(phase), phase).to(torch.complex64)[None]
    scan = Scan(kspace, traj, times, (n, n), 200e-6, geom.center_sample)
    field = torch.full((n, n), psi_hz)
    # one coil on a point: root-sum-of-squares, so only the field correction differs
    plain = gridding(scan, operator=DFT)
    right = conjugate_phase(scan, field, coil_maps=None, operator=DFT)
    wrong = conjugate_phase(scan, -field, coil_maps=None, operator=DFT)
    # the floor: gridding of the same point on resonance (the disc-sampled point spread)
    on_resonance = Scan(torch.ones_like(kspace), traj, times, (n, n), 200e-6, geom.center_sample)
    ideal = gridding(on_resonance, operator=DFT)
    assert nrmse(right, point) < nrmse(ideal, point) + 0.01
    assert nrmse(right, point) < 0.7 * nrmse(plain, point)
    assert nrmse(wrong, point) > nrmse(plain, point)


@pytest.fixture(scope="module")
def off_resonance():
    return simulate(size=32, n_blades=8, n_lines=16, n_coils=2, max_offres_hz=300.0, fat=False)


def test_conjugate_phase_beats_gridding_with_the_true_field_map(off_resonance):
    scan, truth = off_resonance.scan, off_resonance.truth
    plain = nrmse(gridding(scan, coil_maps=truth.coil_maps), truth.image)
    steps = []
    cp = conjugate_phase(
        scan,
        truth.field_map_hz,
        coil_maps=truth.coil_maps,
        callback=lambda s, t, x: steps.append((s, t)),
    )
    assert steps == [(1, 2), (2, 2)]
    corrected = nrmse(cp, truth.image)
    assert corrected < 0.6 * plain, (corrected, plain)
    refined = conjugate_phase(scan, truth.field_map_hz, coil_maps=truth.coil_maps, n_cg=3)
    assert nrmse(refined, truth.image) < corrected
    # with estimated (ESPIRiT, the default) maps or root-sum-of-squares it beats gridding too
    estimated = conjugate_phase(scan, truth.field_map_hz.numpy())  # numpy maps are accepted
    assert nrmse(estimated, truth.image) < 0.7 * plain
    rss = conjugate_phase(scan, truth.field_map_hz, coil_maps=None)
    assert nrmse(rss, truth.image) < 0.7 * plain


def test_bad_inputs_name_the_argument(tiny, off_resonance):
    traj, times, psi, _, _ = tiny
    scan = off_resonance.scan
    field = off_resonance.truth.field_map_hz
    with pytest.raises(ValueError, match="coil_maps must be given"):
        conjugate_phase(scan, field, coil_maps=None, n_cg=2)
    with pytest.raises(ValueError, match="field_map_hz must have shape"):
        conjugate_phase(scan, field[:4])
    with pytest.raises(ValueError, match="n_cg must be a non-negative integer"):
        conjugate_phase(scan, field, n_cg=-1)
    with pytest.raises(ValueError, match="interpolator must be one of"):
        TimeSegmented(DFT(traj, (N, N)), psi, times, interpolator="linear")
    with pytest.raises(ValueError, match="times_s must have shape"):
        TimeSegmented(DFT(traj, (N, N)), psi, times[0])
    with pytest.raises(ValueError, match="n_segments must be a positive integer"):
        TimeSegmented(DFT(traj, (N, N)), psi, times, n_segments=0)
    with pytest.raises(TypeError, match="field_map_hz must be a real torch"):
        conjugate_phase(scan, field.tolist())
