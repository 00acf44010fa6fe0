"""Encodings: learnable tensors that produce a complex field on a grid.

- :class:`DenseGrid`: one complex value per grid point (shape (..., ny, nx)).
- :class:`FactorizedPlanes`: K-Planes-style factorization of a (T, F, ny, nx) field:
  R-channel planes over every pair of axes (xy, xf, yf, and xt, yt, ft when T > 1),
  features multiplied across planes, a linear decoder to one complex value.

Both are ``torch.nn.Module``s whose ``forward()`` returns the complex field; their
parameters are real (what the torch optimizers expect).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import torch


def _shape(shape: Sequence[int]) -> tuple[int, ...]:
    out = tuple(int(s) for s in shape)
    if not out or min(out) < 1:
        raise ValueError(f"shape must be a non-empty sequence of positive sizes, got {shape!r}")
    return out


class DenseGrid(torch.nn.Module):
    """A complex tensor of ``shape`` stored as real (..., 2) parameters, initialised to ``init``."""

    def __init__(self, shape: Sequence[int], init: torch.Tensor | None = None) -> None:
        super().__init__()
        shape = _shape(shape)
        value = torch.zeros(shape, dtype=torch.complex64) if init is None else init
        if tuple(value.shape) != shape:
            raise ValueError(f"init must have shape {shape}, got {tuple(value.shape)}")
        self.values = torch.nn.Parameter(torch.view_as_real(value.to(torch.complex64)).clone())

    def forward(self) -> torch.Tensor:
        return torch.view_as_complex(self.values)


class FactorizedPlanes(torch.nn.Module):
    """K-Planes field over axes (t, f, y, x) of sizes ``shape`` (T may be 1).

    Args:
        shape: (T, F, ny, nx).
        rank: feature channels per plane.
        resolution: spatial plane size divisor (planes are upsampled bilinearly).
        seed: initialisation seed.
    """

    def __init__(
        self, shape: Sequence[int], rank: int = 16, resolution: int = 1, seed: int = 0
    ) -> None:
        super().__init__()
        self.shape = _shape(shape)
        if len(self.shape) != 4:
            raise ValueError(f"shape must be (T, F, ny, nx), got {self.shape}")
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
        axes = [0, 1, 2, 3] if self.shape[0] > 1 else [1, 2, 3]
        self.pairs = list(itertools.combinations(axes, 2))
        sizes = [self.shape[0], self.shape[1]] + [
            max(1, math.ceil(s / resolution)) for s in self.shape[2:]
        ]
        gen = torch.Generator().manual_seed(seed)
        self.planes = torch.nn.ParameterList(
            torch.nn.Parameter(1 + 0.1 * torch.randn(rank, sizes[a], sizes[b], generator=gen))
            for a, b in self.pairs
        )
        self.decoder = torch.nn.Parameter(0.1 * torch.randn(rank, 2, generator=gen))

    def _full(self, plane: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """Plane (R, sa, sb) resized to the axes' full sizes and broadcast to (R, T, F, ny, nx)."""
        target = (self.shape[a], self.shape[b])
        if tuple(plane.shape[1:]) != target:
            plane = torch.nn.functional.interpolate(
                plane[None], size=target, mode="bilinear", align_corners=True
            )[0]
        view = [plane.shape[0], 1, 1, 1, 1]
        view[1 + a], view[1 + b] = target
        return plane.reshape(view)

    def forward(self) -> torch.Tensor:
        feat = None
        for plane, (a, b) in zip(self.planes, self.pairs, strict=True):
            full = self._full(plane, a, b)
            feat = full if feat is None else feat * full
        out = torch.einsum("rtfyx,rc->tfyxc", feat.expand(-1, *self.shape), self.decoder)
        return torch.view_as_complex(out.contiguous())
