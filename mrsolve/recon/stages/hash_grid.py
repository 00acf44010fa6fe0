"""Stage 1 on a multi-resolution hash grid (:class:`~mrsolve.recon.hash_grid.HashGrid`),
warm-started like the planes and fitted with Adam (:func:`~.planes.fit_encoding`)."""

from __future__ import annotations

import torch

from mrsolve.recon.hash_grid import HashGrid
from mrsolve.recon.stages.planes import fit_encoding, volume_shape


def run_hash_grid(problem, bins_hz, cfg, callback, checkpointer):
    """The free volume from a hash grid and a report."""
    free = cfg.free
    torch.manual_seed(cfg.seed)
    grid = HashGrid(volume_shape(problem, bins_hz), levels=free.hash_levels,
                    table_size=2**free.hash_log2_table, features=free.hash_features,
                    hidden=free.hash_hidden, seed=cfg.seed)  # fmt: skip
    return fit_encoding(grid.to(problem.device), free.hash_lr, "hash_grid", problem, bins_hz,
                        cfg, callback, checkpointer)  # fmt: skip
