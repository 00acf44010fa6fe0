"""Coil sensitivities estimated from data, and coil combination.

Coil images x_c(r) = S_c(r) m(r) determine the maps only up to a per-pixel complex
factor, which both methods fix the same way:

- magnitude: sum_c |S_c(r)|^2 = 1 where there is signal, 0 elsewhere;
- phase: relative to a virtual reference coil, a^H S(r) real and positive, where a is
  the dominant eigenvector of sum_r w(r) S(r) S(r)^H (w: local signal energy). This
  reference is a smooth, body-coil-like combination of all coils, so the maps stay
  smooth and the image keeps its own phase (field-map and fat phase stay in the image,
  not in the maps), unlike a single-coil reference that is noisy where that coil is weak.

Methods:

- ``"espirit"`` (default): ESPIRiT (Uecker et al., MRM 2014) in torch, on any device,
  from the central ``calib_width`` square of the coil images' Cartesian k-space (which
  PROPELLER samples densely: give it the gridded coil images). Maps are masked by the
  eigenvalue (how well the calibration explains a pixel), not by signal intensity, so
  dim tissue far from every coil keeps its maps. Measured against BART's ``ecalib`` in
  docs/coil_maps.md.
- ``"walsh"``: adaptive combination (Walsh et al., MRM 2000): the dominant eigenvector
  of the coil correlation matrix averaged over a ``kernel_size`` square window. Give it
  low-resolution coil images (e.g. gridded from the central k-space disc that every
  PROPELLER blade covers). Its mask is a signal-energy threshold.

:func:`calibration_images` makes the low-resolution coil images from non-Cartesian
k-space: a Hann-windowed adjoint NUFFT of the samples inside a central disc.

Numpy arrays in give numpy arrays out; torch tensors keep their device.
"""

from __future__ import annotations

import torch

from mrsolve.propeller.noise import as_tensor
from mrsolve.propeller.nufft import NUFFT
from mrsolve.solvers.validation import check_choice, check_finite, check_positive

METHODS = ("espirit", "walsh")


def _check_coil_images(name: str, x: torch.Tensor, exact_ndim: bool = False) -> None:
    if (x.ndim != 3) if exact_ndim else (x.ndim < 3):
        expected = "(C, ny, nx)" if exact_ndim else "(..., C, ny, nx)"
        raise ValueError(f"{name} must have shape {expected}, got {tuple(x.shape)}")
    check_finite(name, x)


def rss(coil_images):
    """Root-sum-of-squares sqrt(sum_c |x_c|^2) of coil images (..., C, ny, nx) -> (..., ny, nx).

    Returns float32 (numpy if the input was numpy).
    """
    x, was_numpy = as_tensor("coil_images", coil_images)
    _check_coil_images("coil_images", x)
    out = x.abs().pow(2).sum(dim=-3).sqrt().float()
    return out.numpy() if was_numpy else out


def coil_combine(coil_images, maps):
    """SENSE-1 combination sum_c conj(S_c) x_c / sum_c |S_c|^2 (0 where the maps vanish).

    Args:
        coil_images: (..., C, ny, nx) complex coil images.
        maps: (C, ny, nx) coil sensitivities.

    Returns:
        (..., ny, nx) complex64 image (numpy if ``coil_images`` was numpy).
    """
    x, was_numpy = as_tensor("coil_images", coil_images)
    s, _ = as_tensor("maps", maps)
    _check_coil_images("coil_images", x)
    if tuple(s.shape) != tuple(x.shape[-3:]):
        raise ValueError(f"maps must have shape {tuple(x.shape[-3:])}, got {tuple(s.shape)}")
    s = s.to(device=x.device, dtype=torch.complex64)
    energy = s.abs().pow(2).sum(dim=0)
    num = (s.conj() * x.to(torch.complex64)).sum(dim=-3)
    out = torch.where(energy > 0, num / energy.clamp_min(torch.finfo(torch.float32).tiny), 0)
    return out.numpy() if was_numpy else out


def calibration_images(kspace, traj, image_shape, radius: float):
    """Low-resolution coil images from the k-space samples with |k| < ``radius``.

    The samples are weighted by a Hann window 0.5 (1 + cos(pi |k| / radius)) and gridded
    with the adjoint NUFFT, divided by ny nx times the mean sampling density inside the
    disc (samples per unit area in cycles/FOV), so the image keeps its scale. This
    assumes the disc is uniformly sampled, which PROPELLER guarantees for a radius up to
    half the blade width (L / 2 cycles/FOV: every blade covers that disc).

    Args:
        kspace: (C, *traj.shape[:-1]) complex samples.
        traj: (..., 2) k positions in cycles/FOV, last axis (kx, ky).
        image_shape: (ny, nx).
        radius: disc radius in cycles/FOV.

    Returns:
        (C, ny, nx) complex64 coil images (numpy if ``kspace`` was numpy).
    """
    y, was_numpy = as_tensor("kspace", kspace)
    k, _ = as_tensor("traj", traj)
    check_positive("radius", radius)
    if k.ndim < 2 or k.shape[-1] != 2 or y.ndim < 2 or tuple(y.shape[1:]) != tuple(k.shape[:-1]):
        raise ValueError(
            f"kspace must have shape (C, *traj.shape[:-1]) with traj (..., 2), got kspace "
            f"{tuple(y.shape)} and traj {tuple(k.shape)}"
        )
    flat_k = k.reshape(-1, 2).to(device=y.device, dtype=torch.float32)
    dist = flat_k.norm(dim=-1)
    inside = dist < radius
    if int(inside.sum()) == 0:
        raise ValueError(f"radius must enclose some samples, got {radius} (none with |k| < it)")
    window = 0.5 * (1 + torch.cos(torch.pi * dist[inside] / radius))
    density = int(inside.sum()) / (torch.pi * radius**2) * image_shape[0] * image_shape[1]
    samples = y.reshape(y.shape[0], -1)[:, inside].to(torch.complex64) * window
    op = NUFFT(flat_k[inside], image_shape, batch_shape=(y.shape[0],))
    out = op.H(samples / density)
    return out.numpy() if was_numpy else out


def _align_phase(maps: torch.Tensor, energy: torch.Tensor) -> torch.Tensor:
    """Rotate each pixel's map vector so that a^H S(r) is real and positive (see module doc)."""
    flat = maps.reshape(maps.shape[0], -1)
    gram = (flat * energy.reshape(1, -1)) @ flat.mH
    ref = torch.linalg.eigh(gram.to(torch.complex128))[1][:, -1].to(maps.dtype)
    proj = (ref.conj()[:, None, None] * maps).sum(dim=0)
    phase = torch.where(proj.abs() > 0, proj.conj() / proj.abs().clamp_min(1e-30), 0)
    return maps * phase


def _walsh(x: torch.Tensor, kernel_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dominant eigenvectors (C, ny, nx) and eigenvalues (ny, nx) of windowed x x^H."""
    n_coils, ny, nx = x.shape
    corr = torch.empty(ny, nx, n_coils, n_coils, dtype=x.dtype, device=x.device)
    for c in range(n_coils):  # one row of R at a time: memory O(C ny nx), not O(C^2 ny nx)
        row = torch.view_as_real(x[c] * x.conj()).permute(0, 3, 1, 2).reshape(-1, 1, ny, nx)
        row = torch.nn.functional.avg_pool2d(
            row, kernel_size, stride=1, padding=kernel_size // 2, count_include_pad=False
        )
        row = row.reshape(n_coils, 2, ny, nx).permute(2, 3, 0, 1).contiguous()
        corr[:, :, c, :] = torch.view_as_complex(row)  # R[c, d] = <x_c conj(x_d)>
    values, vectors = torch.linalg.eigh(corr)
    return vectors[..., -1].permute(2, 0, 1), values[..., -1]


def centred_fft2(x: torch.Tensor) -> torch.Tensor:
    """k-space (..., ny, nx) of images (..., ny, nx): k = 0 at index (ny // 2, nx // 2), as
    the image centre (x = column - nx // 2), with the forward sign e^{-i 2 pi k.r / N}."""
    return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=(-2, -1))), dim=(-2, -1))


def _signal_kernels(calib: torch.Tensor, width: int, thresh: float) -> torch.Tensor:
    """Rows (K, C, w, w) of V^H spanning the calibration matrix's signal subspace.

    The calibration matrix has one row per w x w patch of the Cartesian calibration
    block (C, n, n); its right singular vectors with singular value > thresh * s_max
    span the patches that coil images of smooth maps can produce.
    """
    n_coils = calib.shape[0]
    patches = calib.unfold(1, width, 1).unfold(2, width, 1)  # (C, n-w+1, n-w+1, w, w)
    matrix = patches.permute(1, 2, 0, 3, 4).reshape(-1, n_coils * width * width)
    _, s, vh = torch.linalg.svd(matrix, full_matrices=False)
    return vh[s > thresh * s[0]].reshape(-1, n_coils, width, width)


def _espirit(
    x: torch.Tensor, calib_width: int, kernel_width: int, thresh: float, crop: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """ESPIRiT (Uecker et al., MRM 2014): maps (C, ny, nx), zero where the eigenvalue < crop,
    and the eigenvalue (ny, nx).

    With the signal kernels v_j (rows of V^H), coil vectors S(r) obeying the calibration
    are the eigenvectors with eigenvalue 1 of
        G(r) = w^-2 sum_j g_j(r) g_j(r)^H,   g_jc(r) = sum_p v_jc[p] e^{i 2 pi p.r / N}.
    G is a trigonometric polynomial with offsets |p - q| < w, so its coefficients come
    from a (2w - 1)^2 FFT and it is evaluated on the image grid row block by row block.
    """
    n_coils, ny, nx = x.shape
    n, w = calib_width, kernel_width
    k = centred_fft2(x)
    y0, x0 = ny // 2 - n // 2, nx // 2 - n // 2
    kernels = _signal_kernels(k[:, y0 : y0 + n, x0 : x0 + n], w, thresh)
    m = 2 * w - 1
    f = torch.fft.fft2(kernels, s=(m, m))
    coeff = torch.fft.ifft2(torch.einsum("jcab,jdab->cdab", f, f.conj())) / (w * w)
    offsets = torch.fft.fftfreq(m, 1 / m, dtype=torch.float64, device=x.device)

    def waves(size: int) -> torch.Tensor:  # (m, size): e^{i 2 pi delta r / size}
        r = torch.arange(size, dtype=torch.float64, device=x.device) - size // 2
        angle = 2 * torch.pi * torch.outer(offsets, r) / size
        return torch.polar(torch.ones_like(angle), angle)

    along_x = torch.einsum("cdab,bx->cdax", coeff, waves(nx).to(x.dtype))
    wy = waves(ny).to(x.dtype)
    maps = torch.empty(ny, nx, n_coils, dtype=x.dtype, device=x.device)
    values = torch.empty(ny, nx, dtype=torch.float32, device=x.device)
    rows = max(1, 4096 // nx)  # G of a block of rows: rows nx C^2 entries
    for r0 in range(0, ny, rows):
        gram = torch.einsum("cdax,ay->yxcd", along_x, wy[:, r0 : r0 + rows])
        eigenvalues, vectors = torch.linalg.eigh(gram)
        maps[r0 : r0 + rows] = vectors[..., -1]
        values[r0 : r0 + rows] = eigenvalues[..., -1]
    return maps.permute(2, 0, 1) * (values > crop), values


def _check_espirit_options(
    shape: tuple[int, ...], calib_width: int, kernel_width: int, thresh: float, crop: float
) -> None:
    size = min(shape[-2:])
    if not isinstance(calib_width, int) or not 1 <= calib_width <= size:
        raise ValueError(f"calib_width must be an integer in [1, {size}], got {calib_width!r}")
    if not isinstance(kernel_width, int) or not 1 <= kernel_width <= calib_width:
        raise ValueError(
            f"espirit_kernel_width must be an integer in [1, calib_width={calib_width}], "
            f"got {kernel_width!r}"
        )
    if not 0 <= thresh < 1:
        raise ValueError(f"espirit_thresh must be in [0, 1), got {thresh!r}")
    if not 0 <= crop < 1:
        raise ValueError(f"espirit_crop must be in [0, 1), got {crop!r}")


def estimate_coil_maps(
    coil_images,
    method: str = "espirit",
    *,
    kernel_size: int = 7,
    threshold: float = 0.005,
    calib_width: int = 24,
    espirit_kernel_width: int = 6,
    espirit_thresh: float = 0.02,
    espirit_crop: float = 0.95,
):
    """Coil sensitivities (C, ny, nx) complex64 from coil images (C, ny, nx).

    Args:
        coil_images: complex coil images (full resolution for "espirit", which uses only
            the central ``calib_width`` square of their k-space; low resolution for "walsh").
        method: "espirit" or "walsh" (adaptive, windowed eigenvector).
        kernel_size: Walsh window side in pixels (odd).
        threshold: Walsh maps are zero where the windowed signal energy is below
            ``threshold`` times its maximum.
        calib_width: ESPIRiT calibration square (k-space samples per side).
        espirit_kernel_width: ESPIRiT kernel side (k-space samples).
        espirit_thresh: kernels kept: singular values > espirit_thresh * the largest.
        espirit_crop: maps are zero where the ESPIRiT eigenvalue is below it.

    Returns:
        maps normalized to sum_c |S_c|^2 = 1 where there is signal (0 elsewhere), phase
        relative to the virtual reference coil of the module doc; numpy if the input was.

    Raises:
        ValueError: a bad shape, method or option (named).
    """
    x, was_numpy = as_tensor("coil_images", coil_images)
    _check_coil_images("coil_images", x, exact_ndim=True)
    check_choice("method", method, METHODS)
    x = x.to(torch.complex64)
    energy = x.abs().pow(2).sum(dim=0)
    if method == "walsh":
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        check_positive("threshold", threshold, allow_zero=True)
        maps, energy = _walsh(x, kernel_size)
        maps = maps * (energy > threshold * energy.max())
    else:
        options = (calib_width, espirit_kernel_width, espirit_thresh, espirit_crop)
        _check_espirit_options(tuple(x.shape), *options)
        maps, _ = _espirit(x, *options)
    norm = maps.abs().pow(2).sum(dim=0).sqrt()
    maps = torch.where(norm > 0, maps / norm.clamp_min(1e-30), 0)
    maps = _align_phase(maps, energy)
    return maps.numpy() if was_numpy else maps
