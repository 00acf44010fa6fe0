"""K-Planes-style factorized encoding of a (T, F, ny, nx) complex field."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mrsolve.recon.spectral.encodings.dense import grid_shape
from mrsolve.solvers.validation import make_generator, seed_to_int


@dataclass
class PlanesConfig:
    """Options of the factorized-planes encoding (:class:`FactorizedPlanes`)."""

    rank: int = 4  # feature channels per plane
    resolution: int = 1  # spatial plane size divisor
    lr: float = 0.03  # Adam learning rate

    def build(self, shape: Sequence[int], seed: int | torch.Generator = 0) -> FactorizedPlanes:
        """The encoding of a (T, F, ny, nx) field."""
        return FactorizedPlanes(shape, self.rank, self.resolution, seed=seed)


class FactorizedPlanes(torch.nn.Module):
    """K-Planes field over axes (t, f, y, x) of sizes ``shape`` (T may be 1).

    x(t, f, y, x) = sum_r d_r prod_(a, b) P_ab[r](a, b): complex R-channel planes over every
    pair of axes (xy, xf, yf, and xt, yt, ft when T > 1), multiplied across planes
    (K-Planes' Hadamard combination), then a linear decoder d (R complex weights, stored
    as (R, 2) real) to one complex value. Complex features give every channel its own
    phase; real ones share the decoder's R phases over the whole image.

    Starts at random (planes near 1, small decoder) or, much better, from a volume with
    :meth:`init_from_volume` (its truncated SVD; exact up to the rank).

    Args:
        shape: (T, F, ny, nx).
        rank: feature channels R per plane.
        resolution: spatial plane size divisor (planes are upsampled bilinearly).
        seed: initialisation seed (an int, or a torch/numpy generator to draw it from).
    """

    def __init__(
        self,
        shape: Sequence[int],
        rank: int = 4,
        resolution: int = 1,
        seed: int | torch.Generator = 0,
    ) -> None:
        super().__init__()
        self.shape = grid_shape(shape)
        if len(self.shape) != 4:
            raise ValueError(f"shape must be (T, F, ny, nx), got {self.shape}")
        if not isinstance(rank, int) or rank < 1:
            raise ValueError(f"rank must be a positive integer, got {rank!r}")
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive integer, got {resolution!r}")
        self.seed = seed_to_int(seed)
        axes = [0, 1, 2, 3] if self.shape[0] > 1 else [1, 2, 3]
        self.pairs = list(itertools.combinations(axes, 2))
        self.sizes = [self.shape[0], self.shape[1]] + [
            max(1, math.ceil(s / resolution)) for s in self.shape[2:]
        ]
        gen = make_generator(self.seed)
        self.planes = torch.nn.ParameterList(
            torch.nn.Parameter(
                torch.complex(
                    1 + 0.1 * torch.randn(rank, self.sizes[a], self.sizes[b], generator=gen),
                    0.1 * torch.randn(rank, self.sizes[a], self.sizes[b], generator=gen),
                )
            )
            for a, b in self.pairs
        )
        self.decoder = torch.nn.Parameter(0.1 * torch.randn(rank, 2, generator=gen))

    def _full(self, plane: torch.Tensor, a: int, b: int) -> torch.Tensor:
        """Plane (R, sa, sb) resized to the axes' full sizes and shaped to broadcast as
        (R, T, F, ny, nx)."""
        target = (self.shape[a], self.shape[b])
        if tuple(plane.shape[1:]) != target:
            parts = torch.view_as_real(plane).permute(3, 0, 1, 2)  # (2, R, sa, sb)
            parts = torch.nn.functional.interpolate(
                parts, size=target, mode="bilinear", align_corners=True
            )
            plane = torch.view_as_complex(parts.permute(1, 2, 3, 0).contiguous())
        view = [plane.shape[0], 1, 1, 1, 1]
        view[1 + a], view[1 + b] = target
        return plane.reshape(view)

    def forward(self) -> torch.Tensor:
        """The field (T, F, ny, nx) complex64."""
        feat = torch.view_as_complex(self.decoder).reshape(-1, 1, 1, 1, 1)
        for plane, (a, b) in zip(self.planes, self.pairs, strict=True):
            feat = feat * self._full(plane, a, b)
        return feat.expand(-1, *self.shape).sum(0)

    @torch.no_grad()
    def init_from_volume(self, volume: torch.Tensor) -> None:
        """Set the planes to the rank-R truncated SVD of ``volume`` (T, F, ny, nx) as a
        (T F) x (ny nx) matrix: u_r on the ft plane (static: the xf plane, constant in x),
        v_r on the xy plane, ones elsewhere, the singular value spread evenly over all
        planes (balanced factors suit Adam). Channels beyond the matrix rank get random
        directions with a small magnitude, so that they can still learn."""
        if tuple(volume.shape) != self.shape:
            raise ValueError(f"volume must have shape {self.shape}, got {tuple(volume.shape)}")
        t, f, ny, nx = self.shape
        sy, sx = self.sizes[2:]
        dev = self.decoder.device
        vol = volume.detach().to(dev, torch.complex64)
        if (sy, sx) != (ny, nx):  # coarse planes: fit the area-averaged volume
            parts = torch.view_as_real(vol.reshape(t * f, ny, nx)).permute(0, 3, 1, 2)
            parts = torch.nn.functional.interpolate(parts, size=(sy, sx), mode="area")
            vol = torch.view_as_complex(parts.permute(0, 2, 3, 1).contiguous())
        u, s, vh = torch.linalg.svd(vol.reshape(t * f, sy * sx), full_matrices=False)
        rank = self.decoder.shape[0]
        k = min(rank, s.numel())
        gen = make_generator(self.seed)
        u_all = torch.randn(t * f, rank, 2, generator=gen)
        v_all = torch.randn(rank, sy * sx, 2, generator=gen)
        u_all = torch.view_as_complex(u_all).to(dev)
        v_all = torch.view_as_complex(v_all).to(dev)
        u_all = u_all / u_all.norm(dim=0, keepdim=True)
        v_all = v_all / v_all.norm(dim=1, keepdim=True)
        u_all[:, :k], v_all[:k] = u[:, :k], vh[:k]
        s_all = torch.zeros(rank, device=dev)
        s_all[:k] = s[:k]
        s_all = s_all.clamp_min(1e-3 * float(s_all.max().clamp_min(1e-12)))
        n_planes = len(self.pairs)
        mag = (s_all / math.sqrt(t * f * sy * sx)) ** (1 / n_planes)  # (R,)
        u_pair = (0, 1) if t > 1 else (1, 3)
        for plane, pair in zip(self.planes, self.pairs, strict=True):
            shape = plane.shape
            if pair == (2, 3):
                value = (v_all * math.sqrt(sy * sx)).reshape(rank, sy, sx)
            elif pair == u_pair:
                value = (u_all.T * math.sqrt(t * f)).reshape(rank, t, f)[:, :, :, None]
                value = value[:, 0] if t == 1 else value[..., 0]
            else:
                value = torch.ones(shape, dtype=torch.complex64, device=dev)
            plane.copy_((mag.reshape(-1, 1, 1) * value).expand(shape))
        self.decoder.copy_(torch.tensor([1.0, 0.0], device=dev).expand_as(self.decoder))
