"""Simulated birdcage receive-coil sensitivities.

Coil c sits at angle 2 pi c / C on a ring of radius ``radius`` (in units of the half
field of view, > 1 so it lies outside the image). Its sensitivity at pixel r is
Biot-Savart-like: magnitude 1 / |r - r_c| (field of a long straight wire) and phase
the azimuth of r - r_c around the coil minus the coil's own angle, so the maps are
smooth and differ in both magnitude and phase. Written here (not sigpy's
``birdcage_maps``) because sigpy always normalizes, works in numpy only, and we want
torch on any device with optional normalization.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mrsolve.solvers.validation import resolve_device


def birdcage_maps(
    n_coils: int,
    image_shape: Sequence[int],
    radius: float = 1.5,
    normalize: bool = True,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Birdcage sensitivities (C, ny, nx) complex64.

    Args:
        n_coils: number of coils C >= 1.
        image_shape: (ny, nx).
        radius: ring radius relative to the half field of view; must be > 1.
        normalize: scale so that sum_c |S_c|^2 = 1 at every pixel; otherwise the
            largest magnitude over all coils and pixels is 1.
        device: "cpu", "cuda[:N]" or "auto".
    """
    if not isinstance(n_coils, int) or n_coils < 1:
        raise ValueError(f"n_coils must be a positive integer, got {n_coils!r}")
    if len(image_shape) != 2 or min(image_shape) < 1:
        raise ValueError(f"image_shape must be (ny, nx) of positive sizes, got {image_shape!r}")
    if not radius > 1:
        raise ValueError(f"radius must be > 1 (coils outside the field of view), got {radius!r}")
    dev = resolve_device(device)
    ny, nx = (int(s) for s in image_shape)
    y = (torch.arange(ny, dtype=torch.float64, device=dev) - ny / 2) / (ny / 2)
    x = (torch.arange(nx, dtype=torch.float64, device=dev) - nx / 2) / (nx / 2)
    angle = torch.arange(n_coils, dtype=torch.float64, device=dev) * (2 * math.pi / n_coils)
    dx = x[None, None, :] - radius * torch.cos(angle)[:, None, None]
    dy = y[None, :, None] - radius * torch.sin(angle)[:, None, None]
    dx, dy = torch.broadcast_tensors(dx, dy)
    phase = torch.atan2(dx, -dy) - angle[:, None, None]
    maps = torch.polar(1.0 / torch.hypot(dx, dy), phase)
    if normalize:
        maps = maps / maps.abs().square().sum(0).sqrt()
    else:
        maps = maps / maps.abs().amax()
    return maps.to(torch.complex64)
