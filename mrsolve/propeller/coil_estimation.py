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

- ``"walsh"``: adaptive combination (Walsh et al., MRM 2000): the dominant eigenvector
  of the coil correlation matrix averaged over a ``kernel_size`` square window. Torch,
  batched over pixels, runs on any device. Give it low-resolution coil images (e.g.
  gridded from the central k-space disc that every PROPELLER blade covers).
- ``"espirit"``: ESPIRiT (Uecker et al., MRM 2014) through sigpy's ``EspiritCalib`` on the
  centred Cartesian k-space of the coil images (CPU, numpy); its calibration region is
  the central ``calib_width`` square, which PROPELLER samples fully.

:func:`calibration_images` makes the low-resolution coil images from non-Cartesian
k-space: a Hann-windowed adjoint NUFFT of the samples inside a central disc.

Numpy arrays in give numpy arrays out; torch tensors keep their device.
"""

from __future__ import annotations

import numpy as np
import sigpy
import sigpy.mri
import torch

from mrsolve.propeller.noise import as_tensor
from mrsolve.propeller.nufft import NUFFT
from mrsolve.solvers.validation import check_choice, check_finite, check_positive

METHODS = ("walsh", "espirit")


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


def _espirit(
    x: torch.Tensor, calib_width: int, kernel_width: int, thresh: float, crop: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """ESPIRiT maps (C, ny, nx) via sigpy, and the signal energy sum_c |x_c|^2."""
    image = x.detach().cpu().numpy()
    kspace = sigpy.fft(image, axes=(-2, -1))
    maps = sigpy.mri.app.EspiritCalib(
        kspace,
        calib_width=calib_width,
        thresh=thresh,
        kernel_width=kernel_width,
        crop=crop,
        show_pbar=False,
    ).run()
    maps = torch.from_numpy(np.nan_to_num(maps)).to(device=x.device, dtype=torch.complex64)
    return maps, x.abs().pow(2).sum(dim=0)


def estimate_coil_maps(
    coil_images,
    method: str = "walsh",
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
        coil_images: complex coil images, ideally low resolution.
        method: "walsh" (adaptive, windowed eigenvector) or "espirit" (sigpy).
        kernel_size: Walsh window side in pixels (odd).
        threshold: Walsh maps are zero where the windowed signal energy is below
            ``threshold`` times its maximum.
        calib_width: ESPIRiT calibration square (k-space samples per side).
        espirit_kernel_width, espirit_thresh, espirit_crop: sigpy ``EspiritCalib``'s
            ``kernel_width``, ``thresh`` and ``crop`` (maps are zero where the
            eigenvalue is below ``crop``).

    Returns:
        maps normalized to sum_c |S_c|^2 = 1 where there is signal (0 elsewhere), phase
        relative to the virtual reference coil of the module doc; numpy if the input was.
    """
    x, was_numpy = as_tensor("coil_images", coil_images)
    _check_coil_images("coil_images", x, exact_ndim=True)
    check_choice("method", method, METHODS)
    x = x.to(torch.complex64)
    if method == "walsh":
        if not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd integer, got {kernel_size!r}")
        check_positive("threshold", threshold, allow_zero=True)
        maps, energy = _walsh(x, kernel_size)
        maps = maps * (energy > threshold * energy.max())
    else:
        if not isinstance(calib_width, int) or not 1 <= calib_width <= min(x.shape[-2:]):
            raise ValueError(
                f"calib_width must be an integer in [1, {min(x.shape[-2:])}], got {calib_width!r}"
            )
        maps, energy = _espirit(x, calib_width, espirit_kernel_width, espirit_thresh, espirit_crop)
    norm = maps.abs().pow(2).sum(dim=0).sqrt()
    maps = torch.where(norm > 0, maps / norm.clamp_min(1e-30), 0)
    maps = _align_phase(maps, energy)
    return maps.numpy() if was_numpy else maps
