"""The exact simulator against independent numpy computations of the signal equation."""

import math

import numpy as np
import pytest
import torch

from mrsolve.data.phantom import Phantom
from mrsolve.data.simulate import SimulationConfig, exact_kspace, simulate
from mrsolve.propeller.fat import FatSpectrum, fat_spectrum
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.timing import readout_times


def _random_phantom(n, n_coils, rng, coils=None):
    def cplx(*shape):
        return torch.from_numpy(
            (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(np.complex64)
        )

    maps = cplx(n_coils, n, n) if coils is None else coils
    psi = torch.from_numpy(rng.uniform(-150, 150, (n, n)).astype(np.float32))
    return Phantom(cplx(n, n), cplx(n, n), psi, torch.ones(n, n, dtype=torch.bool), maps)


def _numpy_signal(ph, traj, times, spectrum, positions=None):
    """y[c, j] = sum_r S_c(r) [w + f sum_p a_p e^{i2pi f_p t}] e^{i2pi psi t} e^{-i2pi k.r'/N}."""
    n = ph.image_shape[0]
    rows, cols = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    x, y = (cols - n // 2).ravel().astype(float), (rows - n // 2).ravel().astype(float)
    if positions is not None:
        x, y = positions(x, y)
    k = traj.reshape(-1, 2).double().numpy()
    t = times.reshape(-1).double().numpy()
    w, f = ph.water.numpy().ravel(), ph.fat.numpy().ravel()
    s = ph.coil_maps.numpy().reshape(ph.coil_maps.shape[0], -1)
    psi = ph.field_map_hz.double().numpy().ravel()
    fp, ap = spectrum[0].double().numpy(), spectrum[1].double().numpy()
    out = np.zeros((s.shape[0], k.shape[0]), complex)
    for j in range(k.shape[0]):
        fat_term = np.sum(ap * np.exp(2j * np.pi * fp * t[j]))
        enc = np.exp(-2j * np.pi * (k[j, 0] * x / n + k[j, 1] * y / n))
        out[:, j] = s @ ((w + f * fat_term) * np.exp(2j * np.pi * psi * t[j]) * enc)
    return out


@pytest.mark.parametrize("sequence", ["spin_echo", "gradient_echo"])
def test_exact_kspace_matches_per_sample_reference(sequence):
    rng = np.random.default_rng(0)
    ph = _random_phantom(8, 3, rng)
    geom = BladeGeometry(3, 4, 8, oversampling=2.0)
    traj = geom.trajectory()
    t = readout_times(geom.n_readout, geom.center_sample, 20e-6, sequence, te_s=2.1e-3)
    times = t.expand(3, 4, -1).contiguous()
    spec = fat_spectrum(3.0)
    got = exact_kspace(ph, traj, times, spectrum=spec, chunk_bytes=2**11)  # one line per chunk
    ref = _numpy_signal(ph, traj, times, spec)
    err = np.linalg.norm(got.reshape(3, -1).numpy() - ref) / np.linalg.norm(ref)
    assert got.shape == (3, 3, 4, 16) and got.dtype == torch.complex64
    assert err < 1e-5


@pytest.mark.parametrize("shared_times", [True, False])
def test_exact_kspace_with_motion_matches_reference(shared_times):
    rng = np.random.default_rng(1)
    consts = torch.from_numpy(rng.standard_normal((2, 1, 1)) + 1j * rng.standard_normal((2, 1, 1)))
    ph = _random_phantom(8, 2, rng, coils=consts.to(torch.complex64).expand(2, 8, 8).contiguous())
    ph.rotation_deg, ph.shift_px = torch.tensor([25.0]), torch.tensor([[1.5, -0.5]])
    traj = BladeGeometry(1, 3, 8, oversampling=1.5).trajectory()
    times = torch.from_numpy(rng.uniform(-1e-3, 1e-3, (1, 3, 12)).astype(np.float32))
    if shared_times:  # blade path (one readout timing) instead of the general path
        times = times[:, :1].expand(1, 3, 12).contiguous()
    spec = FatSpectrum(torch.tensor([-400.0, 60.0]), torch.tensor([0.8, 0.2]))
    got = exact_kspace(ph, traj, times, spectrum=spec, chunk_bytes=2**13)
    a = math.radians(25.0)

    def moved(x, y):
        return x * math.cos(a) - y * math.sin(a) + 1.5, x * math.sin(a) + y * math.cos(a) - 0.5

    ref = _numpy_signal(ph, traj, times, spec, positions=moved)
    assert np.linalg.norm(got.reshape(2, -1).numpy() - ref) / np.linalg.norm(ref) < 1e-5


def _adjoint_along(y, traj, n, origin, direction, offsets):
    """Explicit adjoint DFT of one blade's samples at points origin + s * direction."""
    k = traj.reshape(-1, 2).double().numpy()
    pts = np.asarray(origin, float)[None] + offsets[:, None] * np.asarray(direction)[None]
    phase = 2j * np.pi * (pts @ k.T) / n
    return np.abs(np.exp(phase) @ y.reshape(-1).numpy().astype(complex))


def _point_phantom(n, pos, field_hz=0.0, fat=False):
    img = torch.zeros(n, n, dtype=torch.complex64)
    img[pos[1] + n // 2, pos[0] + n // 2] = 1
    zero = torch.zeros_like(img)
    water, fat_img = (zero, img) if fat else (img, zero)
    psi = torch.full((n, n), field_hz)
    return Phantom(water, fat_img, psi, img.abs() > 0, torch.ones(1, n, n, dtype=torch.complex64))


@pytest.mark.parametrize("sequence", ["spin_echo", "gradient_echo"])
def test_off_resonant_point_moves_minus_f_m_dt_along_each_readout(sequence):
    # Derivation: t_j = (u - c) dt and k_ro = (u - c) / os, so e^{i 2 pi f t_j} =
    # e^{i 2 pi (f M dt) k_ro / N}: a point at r0 appears at r0 - f M dt (cos, sin).
    n, dwell = 16, 40e-6
    geom = BladeGeometry(4, 8, n, oversampling=2.0)
    m = geom.n_readout
    f0 = 3.0 / (m * dwell)  # expected displacement -3 pixels
    ph = _point_phantom(n, (1, -2), f0)
    t = readout_times(m, geom.center_sample, dwell, sequence, te_s=2e-3)
    traj = geom.trajectory()
    y = exact_kspace(ph, traj, t.expand(4, 8, -1).contiguous())[0]
    offsets = np.linspace(-6, 6, 241)
    for b, theta in enumerate(geom.angles().tolist()):
        d = (math.cos(theta), math.sin(theta))
        profile = _adjoint_along(y[b], traj[b], n, (1, -2), d, offsets)
        peak = offsets[np.argmax(profile)]
        assert abs(peak + f0 * m * dwell) < 0.1, (theta, peak)  # -3 px, not +3 px


def test_fat_point_shifts_by_chemical_shift_with_default_dwell():
    cfg = SimulationConfig(size=16, n_blades=2, n_lines=8, field_strength_t=3.0)
    dwell, m = cfg.resolved_dwell_s(), cfg.geometry().n_readout
    spec = fat_spectrum(3.0, "single_peak")
    shift = -spec.frequencies_hz.item() * m * dwell  # fat at -434 Hz appears at +2 px
    assert 1.9 < shift < 2.1  # realistic 1-3 px at 3 T
    ph = _point_phantom(16, (0, 0), fat=True)
    geom = cfg.geometry()
    t = readout_times(m, geom.center_sample, dwell)
    y = exact_kspace(ph, geom.trajectory(), t.expand(2, 8, -1).contiguous(), spectrum=spec)[0]
    offsets = np.linspace(-5, 5, 201)
    for b, theta in enumerate(geom.angles().tolist()):
        d = (math.cos(theta), math.sin(theta))
        peak = offsets[
            np.argmax(_adjoint_along(y[b], geom.trajectory()[b], 16, (0, 0), d, offsets))
        ]
        assert abs(peak - shift) < 0.1


def test_rigid_motion_moves_a_point_where_stated():
    n = 16
    ph = _point_phantom(n, (3, -2))
    ph.rotation_deg, ph.shift_px = (
        torch.tensor([90.0, 30.0]),
        torch.tensor([[1.0, 2.0], [-1.5, 0.5]]),
    )
    geom = BladeGeometry(2, n, n)  # each blade covers the full Cartesian grid
    t = readout_times(n, geom.center_sample, 10e-6)
    y = exact_kspace(ph, geom.trajectory(), t.expand(2, n, -1).contiguous())[0]
    for b, deg in enumerate((90.0, 30.0)):
        a = math.radians(deg)
        expected = np.array([3 * math.cos(a) + 2 * math.sin(a), 3 * math.sin(a) - 2 * math.cos(a)])
        expected += ph.shift_px[b].numpy()
        grid = np.linspace(-0.5, 0.5, 21)
        best = max(
            ((dx, dy) for dx in grid for dy in grid),
            key=lambda d: _adjoint_along(
                y[b], geom.trajectory()[b], n, expected + np.array(d), (1, 0), np.zeros(1)
            )[0],
        )
        assert np.abs(best).max() < 0.06  # peak within a twentieth of a pixel


def test_field_map_maximum_and_fat_fraction_range():
    sim = simulate(size=32, n_blades=4, n_lines=8, n_coils=2, max_offres_hz=150.0, seed=3)
    truth, mask = sim.truth, sim.truth.mask
    assert truth.field_map_hz[mask].abs().max().item() == pytest.approx(150.0, rel=1e-5)
    ff = truth.fat_fraction
    assert ff.min() >= 0 and ff.max() <= 1 and (ff[~mask] == 0).all()
    assert ff[mask].min() < 0.05 and ff[mask].max() > 0.85
    assert ((ff[mask] > 0.3) & (ff[mask] < 0.7)).any()
    torch.testing.assert_close(truth.image, truth.water + truth.fat)
    no_fat = simulate(size=32, n_blades=4, n_lines=8, n_coils=2, max_offres_hz=0.0, fat=False)
    assert (no_fat.truth.fat_fraction == 0).all() and (no_fat.truth.field_map_hz == 0).all()


def test_noise_level_and_noise_scan_covariance():
    kw = dict(size=16, n_blades=3, n_lines=8, n_coils=4, seed=5)
    clean = simulate(**kw).scan.kspace
    sim = simulate(**kw, noise=0.2, n_noise_samples=4000, noise_correlation=0.5)
    diff = sim.scan.kspace - clean
    rel = diff.abs().square().mean().sqrt() / clean.abs().square().mean().sqrt()
    cov = sim.truth.noise_covariance
    assert rel.item() == pytest.approx(0.2, rel=0.05)
    sigma2 = 0.04 * clean.abs().square().mean()
    assert cov.diagonal().real.mean().item() == pytest.approx(sigma2.item(), rel=1e-5)
    noise = sim.scan.noise
    sample_cov = noise @ noise.conj().T / noise.shape[1]
    assert torch.linalg.norm(sample_cov - cov) / torch.linalg.norm(cov) < 0.1
    corr = cov[0, 1].real / math.sqrt(cov[0, 0].real * cov[1, 1].real)
    assert corr == pytest.approx(0.5, abs=1e-6)


def test_dynamic_frames_timestamps_and_seed():
    kw = dict(size=16, n_blades=3, n_lines=4, n_coils=2, n_frames=3, blade_interval_s=0.1)
    sim = simulate(**kw)
    scan = sim.scan
    assert scan.frame.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    torch.testing.assert_close(scan.timestamps_s, torch.arange(9) * 0.1)
    assert sim.truth.image.shape == (3, 16, 16)
    assert not torch.equal(sim.truth.water[0], sim.truth.water[2])
    assert not torch.allclose(scan.kspace[:, 0], scan.kspace[:, 6])  # same angle, other frame
    torch.testing.assert_close(simulate(**kw).scan.kspace, scan.kspace)
    assert not torch.equal(simulate(**kw, seed=1).scan.kspace, scan.kspace)


def test_simulated_motion_and_scan_fields():
    sim = simulate(
        size=16,
        n_blades=4,
        n_lines=4,
        n_coils=2,
        max_rotation_deg=5.0,
        max_shift_px=1.0,
        sequence="gradient_echo",
        te_s=2e-3,
    )
    rot, shift = sim.phantom.rotation_deg, sim.phantom.shift_px
    assert rot.shape == (4,) and shift.shape == (4, 2)
    assert rot.abs().max() <= 5 and shift.abs().max() <= 1 and rot.abs().max() > 0
    scan = sim.scan
    assert scan.sequence == "gradient_echo" and scan.te_s == 2e-3
    assert scan.times.min().item() == pytest.approx(2e-3 - scan.center_sample * scan.dwell_s)


def test_bad_options():
    with pytest.raises(TypeError, match="bogus"):
        simulate(bogus=1)
    with pytest.raises(ValueError, match="sequence"):
        simulate(size=16, sequence="epi")
    ph = _point_phantom(8, (0, 0))
    with pytest.raises(ValueError, match="phantom"):
        simulate(phantom=ph, size=16, n_blades=2, n_lines=4)
