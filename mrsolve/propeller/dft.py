"""Explicit (non-uniform) DFT: the exact reference the NUFFT is tested against.

y(k) = sum_r x(r) exp(-i 2 pi (kx x / nx + ky y / ny)), with x = column - nx // 2 and
y = row - ny // 2, k in cycles/FOV. Computed in chunks of samples so memory stays
bounded; O(K N^2), for tests, small problems and the exact simulator.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mrsolve.solvers.linop import Linop


def image_coordinates(image_shape: Sequence[int], device="cpu") -> torch.Tensor:
    """Pixel coordinates (ny * nx, 2) as (x, y) = (column - nx//2, row - ny//2), float64."""
    ny, nx = image_shape
    y, x = torch.meshgrid(
        torch.arange(ny, dtype=torch.float64, device=device) - ny // 2,
        torch.arange(nx, dtype=torch.float64, device=device) - nx // 2,
        indexing="ij",
    )
    return torch.stack([x.reshape(-1), y.reshape(-1)], dim=-1)


def dft_matrix(traj: torch.Tensor, image_shape: Sequence[int]) -> torch.Tensor:
    """Encoding matrix (K, ny * nx) complex64 for k positions traj (K, 2) in cycles/FOV."""
    ny, nx = image_shape
    r = image_coordinates(image_shape, traj.device)
    scaled = r / torch.tensor([nx, ny], dtype=torch.float64, device=traj.device)
    phase = -2 * math.pi * (traj.double() @ scaled.T)
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)


class DFT(Linop):
    """Explicit DFT from images (*batch, ny, nx) to samples (*batch, *traj.shape[:-1]).

    Args:
        traj: (..., 2) k-space positions in cycles/FOV, last axis (kx, ky).
        image_shape: (ny, nx).
        batch_shape: leading axes carried through unchanged (e.g. coils).
        chunk: samples per block of the encoding matrix.
    """

    def __init__(
        self,
        traj: torch.Tensor,
        image_shape: Sequence[int],
        batch_shape: Sequence[int] = (),
        chunk: int = 4096,
    ) -> None:
        self.traj, self.image_shape = traj, tuple(int(s) for s in image_shape)
        self.batch_shape, self.chunk = tuple(batch_shape), chunk
        super().__init__(
            (*self.batch_shape, *self.image_shape),
            (*self.batch_shape, *traj.shape[:-1]),
            device=traj.device,
        )

    def _blocks(self):
        flat = self.traj.reshape(-1, 2)
        for start in range(0, flat.shape[0], self.chunk):
            yield start, dft_matrix(flat[start : start + self.chunk], self.image_shape)

    def _apply(self, x):
        xb = x.reshape(-1, math.prod(self.image_shape)).to(torch.complex64)
        out = torch.cat([xb @ e.T for _, e in self._blocks()], dim=-1)
        return out.reshape(self.oshape)

    def _adjoint(self):
        return _DFTAdjoint(self)


class _DFTAdjoint(Linop):
    def __init__(self, fwd: DFT) -> None:
        super().__init__(fwd.oshape, fwd.ishape, device=fwd.device)
        self.fwd = fwd

    def _apply(self, y):
        yb = y.reshape(-1, math.prod(self.fwd.traj.shape[:-1])).to(torch.complex64)
        out = torch.zeros(
            yb.shape[0], math.prod(self.fwd.image_shape), dtype=torch.complex64, device=y.device
        )
        for start, e in self.fwd._blocks():
            out += yb[:, start : start + e.shape[0]] @ e.conj()
        return out.reshape(self.oshape)

    def _adjoint(self):
        return self.fwd
