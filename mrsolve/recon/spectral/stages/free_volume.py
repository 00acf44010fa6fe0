"""Stage 1: the free spectral volume x(r, f) (or x(t, r, f)) on a dense grid.

FISTA with spatial TV per bin, optional TV/l1 along f and TV along t (convex); momentum
restarts at segment ends so that a resumed run ends where an uninterrupted one does.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from mrsolve.recon.spectral.problem import SpectralProblem
from mrsolve.recon.spectral.regularizers import TVProx
from mrsolve.recon.spectral.stages.loops import Checkpointer, Tracker
from mrsolve.solvers.alg import fista, power_iteration

if TYPE_CHECKING:
    from mrsolve.recon.spectral.config import SpectralConfig

Callback = Callable[..., None] | None


@dataclass
class FreeVolumeConfig:
    """Free spectral volume stage (regularization weights in units of the scaled image)."""

    enabled: bool = True
    encoding: str = "dense"  # "dense" (FISTA), "planes" or "hash_grid" (Adam)
    iterations: int = 100
    tv: float = 0.01
    tv_f: float = 0.0
    l1_f: float = 0.0
    tv_time: float = 0.0
    prox_iterations: int = 2  # warm-started inner TV steps per FISTA step (dynamic: 5)
    plane_rank: int = 4
    plane_lr: float = 0.03
    plane_resolution: int = 1  # spatial plane size divisor
    plane_warm_start: int = 10  # dense FISTA iterations that start planes/hash (0: random)
    hash_levels: int = 8
    hash_log2_table: int = 15  # rows per level's table: 2**hash_log2_table
    hash_features: int = 2
    hash_hidden: int = 0  # decoder hidden width (0: linear)
    hash_lr: float = 0.003


def _tv_prox(cfg: FreeVolumeConfig, dynamic: bool) -> TVProx:
    extra = [(-3, cfg.tv_f / cfg.tv if cfg.tv > 0 else 0.0)]
    if dynamic:
        extra.append((-4, cfg.tv_time / cfg.tv if cfg.tv > 0 else 0.0))
    return TVProx(extra, cfg.prox_iterations)


class _CachedObjective:
    """f and its gradient from one autograd pass, cached for FISTA's f(y), grad(y) pairs."""

    def __init__(self, loss: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.loss, self._key, self._value, self._grad, self.last = loss, None, None, None, math.nan

    def _eval(self, x: torch.Tensor) -> None:
        if self._key is x:
            return
        xr = x.detach().requires_grad_(True)
        with torch.enable_grad():
            value = self.loss(xr)
            (grad,) = torch.autograd.grad(value, xr)
        self._key, self._value, self._grad = x, value.detach(), grad
        self.last = float(value.detach())

    def f(self, x: torch.Tensor) -> torch.Tensor:
        self._eval(x)
        return self._value

    def grad(self, x: torch.Tensor) -> torch.Tensor:
        self._eval(x)
        return self._grad


def run_free_volume(
    problem: SpectralProblem,
    bins_hz: torch.Tensor,
    cfg: SpectralConfig,
    callback: Callback = None,
    checkpointer: Checkpointer | None = None,
) -> tuple[torch.Tensor, dict]:
    """Stage 1: the free volume (F, ny, nx), or (T, F, ny, nx) when dynamic, and a report."""
    free, stop = cfg.free, cfg.stopping
    if free.encoding == "planes":
        from mrsolve.recon.spectral.stages.planes import run_planes

        return run_planes(problem, bins_hz, cfg, callback, checkpointer)
    if free.encoding == "hash_grid":
        from mrsolve.recon.spectral.stages.hash_grid import run_hash_grid

        return run_hash_grid(problem, bins_hz, cfg, callback, checkpointer)
    coef = problem.basis.coefficients(bins_hz).to(problem.device)
    shape = (len(problem.frames), bins_hz.numel(), *problem.image_shape)
    squeeze = not cfg.dynamic

    def to_z(x):
        return torch.einsum("lf,...fyx->...lyx", coef, x)

    def loss(x):
        total = problem.data_loss(to_z(x if not squeeze else x[None]))
        return total

    objective = _CachedObjective(loss)
    start = torch.zeros(shape, dtype=torch.complex64, device=problem.device)
    x0 = start[0] if squeeze else start
    # a safety margin over a short power iteration keeps the fixed step below 1 / L
    lip = power_iteration(_hessian_product(loss, x0), x0=torch.ones_like(x0), max_iter=12, tol=1e-2)
    step = 1.0 / (1.25 * lip)
    tv = _tv_prox(free, cfg.dynamic)

    def prox(v: torch.Tensor, t: float) -> torch.Tensor:
        return tv(v, t * free.tv, t * free.l1_f)

    state = checkpointer.state("free") if checkpointer else None
    tracker, x, done = Tracker(), x0, 0
    if state is not None:
        x, done = state["x"].to(problem.device), state["done"]
        tv.dual = [d.to(problem.device) for d in state["dual"]] or None
        tracker = Tracker(
            state["best"], state["best_x"].to(problem.device), state["bad"], state["history"]
        )
    stopped = False
    while done < free.iterations and not stopped:
        seg = min(stop.check_every, free.iterations - done)

        def report(k, xk, offset=done):
            if callback is not None:
                image = xk.sum(-3).detach() / problem.scale
                callback(
                    offset + k + 1, free.iterations, image=image, loss=_rel(problem, objective)
                )

        x, _ = fista(objective.f, objective.grad, prox, x, step=step, max_iter=seg, tol=0.0,
                     backtrack=False, restart="gradient", callback=report)  # fmt: skip
        done += seg
        held = problem.heldout_loss(to_z(x))
        stopped = tracker.update(held, x, stop)
        if checkpointer is not None:
            checkpointer.save("free", {"x": x.cpu(), "done": done, "best": tracker.best,
                                       "dual": [d.cpu() for d in tv.dual or []],
                                       "best_x": tracker.best_state.cpu(), "bad": tracker.bad,
                                       "history": tracker.history})  # fmt: skip
    best = tracker.best_state if tracker.best_state is not None else x
    report = {"iterations": done, "heldout_history": tracker.history, "step": step,
              "stopped_early": stopped}  # fmt: skip
    return best / problem.scale, report


def _gradient(loss: Callable, x: torch.Tensor) -> torch.Tensor:
    xr = x.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(loss(xr), xr)[0]


def _hessian_product(loss: Callable, like: torch.Tensor) -> Callable:
    """v -> H v of a quadratic loss: its gradient at v minus its gradient at 0."""
    g0 = _gradient(loss, torch.zeros_like(like))
    return lambda v: _gradient(loss, v) - g0


def _rel(problem: SpectralProblem, objective: _CachedObjective) -> float:
    return problem.relative_residual(objective.last)
