"""Read-outs of a spectral reconstruction: image, water, fat, fat fraction, field map.

Shapes: a free volume is (F, ny, nx) or (T, F, ny, nx); maps are (ny, nx) or (T, ny, nx).
"""

from __future__ import annotations

import math

import torch

from mrsolve.propeller.fat import FatSpectrum
from mrsolve.solvers.validation import check_positive


def image_from_volume(
    volume: torch.Tensor, bins_hz: torch.Tensor | None = None, time_s: float = 0.0
) -> torch.Tensor:
    """The image at time ``time_s``: sum over f (axis -3) of x_f e^{i 2 pi f t}.

    At t = 0 (spin echo) this is the plain sum, what a reader without the spectral axis
    sees; for gradient echo read it out at the echo time, where the data determine it.
    ``bins_hz`` (F,) is needed when ``time_s`` is not 0.
    """
    if volume.ndim not in (3, 4):
        raise ValueError(
            f"volume must have shape (F, ny, nx) or (T, F, ny, nx), got {tuple(volume.shape)}"
        )
    if time_s == 0:
        return volume.sum(-3)
    if bins_hz is None or bins_hz.numel() != volume.shape[-3]:
        raise ValueError(
            f"bins_hz must give the {volume.shape[-3]} bin frequencies when time_s != 0, "
            f"got {None if bins_hz is None else tuple(bins_hz.shape)}"
        )
    phase = 2 * math.pi * float(time_s) * bins_hz.to(volume.device, torch.float64)
    weights = torch.polar(torch.ones_like(phase), phase).to(volume.dtype)
    return torch.einsum("f,...fyx->...yx", weights, volume)


def fat_fraction(water: torch.Tensor, fat: torch.Tensor, threshold: float = 0.05) -> torch.Tensor:
    """|F| / (|W| + |F|) where |W| + |F| exceeds ``threshold`` times its 99th percentile, else 0.

    float32, shape of ``water``.
    """
    check_positive("threshold", threshold, allow_zero=True)
    if water.shape != fat.shape:
        raise ValueError(
            f"fat must have the shape of water {tuple(water.shape)}, got {tuple(fat.shape)}"
        )
    w, f = water.abs().float(), fat.abs().float()
    total = w + f
    level = torch.quantile(total.flatten(), 0.99) if total.numel() else torch.tensor(0.0)
    keep = total > threshold * level
    return torch.where(keep, f / total.clamp_min(1e-30), torch.zeros_like(total))


def _deposit(volume: torch.Tensor, bins_hz: torch.Tensor, freq: torch.Tensor, value) -> None:
    """Add ``value`` at frequency ``freq`` (ny, nx), split linearly between neighbouring bins."""
    n = bins_hz.numel()
    if n == 1:
        volume[0] += value
        return
    step = float(bins_hz[1] - bins_hz[0])
    pos = ((freq - float(bins_hz[0])) / step).clamp(0, n - 1)
    low = pos.floor().long().clamp_max(n - 2)
    frac = (pos - low).to(volume.dtype)
    volume.scatter_add_(0, low[None], ((1 - frac) * value)[None])
    volume.scatter_add_(0, (low + 1)[None], (frac * value)[None])


def volume_from_water_fat(
    water: torch.Tensor,
    fat: torch.Tensor,
    field_map_hz: torch.Tensor,
    spectrum: FatSpectrum,
    bins_hz: torch.Tensor,
) -> torch.Tensor:
    """The spectral volume (F, ny, nx) of a parametric fit on equally spaced ``bins_hz``.

    Water at psi(r) and fat peak p (amplitude a_p) at psi(r) + f_p, each split linearly
    between its two neighbouring bins (clamped at the ends); sums over f to water + fat.
    """
    volume = torch.zeros(
        (bins_hz.numel(), *water.shape), dtype=torch.complex64, device=water.device
    )
    _deposit(volume, bins_hz, field_map_hz, water.to(torch.complex64))
    for f_p, a_p in zip(spectrum.frequencies_hz, spectrum.amplitudes, strict=True):
        _deposit(volume, bins_hz, field_map_hz + float(f_p), float(a_p) * fat.to(torch.complex64))
    return volume
