"""Multi-resolution hash-grid encoding (Instant-NGP, Mueller et al. 2022) in plain torch.

A field on the grid (T, F, ny, nx) is read at its grid points, with coordinates
normalised to [0, 1] per axis over (f, y, x), plus t when T > 1. Level l is a grid of
``cells_l`` cells per axis (geometric from ``coarsest`` to the finest axis size, capped
at each axis' size); its vertices index a table of ``table_size`` feature vectors of
length ``features``: directly (row-major) when the vertices fit in the table, else by the
spatial hash XOR_d (i_d * pi_d) mod table_size, where colliding vertices share a row.
Each grid point gets the multilinear interpolation of its cell's 2^d corner features on
every level; the levels' features, concatenated, pass a small decoder (linear, or one
hidden ReLU layer) to a complex value.

Written here because tiny-cuda-nn is CUDA-only and outside plain torch. The query points
are a fixed grid, so per level the corner indices and weights are separable per axis:
they are combined by broadcasting instead of being stored for every point.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mrsolve.recon.spectral.runner import run
from mrsolve.recon.spectral.steppers import Adam
from mrsolve.solvers.validation import make_generator

# the primes of Instant-NGP's spatial hash (first one 1: coherent along the first axis)
_PRIMES = (1, 2654435761, 805459861, 3674653429)


@dataclass
class HashGridConfig:
    """Options of the hash-grid encoding (:class:`HashGrid`)."""

    levels: int = 8
    log2_table: int = 15  # rows per level's table: 2**log2_table
    features: int = 2
    hidden: int = 0  # decoder hidden width (0: linear)
    lr: float = 0.003  # Adam learning rate

    def build(self, shape: Sequence[int], seed: int | torch.Generator = 0) -> HashGrid:
        """The encoding of a (T, F, ny, nx) field."""
        return HashGrid(
            shape,
            levels=self.levels,
            table_size=2**self.log2_table,
            features=self.features,
            hidden=self.hidden,
            seed=seed,
        )


class HashGrid(torch.nn.Module):
    """Hash-grid field over (T, F, ny, nx) (module doc).

    Args:
        shape: (T, F, ny, nx).
        levels: number of resolution levels.
        table_size: rows per level's table (hashed when a level has more vertices).
        features: feature length per row.
        coarsest: cells per axis of the coarsest level.
        hidden: decoder hidden width (0: linear decoder).
        seed: initialisation seed (an int, or a torch generator to draw from).
    """

    def __init__(
        self,
        shape: Sequence[int],
        levels: int = 8,
        table_size: int = 2**15,
        features: int = 2,
        coarsest: int = 4,
        hidden: int = 0,
        seed: int | torch.Generator = 0,
    ) -> None:
        super().__init__()
        self.shape = tuple(int(s) for s in shape)
        if len(self.shape) != 4 or min(self.shape) < 1:
            raise ValueError(f"shape must be (T, F, ny, nx) of positive sizes, got {shape!r}")
        sizes = {"levels": levels, "table_size": table_size, "features": features}
        for name, value in {**sizes, "coarsest": coarsest}.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(hidden, int) or hidden < 0:
            raise ValueError(f"hidden must be a non-negative integer, got {hidden!r}")
        self.axes = [0, 1, 2, 3] if self.shape[0] > 1 else [1, 2, 3]
        sizes = [self.shape[a] for a in self.axes]
        finest = max(max(sizes) - 1, 1)
        growth = (finest / coarsest) ** (1 / (levels - 1)) if levels > 1 else 1.0
        self.cells = [
            [min(max(1, math.floor(coarsest * growth**lev + 1e-6)), n - 1) for n in sizes]
            for lev in range(levels)
        ]
        self.rows = [min(table_size, math.prod(c + 1 for c in cells)) for cells in self.cells]
        gen = make_generator(seed)
        self.tables = torch.nn.ParameterList(
            torch.nn.Parameter(1e-2 * (2 * torch.rand(rows, features, generator=gen) - 1))
            for rows in self.rows
        )
        width = levels * features
        widths = [width, hidden, 2] if hidden > 0 else [width, 2]
        layers: list[torch.nn.Module] = []
        for fan_in, fan_out in itertools.pairwise(widths):
            layers += [_linear(fan_in, fan_out, gen), torch.nn.ReLU()]
        self.decoder = torch.nn.Sequential(*layers[:-1])

    def hashed(self, level: int) -> bool:
        """True when ``level`` has more vertices than table rows (vertices may collide)."""
        return math.prod(c + 1 for c in self.cells[level]) > self.rows[level]

    def _axis(self, level: int, d: int, device) -> tuple[torch.Tensor, torch.Tensor]:
        """Lower corner index (n,) int64 and fractional weight (n,) of axis d's points."""
        n, cells = self.shape[self.axes[d]], self.cells[level][d]
        pos = torch.arange(n, device=device, dtype=torch.float64) * (cells / max(n - 1, 1))
        low = pos.floor().clamp(max=max(cells - 1, 0))
        return low.long(), (pos - low).float()

    def rows_of(self, level: int, corner: Sequence[torch.Tensor]) -> torch.Tensor:
        """Table rows of the vertices whose integer index along axis d is ``corner[d]``
        (broadcastable int64 tensors; axes ordered (t,) f, y, x)."""
        if not self.hashed(level):
            index, stride = None, 1
            for d in reversed(range(len(corner))):
                term = corner[d] * stride
                index = term if index is None else index + term
                stride *= self.cells[level][d] + 1
            return index
        index = None
        for d, c in enumerate(corner):
            term = c * _PRIMES[d]
            index = term if index is None else index ^ term
        return (
            index & (self.rows[level] - 1)
            if _is_power_of_two(self.rows[level])
            else (index % self.rows[level])
        )

    def level_features(self, level: int) -> torch.Tensor:
        """Interpolated features (*grid, features) of ``level`` at every grid point."""
        table = self.tables[level]
        dims = len(self.axes)
        axes = [self._axis(level, d, table.device) for d in range(dims)]
        lows, weights = [low for low, _ in axes], [w for _, w in axes]

        def along(d, v):
            view = [1] * dims
            view[d] = -1
            return v.reshape(view)

        out = 0.0
        for bits in itertools.product((0, 1), repeat=dims):
            corner = [
                along(d, (lows[d] + b).clamp(max=self.cells[level][d])) for d, b in enumerate(bits)
            ]
            weight = math.prod(
                along(d, weights[d] if b else 1 - weights[d]) for d, b in enumerate(bits)
            )
            index = self.rows_of(level, corner).expand(weight.shape)
            # index_select on the flat index: faster than advanced indexing (fwd + bwd)
            rows = table.index_select(0, index.reshape(-1)).reshape(*weight.shape, -1)
            out = out + weight[..., None] * rows
        return out

    def forward(self) -> torch.Tensor:
        """The field (T, F, ny, nx) complex64."""
        feats = torch.cat([self.level_features(lev) for lev in range(len(self.tables))], -1)
        out = self.decoder(feats)  # (*grid, 2)
        return torch.view_as_complex(out.contiguous()).reshape(self.shape)

    def init_from_volume(
        self, volume: torch.Tensor, iterations: int = 100, lr: float = 0.01
    ) -> None:
        """Fit the grid to ``volume`` (T, F, ny, nx) by Adam (constant ``lr``) on the
        squared error."""
        if tuple(volume.shape) != self.shape:
            raise ValueError(f"volume must have shape {self.shape}, got {tuple(volume.shape)}")
        target = volume.detach().to(self.tables[0].device, torch.complex64)

        def loss() -> tuple[torch.Tensor, torch.Tensor]:
            error = (self() - target).abs().square().sum()
            return error, error

        adam = Adam(self, loss, lr, iterations, anneal=False)
        run(adam, iterations)  # no held-out rule: every step is taken


def _linear(fan_in: int, fan_out: int, gen: torch.Generator) -> torch.nn.Linear:
    """``torch.nn.Linear`` with its default initialisation drawn from ``gen``."""
    layer = torch.nn.utils.skip_init(torch.nn.Linear, fan_in, fan_out)
    bound = 1 / math.sqrt(fan_in)  # what kaiming_uniform_(a=sqrt(5)) gives the weight
    with torch.no_grad():
        layer.weight.uniform_(-bound, bound, generator=gen)
        layer.bias.uniform_(-bound, bound, generator=gen)
    return layer


def _is_power_of_two(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0
