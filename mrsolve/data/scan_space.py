"""Random PROPELLER scans from a parameter space, simulated independently of the reconstruction.

The generalization benchmark (``benchmarks/generalization.py``, issue 18) draws scans
at random from :class:`ScanSpace` (sequence, echoes, dwell, readout length, field
strength, blades, coils, noise, field map, anatomy), simulates each with the explicit
per-sample signal equation of methods/propeller.md ("Acquisition") on an object grid
``upsample`` times finer than the reconstruction grid (no inverse crime; the truth is
box-averaged down to N), with loop coils at random positions and correlated coil noise
plus a noise scan, and writes the raw data with the ``ismrmrd`` package's own API (not
``mrsolve.data.ismrmrd_io``). Ground truth is written beside it (:func:`write_truth_file`).

Readout: M = 2 N samples (2x oversampling, ``BladeGeometry``), so readouts of 64-256
samples give N = 32-128 px images.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import torch
from scipy import ndimage

from mrsolve.data.anatomy import ANATOMIES, draw_anatomy, loop_coils
from mrsolve.data.files import atomic_output
from mrsolve.data.results import GroundTruth, read_truth, write_truth
from mrsolve.propeller.fat import GYROMAGNETIC_HZ_PER_T, fat_signal, fat_spectrum
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.solvers.validation import check_int

OVERSAMPLING = 2
TICK_S = 2.5e-3  # ISMRMRD acquisition_time_stamp unit (Siemens convention)
BLADE_INTERVAL_S = 0.2
SIMULATOR_VERSION = 2  # bump when a change alters the drawn scans (invalidates caches)


@dataclass(frozen=True)
class ScanSpace:
    """Ranges scans are drawn from (issue 18); (low, high) are inclusive.

    Attributes:
        readout: readout samples M (N = M / 2), drawn as multiples of 32.
        dwell_us: dwell time, log-uniform.
        field_strengths_t: B0 choices.
        blades, coils: counts, uniform integers.
        noise: complex noise std relative to the RMS of the noiseless k-space, log-uniform.
        max_offres_hz: max |field map| inside the object, uniform.
        gradient_echo: probability of a gradient-echo scan (else spin echo).
        multi_echo: probability that a gradient-echo scan has 2-4 echoes.
        te_ms: gradient-echo TE range (each echo's TE inside it).
        anatomies: anatomy families, equally likely.
        coverage: L * B / (N pi / 2), the Nyquist coverage of the blades.
        upsample: object grid / reconstruction grid.
    """

    readout: tuple[int, int] = (64, 256)
    dwell_us: tuple[float, float] = (5.0, 50.0)
    field_strengths_t: tuple[float, ...] = (1.5, 3.0)
    blades: tuple[int, int] = (8, 24)
    coils: tuple[int, int] = (4, 32)
    noise: tuple[float, float] = (0.002, 0.03)
    max_offres_hz: tuple[float, float] = (0.0, 250.0)
    gradient_echo: float = 0.5
    multi_echo: float = 0.5
    te_ms: tuple[float, float] = (0.0, 6.0)
    anatomies: tuple[str, ...] = ANATOMIES
    coverage: tuple[float, float] = (0.9, 1.4)
    upsample: int = 2


QUICK_SPACE = ScanSpace(readout=(64, 64), coils=(4, 8), blades=(8, 12))


@dataclass(frozen=True)
class ScanParams:
    """One drawn scan (all the simulator needs besides the seed's random stream)."""

    seed: int
    anatomy: str
    sequence: str
    echo_times_s: tuple[float, ...]
    dwell_s: float
    n_readout: int
    n_blades: int
    n_lines: int
    angle_order: str
    n_coils: int
    field_strength_t: float
    noise: float
    noise_correlation: float
    max_offres_hz: float
    upsample: int
    fov_mm: float = 256.0

    @property
    def size(self) -> int:
        """Reconstruction image size N."""
        return self.n_readout // OVERSAMPLING

    def geometry(self) -> BladeGeometry:
        return BladeGeometry(self.n_blades, self.n_lines, self.size, OVERSAMPLING, self.angle_order)

    def key(self) -> str:
        """Short hash of the parameters and the simulator version (cache file names)."""
        text = json.dumps({**asdict(self), "version": SIMULATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:10]


def draw_params(seed: int, space: ScanSpace | None = None) -> ScanParams:
    """Draw one scan's parameters from ``space`` (reproducible from ``seed``)."""
    seed = check_int("seed", seed, minimum=0)
    space = space or ScanSpace()
    rng = np.random.default_rng([seed, 18])
    n_readout = 32 * int(rng.integers(space.readout[0] // 32, space.readout[1] // 32 + 1))
    size = n_readout // OVERSAMPLING
    n_blades = int(rng.integers(space.blades[0], space.blades[1] + 1))
    coverage = rng.uniform(*space.coverage)
    n_lines = int(np.clip(round(coverage * size * math.pi / 2 / n_blades), 8, size))
    gradient = rng.uniform() < space.gradient_echo
    lo, hi = space.te_ms
    if not gradient:
        echoes = (
            rng.uniform(60.0, 120.0),
        )  # header only: spin-echo samples are timed from the echo
    elif rng.uniform() < space.multi_echo:
        n_echo = int(rng.integers(2, 5))
        spacing = rng.uniform(0.6, (hi - lo) / n_echo)
        first = rng.uniform(lo, hi - spacing * (n_echo - 1))
        echoes = tuple(first + spacing * np.arange(n_echo))
    else:
        echoes = (rng.uniform(lo, hi),)
    return ScanParams(
        seed=seed,
        anatomy=str(rng.choice(space.anatomies)),
        sequence="gradient_echo" if gradient else "spin_echo",
        echo_times_s=tuple(round(float(te) * 1e-3, 7) for te in echoes),
        dwell_s=float(np.exp(rng.uniform(*np.log(space.dwell_us)))) * 1e-6,
        n_readout=n_readout,
        n_blades=n_blades,
        n_lines=n_lines,
        angle_order=str(rng.choice(["sequential", "interleaved"])),
        n_coils=int(rng.integers(space.coils[0], space.coils[1] + 1)),
        field_strength_t=float(rng.choice(space.field_strengths_t)),
        noise=float(np.exp(rng.uniform(*np.log(space.noise)))),
        noise_correlation=float(rng.uniform(0.05, 0.4)),
        max_offres_hz=float(rng.uniform(*space.max_offres_hz)),
        upsample=space.upsample,
    )


# -- simulation --------------------------------------------------------------------------


def box_average(image: np.ndarray, factor: int) -> np.ndarray:
    """(n, n) on the fine grid -> (n / factor, n / factor): the mean over each coarse pixel.

    Coarse pixel j is centred on fine pixel factor * j (the pixel-centre convention of
    ``propeller.dft``: x = column - n // 2), so for even ``factor`` the fine pixels at
    its two edges are half inside and get half weight. Leading axes are kept.
    """
    weights = np.ones(factor + 1 - factor % 2)
    if factor % 2 == 0:
        weights[[0, -1]] = 0.5
    weights /= factor

    def smooth(x):
        for axis in (-2, -1):
            x = ndimage.correlate1d(x, weights, axis=axis, mode="constant")
        return x[..., ::factor, ::factor]

    if np.iscomplexobj(image):
        return smooth(image.real) + 1j * smooth(image.imag)
    return smooth(np.asarray(image, dtype=np.float64))


def explicit_kspace(
    water: np.ndarray,
    fat: np.ndarray,
    field_map_hz: np.ndarray,
    coils: np.ndarray,
    readout_k: np.ndarray,
    line_k: np.ndarray,
    angles: np.ndarray,
    times_s: np.ndarray,
    field_strength_t: float,
    image_size: int,
    chunk_bytes: int = 2**26,
) -> np.ndarray:
    """Noiseless k-space (C, B, E, L, M) complex64 by the per-sample signal equation.

    y = sum_r S_c(r) [w(r) + f(r) sum_p a_p e^{i 2 pi f_p t}] e^{i 2 pi psi(r) t}
        e^{-i 2 pi (kx x + ky y)} (N / n)^2,   x, y in FOV fractions

    summed over the object pixels (w or f nonzero) of the fine (n, n) grid, for sample
    (l, u) of blade b at k = readout_k[u] (cos, sin)_b + line_k[l] (-sin, cos)_b in
    cycles/FOV and echo e at time times_s[e, u]. A fine pixel has (N / n)^2 the area of a
    reconstruction pixel (N = ``image_size``), so the scale is that of the box-averaged
    truth on the N x N grid.

    Args:
        water, fat, field_map_hz: (n, n) real maps on the fine grid (Hz for the field).
        coils: (C, n, n) complex sensitivities on the fine grid.
        readout_k: (M,), line_k: (L,) cycles/FOV; angles: (B,) radians.
        times_s: (E, M) sample times of each echo in seconds.
        field_strength_t: B0 for the six-peak fat spectrum.
        image_size: reconstruction image size N.
        chunk_bytes: memory budget of one block of lines.
    """
    n = water.shape[-1]
    obj = (water != 0) | (fat != 0)
    rows, cols = np.nonzero(obj)
    pos = np.stack([cols - n // 2, rows - n // 2], -1) / n  # (P, 2) as (x, y) in FOV fractions
    pos_t, psi = torch.from_numpy(pos), torch.from_numpy(field_map_hz[obj].astype(np.float64))
    coil = torch.from_numpy(coils[:, rows, cols]).to(torch.complex64)
    species = torch.cat(
        [coil * torch.from_numpy(water[obj]).float(), coil * torch.from_numpy(fat[obj]).float()]
    )  # (2C, P): water rows, then fat rows
    n_coils, n_pix = coils.shape[0], pos.shape[0]
    species *= (image_size / n) ** 2  # a fine pixel is (N / n)^2 of a reconstruction pixel
    times = torch.from_numpy(np.asarray(times_s, dtype=np.float64))
    spectrum = fat_spectrum(field_strength_t, "six_peak")
    fat_phase = fat_signal(times, spectrum)  # (E, M)
    time_phase = [_polar(2 * math.pi * times[e][:, None] * psi) for e in range(times.shape[0])]
    kro, kpe = (
        torch.from_numpy(np.asarray(readout_k, np.float64)),
        torch.from_numpy(np.asarray(line_k, np.float64)),
    )
    n_e, n_l, n_m = times.shape[0], kpe.shape[0], kro.shape[0]
    out = torch.empty(n_coils, len(angles), n_e, n_l, n_m, dtype=torch.complex64)
    lines_per_chunk = max(1, chunk_bytes // (8 * 2 * n_coils * n_pix))
    for b, theta in enumerate(np.asarray(angles, np.float64)):
        ro = torch.tensor([math.cos(theta), math.sin(theta)], dtype=torch.float64)
        pe = torch.tensor([-math.sin(theta), math.cos(theta)], dtype=torch.float64)
        readout = _polar(-2 * math.pi * kro[:, None] * (pos_t @ ro)[None])  # (M, P)
        lines = _polar(-2 * math.pi * kpe[:, None] * (pos_t @ pe)[None])  # (L, P)
        per_echo = [(readout * tp).T.contiguous() for tp in time_phase]  # (P, M) each
        for l0 in range(0, n_l, lines_per_chunk):
            block = lines[l0 : l0 + lines_per_chunk]
            left = (species[:, None, :] * block[None]).reshape(-1, n_pix)
            for e in range(n_e):
                y = (left @ per_echo[e]).reshape(2, n_coils, block.shape[0], n_m)
                out[:, b, e, l0 : l0 + block.shape[0]] = y[0] + fat_phase[e] * y[1]
    return out.numpy()


def _polar(phase: torch.Tensor) -> torch.Tensor:
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)


def sample_times(params: ScanParams) -> np.ndarray:
    """(E, M) sample times in seconds: (u - c) dt, plus TE_e for gradient echo."""
    geom = params.geometry()
    u = (np.arange(geom.n_readout) - geom.center_sample) * params.dwell_s
    tes = np.asarray(params.echo_times_s)
    if params.sequence == "spin_echo":
        return u[None].repeat(len(tes), 0)
    return tes[:, None] + u[None]


@dataclass
class SimulatedScan:
    """A simulated raw scan and its ground truth.

    Attributes:
        params: what was drawn.
        kspace: (C, B, E, L, M) complex64 noisy samples.
        noise: (C, S) complex64 noise-scan samples.
        noise_covariance: (C, C) complex128.
        truth: the truth maps at N x N (see :func:`truth_maps`).
    """

    params: ScanParams
    kspace: np.ndarray
    noise: np.ndarray
    noise_covariance: np.ndarray
    truth: dict = field(default_factory=dict)


def image_at(water, fat, field_map_hz, t_s: float, field_strength_t: float) -> np.ndarray:
    """The object's complex image (w + f fat(t)) e^{i 2 pi psi t} at time ``t_s`` (same grid)."""
    spectrum = fat_spectrum(field_strength_t, "six_peak")
    fat_t = complex(fat_signal(torch.tensor(float(t_s), dtype=torch.float64), spectrum))
    return (water + fat * fat_t) * np.exp(2j * np.pi * field_map_hz * t_s)


def truth_maps(anatomy, coils: np.ndarray, params: ScanParams) -> dict:
    """Ground truth at N x N, box-averaged from the fine grid.

    Keys: image (t = 0), image_at_te (E, N, N) at each echo time, echo_times_s, water,
    fat (real), fat_fraction |F| / (|W| + |F|) in the mask, field_map_hz (density-weighted
    mean over each pixel), mask (>= half the pixel is object), water_mask (mask where
    the water density is >= 10 % of its 99th percentile), coil_maps (C, N, N).
    """
    s = params.upsample
    w, f = box_average(anatomy.water, s), box_average(anatomy.fat, s)
    rho = anatomy.water + anatomy.fat
    weight = box_average(rho, s)
    psi = np.where(
        weight > 0,
        box_average(rho * anatomy.field_map_hz, s) / np.maximum(weight, 1e-30),
        box_average(anatomy.field_map_hz, s),
    )
    mask = box_average(anatomy.mask.astype(float), s) >= 0.5
    ff = np.where(mask, f / np.maximum(w + f, 1e-30), 0.0)
    level = np.percentile(w[mask], 99) if mask.any() else 0.0
    images = [
        box_average(
            image_at(anatomy.water, anatomy.fat, anatomy.field_map_hz, t, params.field_strength_t),
            s,
        )
        for t in (0.0, *params.echo_times_s)
    ]
    return {
        "image": images[0],
        "image_at_te": np.stack(images[1:]),
        "echo_times_s": np.asarray(params.echo_times_s),
        "water": w,
        "fat": f,
        "fat_fraction": ff,
        "field_map_hz": psi,
        "mask": mask,
        "water_mask": mask & (w >= 0.1 * level),
        "coil_maps": box_average(coils, s),
    }


def _scan_rng(params: ScanParams) -> np.random.Generator:
    return np.random.default_rng([params.seed, 18, 1])


def band_limit(image: np.ndarray, size: int) -> np.ndarray:
    """(n, n) fine-grid image -> (size, size): its spectrum cut to the size x size band
    |k| < size / 2 (cycles/FOV, both axes), on the coarse grid's pixel centres (coarse
    pixel j at fine pixel (n / size) j, the convention of :func:`box_average`)."""
    n = image.shape[-1]
    spectrum = np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(image, axes=(-2, -1))), axes=(-2, -1))
    lo = n // 2 - size // 2
    band = spectrum[..., lo : lo + size, lo : lo + size]
    coarse = np.fft.fftshift(np.fft.ifft2(np.fft.ifftshift(band, axes=(-2, -1))), axes=(-2, -1))
    return coarse * (size / n) ** 2


def resolution_matched_image(params: ScanParams, t_s: float = 0.0) -> np.ndarray:
    """(N, N) complex: the object at time ``t_s`` as a noiseless, blur-free, fully sampled
    Cartesian scan at N px sees it (:func:`band_limit` of the fine-grid object).

    This is the best any reconstruction at N px can do from band-limited data; the
    box-averaged truth also holds detail beyond that band (the ``upsample`` grid's).
    """
    n, s = params.size, params.upsample
    anatomy = draw_anatomy(params.anatomy, n * s, params.max_offres_hz, _scan_rng(params))
    obj = image_at(anatomy.water, anatomy.fat, anatomy.field_map_hz, t_s, params.field_strength_t)
    return band_limit(obj, n)


def simulate_scan(params: ScanParams) -> SimulatedScan:
    """Simulate the scan ``params`` describes (anatomy, coils and noise from its seed)."""
    rng = _scan_rng(params)
    n_fine = params.size * params.upsample
    anatomy = draw_anatomy(params.anatomy, n_fine, params.max_offres_hz, rng)
    coils = loop_coils(n_fine, params.n_coils, rng)
    geom = params.geometry()
    kspace = explicit_kspace(
        anatomy.water,
        anatomy.fat,
        anatomy.field_map_hz,
        coils,
        geom.readout_k().double().numpy(),
        geom.line_k().double().numpy(),
        (torch.arange(geom.n_blades, dtype=torch.float64) * math.pi / geom.n_blades)[
            _angle_index(geom)
        ].numpy(),
        sample_times(params),
        params.field_strength_t,
        params.size,
    )
    sigma = params.noise * float(np.sqrt(np.mean(np.abs(kspace) ** 2)))
    cov = sigma**2 * _coil_covariance(params.n_coils, params.noise_correlation, rng)
    chol = np.linalg.cholesky(cov)
    kspace = kspace + _noise(chol, kspace.shape, rng)
    noise = _noise(chol, (params.n_coils, 1024), rng)
    return SimulatedScan(params, kspace, noise, cov, truth_maps(anatomy, coils, params))


def _angle_index(geom: BladeGeometry) -> torch.Tensor:
    """Blade order of ``geom.angle_order`` (the angles themselves are computed in float64)."""
    order = torch.arange(geom.n_blades)
    return torch.cat([order[0::2], order[1::2]]) if geom.angle_order == "interleaved" else order


def _coil_covariance(n_coils: int, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Random coil noise covariance G G^H, G = diag(gains) (I + rho W), mean diagonal 1."""
    w = rng.standard_normal((n_coils, n_coils)) + 1j * rng.standard_normal((n_coils, n_coils))
    g = np.diag(rng.uniform(0.7, 1.3, n_coils)) @ (np.eye(n_coils) + rho * w / np.sqrt(2 * n_coils))
    cov = g @ g.conj().T
    return cov / np.real(np.trace(cov)) * n_coils


def _noise(chol: np.ndarray, shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Complex Gaussian samples of covariance chol chol^H along the first axis (coils)."""
    n = int(np.prod(shape[1:]))
    z = (rng.standard_normal((shape[0], n)) + 1j * rng.standard_normal((shape[0], n))) / np.sqrt(2)
    return (chol @ z).reshape(shape).astype(np.complex64)


# -- files -------------------------------------------------------------------------------


def _header(params: ScanParams, n_coils: int) -> str:
    geom = params.geometry()
    n = params.size
    space = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=n, y=n, z=1),
        fieldOfView_mm=xsd.fieldOfViewMm(x=params.fov_mm, y=params.fov_mm, z=5.0),
    )
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_0=xsd.limitType(
            minimum=0, maximum=geom.n_readout - 1, center=geom.center_sample
        ),
        kspace_encoding_step_1=xsd.limitType(
            minimum=0, maximum=geom.n_lines - 1, center=geom.n_lines // 2
        ),
        set=xsd.limitType(minimum=0, maximum=geom.n_blades - 1, center=0),
        contrast=xsd.limitType(minimum=0, maximum=len(params.echo_times_s) - 1, center=0),
    )
    hdr = xsd.ismrmrdHeader(
        experimentalConditions=xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=round(GYROMAGNETIC_HZ_PER_T * params.field_strength_t)
        ),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemFieldStrength_T=params.field_strength_t, receiverChannels=n_coils
        ),
        encoding=[
            xsd.encodingType(
                encodedSpace=space,
                reconSpace=space,
                encodingLimits=limits,
                trajectory=xsd.trajectoryType.OTHER,
                trajectoryDescription=xsd.trajectoryDescriptionType(
                    identifier="propeller", comment=f"scan_space seed {params.seed}"
                ),
            )
        ],
        sequenceParameters=xsd.sequenceParametersType(
            TE=[te * 1e3 for te in params.echo_times_s],
            sequence_type="GradientEcho" if params.sequence == "gradient_echo" else "SpinEcho",
        ),
    )
    return xsd.ToXML(hdr)


def write_raw(path: str | os.PathLike, sim: SimulatedScan) -> Path:
    """Write the scan as ISMRMRD HDF5 with the ``ismrmrd`` API (atomically).

    Noise scan first (ACQ_IS_NOISE_MEASUREMENT), then for each blade, line and echo one
    acquisition: ``idx.set`` = blade, ``idx.kspace_encode_step_1`` = line,
    ``idx.contrast`` = echo, trajectory (M, 2) in cycles/FOV as (kx, ky).
    """
    p, geom = sim.params, sim.params.geometry()
    traj = geom.trajectory().numpy()  # (B, L, M, 2), blades in acquisition order
    angles = geom.angles().numpy()
    with atomic_output(path) as tmp:
        with ismrmrd.Dataset(str(tmp), "dataset", create_if_needed=True) as dset:
            dset.write_xml_header(_header(p, p.n_coils))
            noise = ismrmrd.Acquisition.from_array(sim.noise)
            noise.sample_time_us = p.dwell_s * 1e6
            noise.set_flag(ismrmrd.ACQ_IS_NOISE_MEASUREMENT)
            dset.append_acquisition(noise)
            counter = 1
            for b in range(p.n_blades):
                c, s = float(np.cos(angles[b])), float(np.sin(angles[b]))
                for line in range(p.n_lines):
                    for e in range(len(p.echo_times_s)):
                        acq = ismrmrd.Acquisition.from_array(
                            sim.kspace[:, b, e, line], traj[b, line].astype(np.float32)
                        )
                        acq.sample_time_us = p.dwell_s * 1e6
                        acq.center_sample = geom.center_sample
                        acq.scan_counter = counter
                        acq.acquisition_time_stamp = round(b * BLADE_INTERVAL_S / TICK_S)
                        acq.idx.set = b
                        acq.idx.kspace_encode_step_1 = line
                        acq.idx.contrast = e
                        acq.read_dir[:] = (c, s, 0.0)
                        acq.phase_dir[:] = (-s, c, 0.0)
                        acq.slice_dir[:] = (0.0, 0.0, 1.0)
                        if line == 0:
                            acq.set_flag(ismrmrd.ACQ_FIRST_IN_ENCODE_STEP1)
                        if line == p.n_lines - 1:
                            acq.set_flag(ismrmrd.ACQ_LAST_IN_ENCODE_STEP1)
                        dset.append_acquisition(acq)
                        counter += 1
    return Path(path)


_EXTRA = ("image_at_te", "echo_times_s", "water_mask")


def write_truth_file(path: str | os.PathLike, sim: SimulatedScan) -> Path:
    """Write the truth in the output layout (``read_truth`` reads it) plus /image_at_te,
    /echo_times_s and /water_mask; atomically."""
    t = sim.truth
    truth = GroundTruth(
        image=torch.from_numpy(t["image"].astype(np.complex64)),
        water=torch.from_numpy(t["water"].astype(np.complex64)),
        fat=torch.from_numpy(t["fat"].astype(np.complex64)),
        fat_fraction=torch.from_numpy(t["fat_fraction"].astype(np.float32)),
        field_map_hz=torch.from_numpy(t["field_map_hz"].astype(np.float32)),
        mask=torch.from_numpy(t["mask"]),
        coil_maps=torch.from_numpy(t["coil_maps"].astype(np.complex64)),
        noise_covariance=torch.from_numpy(sim.noise_covariance.astype(np.complex64)),
        config={"scan_space": asdict(sim.params), "simulator_version": SIMULATOR_VERSION},
    )
    with atomic_output(path) as tmp:
        write_truth(tmp, truth)
        with h5py.File(tmp, "a") as handle:
            for name in _EXTRA:
                handle.create_dataset(name, data=t[name])
    return Path(path)


@dataclass
class BenchmarkTruth:
    """A truth file read back: the :class:`GroundTruth` plus the benchmark's extras."""

    truth: GroundTruth
    image_at_te: np.ndarray
    echo_times_s: np.ndarray
    water_mask: np.ndarray
    params: ScanParams

    def image_at(self, t_s: float) -> tuple[np.ndarray, bool]:
        """(image, exact) at time ``t_s``: stored at t = 0 and at each TE (exact), else
        computed from the N x N maps (approximate: no intra-pixel dephasing)."""
        if abs(t_s) < 1e-9:
            return self.truth.image.numpy(), True
        hit = np.flatnonzero(np.abs(self.echo_times_s - t_s) < 1e-7)
        if hit.size:
            return self.image_at_te[hit[0]], True
        t = self.truth
        water, fat = t.water.real.numpy(), t.fat.real.numpy()
        return image_at(
            water, fat, t.field_map_hz.numpy(), t_s, self.params.field_strength_t
        ), False


def read_truth_file(path: str | os.PathLike) -> BenchmarkTruth:
    """Read a truth file written by :func:`write_truth_file`."""
    truth = read_truth(path)
    with h5py.File(path, "r") as handle:
        extra = {name: handle[name][()] for name in _EXTRA}
    params = truth.config["scan_space"]
    params["echo_times_s"] = tuple(params["echo_times_s"])
    return BenchmarkTruth(
        truth,
        extra["image_at_te"],
        extra["echo_times_s"],
        extra["water_mask"],
        ScanParams(**params),
    )


def scan_files(
    seeds, folder: str | os.PathLike, space: ScanSpace | None = None
) -> list[tuple[Path, Path]]:
    """(raw, truth) paths of the scans drawn with ``seeds``, simulated into ``folder`` when
    not cached there yet (file names carry the parameters' hash)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for seed in seeds:
        params = draw_params(int(seed), space)
        stem = folder / f"scan{int(seed):05d}_{params.key()}"
        raw, truth = stem.with_suffix(".h5"), Path(f"{stem}_truth.h5")
        if not (raw.is_file() and truth.is_file()):
            sim = simulate_scan(params)
            write_truth_file(truth, sim)
            write_raw(raw, sim)
        out.append((raw, truth))
    return out
