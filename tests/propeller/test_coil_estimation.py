import numpy as np
import pytest
import sigpy.mri
import torch

from mrsolve.propeller.coil_estimation import (
    calibration_images,
    coil_combine,
    estimate_coil_maps,
    rss,
)
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.nufft import NUFFT

N = 48
N_COILS = 6
# smaller ESPIRiT calibration than the defaults, to keep the tests fast
OPTIONS = {"walsh": {}, "espirit": {"calib_width": 16, "espirit_kernel_width": 4}}


def _phantom_and_maps(seed=0):
    """A two-level ellipse (real, positive) and smooth Gaussian coil maps around it,
    normalized to sum_c |S_c|^2 = 1, with per-coil phase offsets and spatial phase ramps,
    and a phase common to all coils (which the estimate cannot tell from image phase)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:N, :N] - N // 2
    obj = ((x / 18.0) ** 2 + (y / 14.0) ** 2 <= 1).astype(float)
    obj += 0.5 * (((x - 4) / 6.0) ** 2 + (y / 5.0) ** 2 <= 1)
    maps = []
    for c in range(N_COILS):
        angle = 2 * np.pi * c / N_COILS
        cx, cy = 0.7 * N * np.cos(angle), 0.7 * N * np.sin(angle)
        magnitude = np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * (0.5 * N) ** 2))
        ramp = 2 * np.pi * (np.cos(angle) * x + np.sin(angle) * y) / (3 * N)
        maps.append(magnitude * np.exp(1j * (rng.uniform(-np.pi, np.pi) + ramp)))
    maps = np.array(maps) * np.exp(1j * 2 * np.pi * (x**2 + y**2) / (N / 2) ** 2)
    maps /= np.sqrt((np.abs(maps) ** 2).sum(axis=0))
    return obj, maps.astype(np.complex64)


def _coil_images(obj, maps, noise=0.005, seed=1):
    rng = np.random.default_rng(seed)
    shape = maps.shape
    n = noise * (rng.standard_normal(shape) + 1j * rng.standard_normal(shape))
    return (maps * obj + n).astype(np.complex64)


def _reference_phase(maps, weights):
    """True maps in the documented phase convention, computed independently with numpy:
    a = dominant eigenvector of sum_r w S S^H; rotate every pixel so that a^H S(r) > 0."""
    flat = maps.reshape(N_COILS, -1)
    gram = (flat * weights.reshape(1, -1)) @ flat.conj().T
    a = np.linalg.eigh(gram)[1][:, -1]
    proj = np.einsum("c,cyx->yx", a.conj(), maps)
    return maps * np.exp(-1j * np.angle(proj))


def _correlation(a, b, mask):
    a, b = a[:, mask], b[:, mask]
    return abs(np.vdot(a, b)) / (np.linalg.norm(a) * np.linalg.norm(b))


@pytest.mark.parametrize("method", ["walsh", "espirit"])
def test_estimated_maps_match_truth(method):
    obj, maps = _phantom_and_maps()
    est = estimate_coil_maps(_coil_images(obj, maps), method=method, **OPTIONS[method])
    assert isinstance(est, np.ndarray) and est.shape == maps.shape and est.dtype == np.complex64
    inside = obj > 0
    # normalization: unit norm over coils inside the object
    assert np.allclose((np.abs(est[:, inside]) ** 2).sum(axis=0), 1, atol=1e-4)
    # the maps agree with the truth up to one common phase (documented convention)
    reference = _reference_phase(maps, obj**2)
    assert _correlation(est, reference, inside) > 0.95
    # and, phase-invariantly, pixel by pixel
    per_pixel = np.abs((est.conj() * maps).sum(axis=0))[inside]
    assert per_pixel.mean() > 0.97


@pytest.mark.parametrize("method", ["walsh", "espirit"])
def test_combination_with_estimated_maps_recovers_image(method):
    obj, maps = _phantom_and_maps(seed=2)
    images = _coil_images(obj, maps, seed=3)
    est = estimate_coil_maps(torch.from_numpy(images), method=method, **OPTIONS[method])
    assert isinstance(est, torch.Tensor)
    combined = coil_combine(torch.from_numpy(images), est).numpy()
    inside = obj > 0
    err = np.linalg.norm(np.abs(combined[inside]) - obj[inside]) / np.linalg.norm(obj[inside])
    assert err < 0.05


def test_espirit_matches_sigpy_espirit_calib():
    """Independent implementation of the same algorithm (sigpy, numpy, explicit per-kernel
    inverse FFTs): the same maps up to a phase per pixel, and the same crop."""
    obj, maps = _phantom_and_maps(seed=7)
    images = _coil_images(obj, maps, seed=8)
    options = {"calib_width": 20, "espirit_kernel_width": 5, "espirit_thresh": 0.02}
    est = estimate_coil_maps(images, espirit_crop=0.9, **options)
    kspace = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(images, axes=(-2, -1))), axes=(-2, -1))
    reference = sigpy.mri.app.EspiritCalib(
        kspace, calib_width=20, thresh=0.02, kernel_width=5, crop=0.9, show_pbar=False
    ).run()
    inside = obj > 0
    assert np.abs((est.conj() * reference).sum(axis=0))[inside].min() > 0.995
    kept, kept_reference = np.abs(est).sum(0) > 0, np.abs(reference).sum(0) > 0
    assert (kept != kept_reference).mean() < 0.01


def test_espirit_keeps_dim_tissue_far_from_the_coils():
    """The mask follows the calibration's consistency, not the intensity: a region 1000x
    dimmer than the rest keeps its maps (Walsh's signal-energy threshold drops part of it)."""
    obj, maps = _phantom_and_maps(seed=9)
    y, x = np.mgrid[:N, :N] - N // 2
    dim = ((x / 8.0) ** 2 + ((y + 4) / 6.0) ** 2 <= 1) & (obj > 0)
    obj = np.where(dim, 1e-3, obj)
    images = _coil_images(obj, maps, noise=1e-6)
    est = estimate_coil_maps(images, **OPTIONS["espirit"])
    assert np.abs((est.conj() * maps).sum(axis=0))[dim].min() > 0.95
    walsh = estimate_coil_maps(images, "walsh")
    assert (np.abs(walsh).sum(axis=0)[dim] == 0).mean() > 0.1


def _propeller_kspace(images):
    """PROPELLER samples of images (C, N, N): 8 blades x 12 lines x 96 samples (the NUFFT
    is within 1e-5 of the explicit DFT, see test_nufft.py)."""
    traj = BladeGeometry(8, 12, N, oversampling=2.0).trajectory()
    return NUFFT(traj, (N, N), (images.shape[0],))(torch.from_numpy(images)), traj


def test_calibration_images_are_windowed_lowpass():
    obj, _ = _phantom_and_maps()
    kspace, traj = _propeller_kspace(obj[None].astype(np.complex64))
    radius = 6.0  # = L / 2: every blade covers this disc
    image = calibration_images(kspace, traj, (N, N), radius).numpy()[0]
    # independent reference: Cartesian FFT low-pass with the same Hann window
    k = np.fft.fftfreq(N) * N
    dist = np.hypot(*np.meshgrid(k, k))
    window = np.where(dist < radius, 0.5 * (1 + np.cos(np.pi * dist / radius)), 0)
    reference = np.fft.fftshift(np.fft.ifft2(np.fft.fft2(np.fft.ifftshift(obj)) * window))
    assert np.linalg.norm(image - reference) / np.linalg.norm(reference) < 0.1


def test_maps_from_propeller_kspace():
    obj, maps = _phantom_and_maps(seed=6)
    kspace, traj = _propeller_kspace((maps * obj).astype(np.complex64))
    est = estimate_coil_maps(calibration_images(kspace, traj, (N, N), 6.0), "walsh").numpy()
    inside = obj > 0
    assert _correlation(est, _reference_phase(maps, obj**2), inside) > 0.95


def test_coil_combine_and_rss_definitions():
    obj, maps = _phantom_and_maps(seed=4)
    rng = np.random.default_rng(5)
    image = (obj * np.exp(1j * rng.uniform(-np.pi, np.pi, obj.shape))).astype(np.complex64)
    scaled = (maps * np.linspace(0.5, 2, N)[None, None, :]).astype(np.complex64)
    frames = np.stack([scaled * image, 2 * scaled * image])  # (2, C, ny, nx)
    out = coil_combine(frames, scaled)
    assert out.shape == (2, N, N)
    # conj(S) x / sum |S|^2 recovers a known complex image exactly
    assert np.allclose(out[0], image, atol=1e-5) and np.allclose(out[1], 2 * image, atol=1e-5)
    assert np.allclose(
        rss(frames[0]), np.sqrt((np.abs(frames[0]) ** 2).sum(axis=0)), rtol=1e-5, atol=1e-6
    )
    zero_maps = np.zeros_like(scaled)
    assert np.all(coil_combine(frames[0], zero_maps) == 0)


def test_bad_input():
    images = np.ones((N_COILS, 8, 8), dtype=np.complex64)
    with pytest.raises(ValueError, match="method"):
        estimate_coil_maps(images, method="sense")
    with pytest.raises(ValueError, match="coil_images"):
        estimate_coil_maps(images[0])
    with pytest.raises(ValueError, match="kernel_size"):
        estimate_coil_maps(images, "walsh", kernel_size=4)
    with pytest.raises(ValueError, match="calib_width"):
        estimate_coil_maps(images, calib_width=24)
    with pytest.raises(ValueError, match="espirit_kernel_width"):
        estimate_coil_maps(images, calib_width=6, espirit_kernel_width=7)
    with pytest.raises(ValueError, match="espirit_thresh"):
        estimate_coil_maps(images, calib_width=6, espirit_kernel_width=3, espirit_thresh=1.5)
    with pytest.raises(ValueError, match="espirit_crop"):
        estimate_coil_maps(images, calib_width=6, espirit_kernel_width=3, espirit_crop=-0.1)
    with pytest.raises(ValueError, match="maps"):
        coil_combine(images, images[:2])
    with pytest.raises(TypeError, match="coil_images"):
        rss([1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        rss(np.full((2, 4, 4), np.nan))
    traj = torch.zeros(5, 2)
    with pytest.raises(ValueError, match="kspace"):
        calibration_images(torch.zeros(2, 4, dtype=torch.complex64), traj, (8, 8), 2.0)
    with pytest.raises(ValueError, match="radius"):
        calibration_images(torch.zeros(2, 5, dtype=torch.complex64), traj + 3, (8, 8), 2.0)
