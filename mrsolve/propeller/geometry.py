"""PROPELLER blade geometry: angles and k-space trajectories.

k-space positions are in cycles per field of view, in [-N/2, N/2) for an N x N
image (the sigpy/BART convention). Column 0 is kx (pairs with the image's last
axis, x = column - N/2), column 1 is ky (pairs with the rows, y = row - N/2).
Blade b reads out along (cos theta_b, sin theta_b) in (x, y); its lines are
stepped along (-sin theta_b, cos theta_b).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrsolve.solvers.validation import check_choice

ANGLE_ORDERS = ("sequential", "interleaved")


@dataclass(frozen=True)
class BladeGeometry:
    """Geometry of a PROPELLER acquisition.

    Attributes:
        n_blades: number of blades B.
        n_lines: lines per blade L (phase-encode steps, spacing 1 cycle/FOV).
        matrix_size: image size N (square N x N).
        oversampling: readout oversampling factor; a blade has M = oversampling * N
            readout samples spaced 1/oversampling cycles/FOV.
        angle_order: "sequential" (theta_b = b pi / B) or "interleaved" (even
            angles first, then odd ones).
    """

    n_blades: int
    n_lines: int
    matrix_size: int
    oversampling: float = 1.0
    angle_order: str = "sequential"

    def __post_init__(self) -> None:
        for name in ("n_blades", "n_lines", "matrix_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not self.oversampling >= 1:
            raise ValueError(f"oversampling must be >= 1, got {self.oversampling!r}")
        if self.n_lines > self.matrix_size:
            raise ValueError(
                f"n_lines must be <= matrix_size ({self.matrix_size}), got {self.n_lines}"
            )
        check_choice("angle_order", self.angle_order, ANGLE_ORDERS)

    @property
    def n_readout(self) -> int:
        """Readout samples per line, M."""
        return round(self.oversampling * self.matrix_size)

    @property
    def center_sample(self) -> int:
        """Index of the echo-centre sample (k_ro = 0)."""
        return self.n_readout // 2

    @property
    def nyquist_covered(self) -> bool:
        """True when L * B >= N * pi / 2 (full Nyquist coverage of the k-space disc)."""
        return self.n_lines * self.n_blades >= self.matrix_size * math.pi / 2

    def angles(self) -> torch.Tensor:
        """Blade angles theta_b in radians, in acquisition order, shape (B,)."""
        base = torch.arange(self.n_blades, dtype=torch.float64) * math.pi / self.n_blades
        if self.angle_order == "interleaved":
            base = torch.cat([base[0::2], base[1::2]])
        return base.float()

    def readout_k(self) -> torch.Tensor:
        """Readout k positions (M,) in cycles/FOV: (u - c) / oversampling."""
        u = torch.arange(self.n_readout, dtype=torch.float64)
        return ((u - self.center_sample) / self.oversampling).float()

    def line_k(self) -> torch.Tensor:
        """Phase-encode k positions (L,) in cycles/FOV: l - L // 2."""
        return (torch.arange(self.n_lines) - self.n_lines // 2).float()

    def trajectory(self) -> torch.Tensor:
        """k-space positions (B, L, M, 2) in cycles/FOV, last axis (kx, ky)."""
        return blade_trajectory(self.angles(), self.line_k(), self.readout_k())


def blade_trajectory(
    angles: torch.Tensor, line_k: torch.Tensor, readout_k: torch.Tensor
) -> torch.Tensor:
    """Rotate a Cartesian blade (lines x readout) by each angle: (B, L, M, 2) as (kx, ky)."""
    c, s = torch.cos(angles)[:, None, None], torch.sin(angles)[:, None, None]
    kro, kpe = readout_k[None, None, :], line_k[None, :, None]
    kx = kro * c - kpe * s
    ky = kro * s + kpe * c
    return torch.stack(torch.broadcast_tensors(kx, ky), dim=-1).float()


def readout_direction(angle: float) -> tuple[float, float]:
    """Unit readout direction (dx, dy) of a blade at ``angle`` radians."""
    return math.cos(angle), math.sin(angle)
