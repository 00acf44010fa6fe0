"""Read-outs of a spectral reconstruction: image, water, fat, fat fraction, field map.

Shapes: a free volume is (F, ny, nx) or (T, F, ny, nx); maps are (ny, nx) or (T, ny, nx).
"""

from __future__ import annotations

import torch

from mrsolve.solvers.validation import check_positive


def image_from_volume(volume: torch.Tensor) -> torch.Tensor:
    """The image a reader without the spectral axis sees: the sum over f (axis -3)."""
    if volume.ndim not in (3, 4):
        raise ValueError(
            f"volume must have shape (F, ny, nx) or (T, F, ny, nx), got {tuple(volume.shape)}"
        )
    return volume.sum(-3)


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
