"""Density-compensated gridding reconstruction with coil combination.

Coil image c is x_c = A^H (w * y_c) / (ny nx): with w the sample areas in
(cycles/FOV)^2 (``propeller.density``), sum_j w_j e^{i 2 pi k_j.(r - r')/N} approximates
ny nx delta(r - r') over a fully sampled k-space, so a noiseless object comes back at
its own scale (band-limited to the sampled disc).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import torch

from mrsolve.propeller.coil_estimation import METHODS as MAP_METHODS
from mrsolve.propeller.coil_estimation import coil_combine, estimate_coil_maps, rss
from mrsolve.propeller.density import OperatorFactory, blade_frames, density_compensation
from mrsolve.propeller.nufft import NUFFT
from mrsolve.propeller.scan import Scan
from mrsolve.solvers.validation import check_shape, resolve_device

Callback = Callable[[int, int, torch.Tensor], None]


def grid_coil_images(
    kspace: torch.Tensor,
    traj: torch.Tensor,
    image_shape: Sequence[int],
    dcf: torch.Tensor,
    operator: OperatorFactory = NUFFT,
) -> torch.Tensor:
    """Coil images (C, ny, nx) complex64 from kspace (C, *S), traj (*S, 2) and dcf (*S)."""
    samples = tuple(traj.shape[:-1])
    if kspace.ndim != len(samples) + 1:
        raise ValueError(f"kspace must have shape (coils, *{samples}), got {tuple(kspace.shape)}")
    check_shape("kspace", kspace, (kspace.shape[0], *samples))
    check_shape("dcf", dcf, samples)
    ny, nx = (int(s) for s in image_shape)
    op = operator(traj, (ny, nx), batch_shape=(kspace.shape[0],))
    return op.H(kspace.to(torch.complex64) * dcf) / (ny * nx)


def combine(images: torch.Tensor, coil_maps: torch.Tensor | None = None) -> torch.Tensor:
    """One complex64 image from coil images (C, ny, nx): SENSE-1 with maps, else RSS."""
    if coil_maps is None:
        return rss(images).to(torch.complex64)
    return coil_combine(images, coil_maps)


def low_resolution_maps(
    scan: Scan,
    method: str = "espirit",
    radius: float | None = None,
    operator: OperatorFactory = NUFFT,
) -> torch.Tensor:
    """Coil maps (C, ny, nx) estimated from the central k-space.

    The samples with readout coordinate |u| <= radius of all blades (of the first echo,
    when there are several) are gridded with the analytic density compensation into coil
    images, then
    :func:`~mrsolve.propeller.coil_estimation.estimate_coil_maps` turns them into maps.
    ``radius`` defaults to the whole readout for "espirit" (which calibrates on the
    central 24 x 24 of the gridded k-space, sampled by all blades) and to L / 2 for
    "walsh" (low-resolution images from the disc every blade covers).
    """
    if method not in MAP_METHODS:
        raise ValueError(f"coil map method must be one of {list(MAP_METHODS)}, got {method!r}")
    if len(scan.sampled_echoes) > 1:
        # fat and the field turn the image's phase between echoes: gridded together, the
        # echoes cancel where they disagree and the maps inherit the holes (a two-echo
        # scan's spectral image: NRMSE 0.18 -> 0.08, docs/coil_maps_design.md)
        scan = scan.select_blades(scan.echo == scan.sampled_echoes[0])
    if radius is None and method == "walsh":
        radius = scan.n_lines / 2
    block = scan if radius is None else central_block(scan, radius)
    weights = density_compensation(
        block.traj, block.image_shape, "analytic", device=block.traj.device
    )
    images = grid_coil_images(block.kspace, block.traj, block.image_shape, weights, operator)
    calib_width = min(24, *block.image_shape)
    return estimate_coil_maps(images, method, calib_width=calib_width)


def central_block(scan: Scan, radius: float) -> Scan:
    """The blades' samples with readout coordinate |u| <= radius cycles/FOV (all lines)."""
    frames = blade_frames(scan.traj)
    u = torch.einsum("lmi,i->lm", scan.traj[0].float(), frames.e_ro[0])
    keep = (u.abs() <= radius + 1e-4).all(dim=0)
    if not bool(keep.any()):
        raise ValueError(f"radius must keep at least one readout sample, got {radius!r}")
    return replace(
        scan,
        kspace=scan.kspace[..., keep],
        traj=scan.traj[:, :, keep],
        times=scan.times[:, :, keep],
    )


def resolve_coil_maps(
    scan: Scan, coil_maps: torch.Tensor | str | None, operator: OperatorFactory = NUFFT
) -> torch.Tensor | None:
    """None (RSS), given maps moved to the scan's device, or maps estimated by method name."""
    if coil_maps is None:
        return None
    if isinstance(coil_maps, str):
        return low_resolution_maps(scan, coil_maps, operator=operator)
    if not isinstance(coil_maps, torch.Tensor):
        raise TypeError(
            f"coil_maps must be None, a method name or a (C, ny, nx) tensor, got {type(coil_maps).__name__}"
        )
    check_shape("coil_maps", coil_maps, (scan.n_coils, *scan.image_shape))
    return coil_maps.to(scan.kspace.device)


def gridding(
    scan: Scan,
    dcf: str | torch.Tensor = "analytic",
    coil_maps: torch.Tensor | str | None = None,
    operator: OperatorFactory = NUFFT,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
) -> torch.Tensor:
    """Gridding reconstruction (ny, nx) complex64 of a (static) scan.

    Args:
        scan: the acquisition (kspace (C, B, L, M), traj (B, L, M, 2)).
        dcf: "analytic" (blade overlap), "pipe-menon", or weights (B, L, M).
        coil_maps: (C, ny, nx) sensitivities for a phase-preserving SENSE-1 combination,
            "espirit" or "walsh" to estimate them (:func:`low_resolution_maps`), or None
            for root-sum-of-squares (magnitude only).
        operator: ``operator(traj, image_shape, batch_shape=...)`` -> Linop
            (NUFFT by default; DFT for tiny exact cases).
        device: "cpu", "cuda" or "auto".
        callback: ``callback(step, total, image)`` after each of the 3 steps.
    """
    if not isinstance(scan, Scan):
        raise TypeError(f"scan must be a mrsolve.propeller.scan.Scan, got {type(scan).__name__}")
    dev = resolve_device(device)
    scan = scan.to(dev)
    weights = density_compensation(scan.traj, scan.image_shape, dcf, operator=operator, device=dev)
    report_progress(callback, 1, 3, None)
    images = grid_coil_images(scan.kspace, scan.traj, scan.image_shape, weights, operator)
    report_progress(callback, 2, 3, None)
    image = combine(images, resolve_coil_maps(scan, coil_maps, operator))
    report_progress(callback, 3, 3, image)
    return image


def report_progress(callback: Callback | None, step: int, total: int, image) -> None:
    """Call ``callback(step, total, image)`` when a callback is given."""
    if callback is not None:
        callback(step, total, image)
