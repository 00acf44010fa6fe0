"""Stage 1 on a multi-resolution hash grid (:class:`~mrsolve.recon.spectral.encodings.hash_grid.HashGrid`),
warm-started like the planes (fitted to the warm volume) and fitted with Adam
(:func:`~.planes.fit_encoding`).

Kept as an option, not a default: at 48 px (32 bins, 8 levels, 2^15 rows; 1.5/3 T, two
seeds) it reaches NRMSE 0.21-0.23 where the dense grid reaches 0.14-0.18, at 7-22x its
time and 4x its peak memory; without collisions (2^17 rows, more parameters than the
dense grid) 0.19-0.21. A grid of 10^5 voxels needs no compression, and the 64 gathers
per evaluation cost more than the whole Toeplitz data term."""

from __future__ import annotations

import torch

from mrsolve.recon.spectral.encodings.hash_grid import HashGrid
from mrsolve.recon.spectral.stages.planes import fit_encoding, volume_shape


def run_hash_grid(problem, bins_hz, cfg, callback, checkpointer):
    """The free volume from a hash grid and a report."""
    free = cfg.free
    torch.manual_seed(cfg.seed)
    grid = HashGrid(volume_shape(problem, bins_hz), levels=free.hash_levels,
                    table_size=2**free.hash_log2_table, features=free.hash_features,
                    hidden=free.hash_hidden, seed=cfg.seed)  # fmt: skip
    return fit_encoding(grid.to(problem.device), free.hash_lr, "hash_grid", problem, bins_hz,
                        cfg, callback, checkpointer)  # fmt: skip
