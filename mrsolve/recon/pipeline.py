"""Spectral reconstruction pipeline: configuration, presets and the optimizer loops.

Stages (each optional by preset):

1. free spectral volume x(r, f) (or x(t, r, f) for dynamic scans): FISTA on the dense
   grid with spatial TV per bin, optional TV/l1 along f and TV along t (convex), or
   Adam on factorized planes; run in segments of ``check_every`` iterations (momentum
   restarts at segment ends), after each segment the held-out data-consistency loss is
   measured, the best iterate kept and the run stopped after ``patience`` segments
   without improvement (never the ground truth).
2. parametric water / fat / field map head (non-convex): started from a water/fat
   least-squares fit at psi = 0 (a few CG steps), then Adam or L-BFGS jointly.

Checkpoints are written after each segment; ``resume`` continues from one and, because
segments restart momentum and every random choice is seeded, ends where an
uninterrupted run ends.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import torch

from mrsolve.propeller.fat import fat_spectrum
from mrsolve.recon.encodings import FactorizedPlanes
from mrsolve.recon.fields import SpectralField, WaterFatField, frequency_bins
from mrsolve.recon.models import SpectralProblem
from mrsolve.recon.regularizers import TVProx, smooth_tv, smoothness
from mrsolve.solvers.alg import cg, fista, power_iteration
from mrsolve.solvers.validation import check_choice

Callback = Callable[..., None] | None


@dataclass
class FrequencyConfig:
    """Frequency bins: ``n_bins`` over [min fat - margin, max fat + margin] Hz."""

    n_bins: int = 32
    margin_hz: float = 150.0
    fat_model: str = "six_peak"


@dataclass
class OperatorConfig:
    """Forward model options (see :func:`mrsolve.recon.models.build_problem`)."""

    tol: float = 1e-6
    dcf: str = "analytic"
    coil_maps: str = "walsh"
    holdout_fraction: float = 0.05
    frequency_step_hz: float = 5.0


@dataclass
class FreeVolumeConfig:
    """Free spectral volume stage (regularization weights in units of the scaled image)."""

    enabled: bool = True
    encoding: str = "dense"  # "dense" (FISTA) or "planes" (Adam)
    iterations: int = 100
    tv: float = 0.01
    tv_f: float = 0.0
    l1_f: float = 0.0
    tv_time: float = 0.0
    prox_iterations: int = 5
    plane_rank: int = 16
    plane_lr: float = 0.02


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


@dataclass
class StoppingConfig:
    """Held-out data-consistency stopping rule."""

    check_every: int = 10
    patience: int = 3
    min_improvement: float = 1e-3


@dataclass
class SpectralConfig:
    """Resolved configuration of a spectral reconstruction."""

    preset: str = "static"
    dynamic: bool = False
    seed: int = 0
    frequency: FrequencyConfig = field(default_factory=FrequencyConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    free: FreeVolumeConfig = field(default_factory=FreeVolumeConfig)
    waterfat: WaterFatConfig = field(default_factory=WaterFatConfig)
    stopping: StoppingConfig = field(default_factory=StoppingConfig)


PRESETS: dict[str, dict] = {
    "static": {},
    "fatwater": {"waterfat": {"enabled": True}, "free": {"enabled": False}},
    "dynamic": {"dynamic": True, "free": {"tv_time": 0.5, "iterations": 100}},
}
_SECTIONS = ("frequency", "operator", "free", "waterfat", "stopping")


def resolve_config(
    preset: str = "static", iterations: int | None = None, **overrides
) -> SpectralConfig:
    """The preset's configuration with ``overrides``: a section name with a dict
    (``free={"tv": 0.02}``), a top-level field, or a field name unique to one section
    (``tv_f=0.1``). ``iterations`` sets the last enabled stage's iteration budget."""
    check_choice("preset", preset, PRESETS)
    cfg = SpectralConfig(preset=preset)
    for key, value in PRESETS[preset].items():
        cfg = _override(cfg, key, value)
    for key, value in overrides.items():
        cfg = _override(cfg, key, value)
    if iterations is not None:
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        stage = "waterfat" if cfg.waterfat.enabled else "free"
        cfg = replace(cfg, **{stage: replace(getattr(cfg, stage), iterations=iterations)})
    check_choice("encoding", cfg.free.encoding, ("dense", "planes"))
    check_choice("optimizer", cfg.waterfat.optimizer, ("lbfgs", "adam"))
    return cfg


def _override(cfg: SpectralConfig, key: str, value) -> SpectralConfig:
    if key in _SECTIONS and isinstance(value, dict):
        section = getattr(cfg, key)
        known = {f.name for f in fields(section)}
        bad = sorted(set(value) - known)
        if bad:
            raise ValueError(f"unknown {key} option(s) {bad}; known: {sorted(known)}")
        return replace(cfg, **{key: replace(section, **value)})
    if key in {f.name for f in fields(SpectralConfig)} - set(_SECTIONS):
        return replace(cfg, **{key: value})
    owners = [s for s in _SECTIONS if key in {f.name for f in fields(getattr(cfg, s))}]
    if len(owners) != 1:
        raise ValueError(
            f"override {key!r} must name one option (as section={{...}} when ambiguous); "
            f"found in sections {owners}"
        )
    return _override(cfg, owners[0], {key: value})


def frequency_range(cfg: FrequencyConfig, field_strength_t: float) -> tuple[torch.Tensor, tuple]:
    """Bin frequencies (F,) and the (lo, hi) range the forward model must span."""
    spectrum = fat_spectrum(field_strength_t, cfg.fat_model)
    bins = frequency_bins(spectrum, cfg.n_bins, cfg.margin_hz)
    wide = frequency_bins(spectrum, 2, cfg.margin_hz)
    return bins, (float(wide[0]), float(wide[-1]))


# -- checkpoints --------------------------------------------------------------------


class Checkpointer:
    """Saves and restores optimizer state at ``path`` (None: no checkpoints)."""

    def __init__(self, path: str | os.PathLike | None, resume: bool = False) -> None:
        self.path = None if path is None else Path(path)
        if resume and (self.path is None or not self.path.is_file()):
            raise ValueError(f"resume needs an existing checkpoint file, got {path!r}")
        self.loaded = torch.load(self.path, weights_only=False) if resume else None

    def state(self, stage: str) -> dict | None:
        """The saved state of ``stage`` if the checkpoint holds it (or a later stage)."""
        if self.loaded is None:
            return None
        return self.loaded.get(stage)

    def save(self, stage: str, state: dict) -> None:
        if self.path is None:
            return
        data = dict(self.loaded or {})
        data[stage] = state
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        torch.save(data, tmp)
        os.replace(tmp, self.path)
        self.loaded = data


@dataclass
class _Tracker:
    """Held-out loss history, best iterate and patience counter."""

    best: float = math.inf
    best_state: object = None
    bad: int = 0
    history: list[float] = field(default_factory=list)

    def update(self, loss: float, state, cfg: StoppingConfig) -> bool:
        """Record ``loss``; True when the run should stop."""
        self.history.append(loss)
        if math.isnan(loss):
            self.best_state = state
            return False
        if loss < self.best * (1 - cfg.min_improvement):
            self.best, self.best_state, self.bad = loss, state, 0
        else:
            if loss < self.best:
                self.best, self.best_state = loss, state
            self.bad += 1
        return self.bad >= cfg.patience


# -- stage 1: free spectral volume -------------------------------------------------------


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
    coef = problem.basis.coefficients(bins_hz).to(problem.device)
    n_frames = len(problem.frames)
    shape = (n_frames, bins_hz.numel(), *problem.image_shape)
    if free.encoding == "planes":
        return _run_planes(problem, coef, shape, cfg, callback, checkpointer)
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
    tracker, x, done = _Tracker(), x0, 0
    if state is not None:
        x, done = state["x"].to(problem.device), state["done"]
        tv.dual = [d.to(problem.device) for d in state["dual"]] or None
        tracker = _Tracker(
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


def _run_planes(problem, coef, shape, cfg, callback, checkpointer):
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

    report = _adam_loop(field_, opt, loss_fn, volume, free.iterations, problem, cfg, stop,
                        callback, checkpointer, "planes")  # fmt: skip
    best = report.pop("best_volume")
    return best / problem.scale, report


def _adam_loop(module, opt, loss_fn, volume, iterations, problem, cfg, stop, callback,
               checkpointer, stage):  # fmt: skip
    """Adam (or any first-order torch optimizer) with a cosine schedule and held-out stops."""
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    state = checkpointer.state(stage) if checkpointer else None
    tracker, done = _Tracker(), 0
    if state is not None:
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        done = state["done"]
        tracker = _Tracker(state["best"], state["best_volume"], state["bad"], state["history"])
    stopped = False
    while done < iterations and not stopped:
        seg = min(stop.check_every, iterations - done)
        for _ in range(seg):
            opt.zero_grad()
            total, data = loss_fn()
            total.backward()
            opt.step()
            sched.step()
            done += 1
            if callback is not None:
                callback(
                    done,
                    iterations,
                    image=None,
                    loss=problem.relative_residual(float(data.detach())),
                )
        held = _heldout(problem, module, volume, stage)
        stopped = tracker.update(held, volume().clone(), stop)
        if checkpointer is not None:
            checkpointer.save(stage, {"module": module.state_dict(), "opt": opt.state_dict(),
                                      "sched": sched.state_dict(), "done": done,
                                      "best": tracker.best, "best_volume": tracker.best_state,
                                      "bad": tracker.bad, "history": tracker.history})  # fmt: skip
    return {"iterations": done, "heldout_history": tracker.history, "stopped_early": stopped,
            "best_volume": tracker.best_state}  # fmt: skip


def _heldout(problem, module, volume, stage) -> float:
    with torch.no_grad():
        z = module()
    return problem.heldout_loss(z)


# -- stage 2: parametric water / fat / field map -----------------------------------------


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
        report = _adam_loop(field_, opt, loss_fn, maps, wf.iterations, problem, cfg, stop,
                            callback, checkpointer, "waterfat")  # fmt: skip
    else:
        report = _lbfgs_loop(field_, opt, loss_fn, maps, wf.iterations, problem, stop,
                             callback, checkpointer)  # fmt: skip
    best = report.pop("best_volume")
    out = {"water": best[0] / problem.scale, "fat": best[1] / problem.scale,
           "field_map_hz": best[2].real}  # fmt: skip
    return out, report


def _lbfgs_loop(module, opt, loss_fn, volume, iterations, problem, stop, callback, checkpointer):
    """L-BFGS, one line-searched iteration per step, held-out checks every segment."""
    state = checkpointer.state("waterfat") if checkpointer else None
    tracker, done = _Tracker(), 0
    if state is not None:
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["opt"])
        done = state["done"]
        tracker = _Tracker(state["best"], state["best_volume"], state["bad"], state["history"])
    last = [math.nan]

    def closure():
        opt.zero_grad()
        total, data = loss_fn()
        total.backward()
        last[0] = float(data.detach())
        return total

    stopped = False
    while done < iterations and not stopped:
        seg = min(stop.check_every, iterations - done)
        for _ in range(seg):
            opt.step(closure)
            done += 1
            if callback is not None:
                callback(done, iterations, image=None, loss=problem.relative_residual(last[0]))
        held = _heldout(problem, module, volume, "waterfat")
        stopped = tracker.update(held, volume().clone(), stop)
        if checkpointer is not None:
            checkpointer.save("waterfat", {"module": module.state_dict(), "opt": opt.state_dict(),
                                           "done": done, "best": tracker.best,
                                           "best_volume": tracker.best_state, "bad": tracker.bad,
                                           "history": tracker.history})  # fmt: skip
    return {"iterations": done, "heldout_history": tracker.history, "stopped_early": stopped,
            "best_volume": tracker.best_state}  # fmt: skip
