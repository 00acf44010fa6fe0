"""Stage 1 on factorized planes: x(r, f[, t]) from low-rank planes, fitted with Adam."""

from __future__ import annotations

import torch

from mrsolve.recon.encodings import FactorizedPlanes
from mrsolve.recon.fields import SpectralField
from mrsolve.recon.regularizers import smooth_tv, smoothness
from mrsolve.recon.stages.loops import adam_loop


def run_planes(problem, coef, shape, cfg, callback, checkpointer):
    """The free volume (T, F, ny, nx) from planes (squeezed when static) and a report."""
    free, stop = cfg.free, cfg.stopping
    torch.manual_seed(cfg.seed)
    planes = FactorizedPlanes(shape, free.plane_rank, seed=cfg.seed).to(problem.device)
    field_ = SpectralField(planes, coef)
    opt = torch.optim.Adam(field_.parameters(), lr=free.plane_lr)
    squeeze = not cfg.dynamic

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
    best = report.pop("best_volume")
    return best / problem.scale, report
