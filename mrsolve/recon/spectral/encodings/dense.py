"""Dense encoding: one learnable complex value per grid point."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def grid_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """``shape`` as a tuple of ints; raises ValueError unless non-empty and all positive."""
    out = tuple(int(s) for s in shape)
    if not out or min(out) < 1:
        raise ValueError(f"shape must be a non-empty sequence of positive sizes, got {shape!r}")
    return out


class DenseGrid(torch.nn.Module):
    """A complex tensor of ``shape`` stored as real (..., 2) parameters, initialised to ``init``."""

    def __init__(self, shape: Sequence[int], init: torch.Tensor | None = None) -> None:
        super().__init__()
        shape = grid_shape(shape)
        value = torch.zeros(shape, dtype=torch.complex64) if init is None else init
        if tuple(value.shape) != shape:
            raise ValueError(f"init must have shape {shape}, got {tuple(value.shape)}")
        self.values = torch.nn.Parameter(torch.view_as_real(value.to(torch.complex64)).clone())

    def forward(self) -> torch.Tensor:
        return torch.view_as_complex(self.values)
