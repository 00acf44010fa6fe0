"""Stage 2: the parametric water / fat / field-map head (non-convex).

Started from a water/fat least-squares fit at psi = 0 (a few CG steps), then Adam or
L-BFGS on water, fat and a smooth (downsampled) field map jointly.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mrsolve.propeller.fat import fat_spectrum
from mrsolve.recon.fields import WaterFatField
from mrsolve.recon.models import SpectralProblem
from mrsolve.recon.regularizers import smooth_tv, smoothness
from mrsolve.recon.stages.loops import Checkpointer, adam_loop, lbfgs_loop
from mrsolve.solvers.alg import cg

if TYPE_CHECKING:
    from mrsolve.recon.pipeline import SpectralConfig

Callback = Callable[..., None] | None


@dataclass
class WaterFatConfig:
    """Parametric water / fat / field-map stage."""

    enabled: bool = False
    optimizer: str = "lbfgs"  # "lbfgs" or "adam"
    iterations: int = 100
    lr: float = 0.05
    init_cg_iterations: int = 20
    tv: float = 0.003
    psi_smooth: float = 1e-7
    downsample: int = 4
    max_abs_hz: float = 200.0


def initial_water_fat(problem: SpectralProblem, field_: WaterFatField, n_iter: int) -> None:
    """Set water and fat to the least-squares fit at psi = 0 (``n_iter`` CG steps)."""
    a = field_.u_conj.sum(1)  # U^H 1: coefficients of a constant-in-time signal
    c = field_.u_conj @ field_.fat_signal  # U^H c(t)
    frame = problem.frames[0]

    def normal(v):  # v (2, ny, nx) = (water, fat) -> gradient of the quadratic
        z = a[:, None, None] * v[0] + c[:, None, None] * v[1]
        nz = frame.normal(z)
        return torch.stack([torch.einsum("l,lyx->yx", a.conj(), nz),
                            torch.einsum("l,lyx->yx", c.conj(), nz)])  # fmt: skip

    rhs = torch.stack([torch.einsum("l,lyx->yx", a.conj(), frame.b),
                       torch.einsum("l,lyx->yx", c.conj(), frame.b)])  # fmt: skip
    v, _ = cg(normal, rhs, max_iter=n_iter, tol=1e-6)
    with torch.no_grad():
        field_.water.values.copy_(torch.view_as_real(v[0]))
        field_.fat.values.copy_(torch.view_as_real(v[1]))


def run_water_fat(
    problem: SpectralProblem,
    field_strength_t: float,
    cfg: SpectralConfig,
    callback: Callback = None,
    checkpointer: Checkpointer | None = None,
) -> tuple[dict, dict]:
    """Stage 2: {"water", "fat", "field_map_hz"} (unscaled) and a report."""
    wf, stop = cfg.waterfat, cfg.stopping
    spectrum = fat_spectrum(field_strength_t, cfg.frequency.fat_model)
    zeros = torch.zeros(problem.image_shape, dtype=torch.complex64, device=problem.device)
    field_ = WaterFatField(problem.basis, spectrum, zeros, zeros, zeros.real, wf.downsample,
                           wf.max_abs_hz).to(problem.device)  # fmt: skip
    initial_water_fat(problem, field_, wf.init_cg_iterations)
    if wf.optimizer == "adam":
        opt = torch.optim.Adam(field_.parameters(), lr=wf.lr)
    else:
        opt = torch.optim.LBFGS(field_.parameters(), lr=1.0, max_iter=1, history_size=20,
                                line_search_fn="strong_wolfe")  # fmt: skip

    def loss_fn():
        data = problem.data_loss(field_())
        reg = wf.tv * (smooth_tv(field_.water()) + smooth_tv(field_.fat()))
        reg = reg + wf.psi_smooth * smoothness(field_.field_map())
        return data + reg, data

    def maps():
        with torch.no_grad():
            return torch.stack(
                [field_.water(), field_.fat(), field_.field_map().to(torch.complex64)]
            )

    if wf.optimizer == "adam":
        report = adam_loop(field_, opt, loss_fn, maps, wf.iterations, problem, cfg, stop,
                            callback, checkpointer, "waterfat")  # fmt: skip
    else:
        report = lbfgs_loop(field_, opt, loss_fn, maps, wf.iterations, problem, stop,
                             callback, checkpointer)  # fmt: skip
    best = report.pop("best_volume")
    out = {"water": best[0] / problem.scale, "fat": best[1] / problem.scale,
           "field_map_hz": best[2].real}  # fmt: skip
    return out, report
