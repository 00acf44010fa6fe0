"""Stage 1 on factorized planes: x(r, f[, t]) from low-rank planes, fitted with Adam.

The planes start from ``plane_warm_start`` FISTA iterations of the dense grid
(:mod:`~mrsolve.recon.spectral.stages.free_volume`) through its truncated SVD. From a random
start the product of planes is far from the data: after 100 Adam steps it barely beats
gridding (NRMSE 0.43 against 0.49 at 48 px, 3 T). Warm-started, rank 4, 100 steps:
NRMSE 0.134-0.170 against the dense grid's 0.141-0.195 (32-64 px, 1.5/3 T, seeds 0-2);
the same warm start and Adam loop on a dense grid only match FISTA, so the gain is the
low-rank prior. Cost at 48 px: 3.4x fewer parameters, but 1.6-2.3x the time and twice
the peak memory of FISTA (Adam's autograd graph). :func:`fit_encoding` is the loop shared
with the other encodings (:mod:`~mrsolve.recon.spectral.stages.hash_grid`)."""

from __future__ import annotations

from dataclasses import replace

import torch

from mrsolve.recon.spectral.encodings import FactorizedPlanes
from mrsolve.recon.spectral.fields import SpectralField
from mrsolve.recon.spectral.regularizers import smooth_tv, smoothness
from mrsolve.recon.spectral.stages.loops import adam_loop


def volume_shape(problem, bins_hz: torch.Tensor) -> tuple[int, int, int, int]:
    """(T, F, ny, nx) of the free volume (T = 1 for static scans)."""
    return (len(problem.frames), bins_hz.numel(), *problem.image_shape)


def fit_encoding(encoding, lr, stage, problem, bins_hz, cfg, callback, checkpointer):
    """Warm-start ``encoding`` (a module with ``init_from_volume``) from dense FISTA, fit it
    with Adam on data + smooth TV (+ time smoothness) and held-out stopping.

    Returns the free volume (T, F, ny, nx), squeezed to (F, ny, nx) when static, and a report.
    """
    from mrsolve.recon.spectral.stages.free_volume import run_free_volume  # it dispatches here

    free, stop = cfg.free, cfg.stopping
    squeeze = not cfg.dynamic
    resumed = checkpointer is not None and checkpointer.state(stage) is not None
    warm_report = None
    if free.plane_warm_start > 0 and not resumed:
        warm = replace(cfg, free=replace(free, encoding="dense", iterations=free.plane_warm_start))
        start, warm_report = run_free_volume(problem, bins_hz, warm)
        start = start * problem.scale
        encoding.init_from_volume(start[None] if squeeze else start)
    field_ = SpectralField(encoding, problem.basis.coefficients(bins_hz).to(problem.device))
    opt = torch.optim.Adam(field_.parameters(), lr=lr)

    def loss_fn():
        vol = field_.volume()  # evaluated once: the encoding is the costly part
        z = field_(vol)
        data = problem.data_loss(z[0] if squeeze else z)
        reg = free.tv * smooth_tv(vol) + free.tv_time * smoothness(vol, (0,))
        return data + reg, data

    def volume():
        v = field_.volume().detach()
        return v[0] if squeeze else v

    report = adam_loop(field_, opt, loss_fn, volume, free.iterations, problem, cfg, stop,
                        callback, checkpointer, stage)  # fmt: skip
    report["warm_start"] = warm_report
    best = report.pop("best_volume")
    return best / problem.scale, report


def run_planes(problem, bins_hz, cfg, callback, checkpointer):
    """The free volume from factorized planes (see :func:`fit_encoding`) and a report."""
    free = cfg.free
    torch.manual_seed(cfg.seed)
    planes = FactorizedPlanes(volume_shape(problem, bins_hz), free.plane_rank,
                              free.plane_resolution, seed=cfg.seed)  # fmt: skip
    return fit_encoding(planes.to(problem.device), free.plane_lr, "planes", problem, bins_hz,
                        cfg, callback, checkpointer)  # fmt: skip
