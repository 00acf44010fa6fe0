"""Stage 1 on a neural-field encoding: x(r, f[, t]) from factorized planes (or a hash grid),
fitted with Adam.

The encoding starts from a warm start, ``plane_warm_start`` FISTA iterations of the dense
grid (:mod:`~mrsolve.recon.stages.free_volume`): planes take its truncated SVD. From a
random start the product of planes needs hundreds of Adam steps before it even matches
gridding (benchmarks/encodings.py has the numbers).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from mrsolve.recon.encodings import FactorizedPlanes
from mrsolve.recon.fields import SpectralField
from mrsolve.recon.regularizers import smooth_tv, smoothness
from mrsolve.recon.stages.loops import adam_loop


def run_planes(problem, bins_hz, cfg, callback, checkpointer):
    """The free volume (T, F, ny, nx) from planes (squeezed when static) and a report."""
    from mrsolve.recon.stages.free_volume import run_free_volume  # it dispatches here

    free, stop = cfg.free, cfg.stopping
    torch.manual_seed(cfg.seed)
    coef = problem.basis.coefficients(bins_hz).to(problem.device)
    shape = (len(problem.frames), bins_hz.numel(), *problem.image_shape)
    planes = FactorizedPlanes(shape, free.plane_rank, free.plane_resolution, seed=cfg.seed)
    planes = planes.to(problem.device)
    squeeze = not cfg.dynamic
    resumed = checkpointer is not None and checkpointer.state("planes") is not None
    warm_report = None
    if free.plane_warm_start > 0 and not resumed:
        warm = replace(cfg, free=replace(free, encoding="dense", iterations=free.plane_warm_start))
        start, warm_report = run_free_volume(problem, bins_hz, warm)
        start = start * problem.scale
        planes.init_from_volume(start[None] if squeeze else start)
    field_ = SpectralField(planes, coef)
    opt = torch.optim.Adam(field_.parameters(), lr=free.plane_lr)

    def loss_fn():
        vol = field_.volume()
        data = problem.data_loss(field_() if not squeeze else field_()[0])
        reg = free.tv * smooth_tv(vol) + free.tv_time * smoothness(vol, (0,))
        return data + reg, data

    def volume():
        v = field_.volume().detach()
        return v[0] if squeeze else v

    report = adam_loop(field_, opt, loss_fn, volume, free.iterations, problem, cfg, stop,
                        callback, checkpointer, "planes")  # fmt: skip
    report["warm_start"] = warm_report
    best = report.pop("best_volume")
    return best / problem.scale, report
