"""Optimizer loops shared by the spectral stages: held-out stopping and checkpoints.

Every loop runs in segments of ``check_every`` iterations; after each segment the
held-out data-consistency loss is measured, the best iterate kept, a checkpoint written,
and the run stopped after ``patience`` segments without improvement (never the truth).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class StoppingConfig:
    """Held-out data-consistency stopping rule."""

    check_every: int = 10
    patience: int = 3
    min_improvement: float = 1e-3


class Checkpointer:
    """Saves and restores optimizer state at ``path`` (None: no checkpoints)."""

    def __init__(self, path: str | os.PathLike | None, resume: bool = False) -> None:
        self.path = None if path is None else Path(path)
        if resume and (self.path is None or not self.path.is_file()):
            raise ValueError(f"resume needs an existing checkpoint file, got {path!r}")
        # on the CPU: a checkpoint written on a GPU resumes anywhere (the stages move it)
        self.loaded = (
            torch.load(self.path, map_location="cpu", weights_only=False) if resume else None
        )

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
class Tracker:
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


def _on(x: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if x is None else x.to(device)


def adam_loop(module, opt, loss_fn, volume, iterations, problem, cfg, stop, callback,
               checkpointer, stage):  # fmt: skip
    """Adam (or any first-order torch optimizer) with a cosine schedule and held-out stops."""
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, iterations)
    state = checkpointer.state(stage) if checkpointer else None
    tracker, done = Tracker(), 0
    if state is not None:
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        done = state["done"]
        tracker = Tracker(
            state["best"], _on(state["best_volume"], problem.device), state["bad"], state["history"]
        )
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
        held = heldout(problem, module, volume, stage)
        stopped = tracker.update(held, volume().clone(), stop)
        if checkpointer is not None:
            checkpointer.save(stage, {"module": module.state_dict(), "opt": opt.state_dict(),
                                      "sched": sched.state_dict(), "done": done,
                                      "best": tracker.best, "best_volume": tracker.best_state,
                                      "bad": tracker.bad, "history": tracker.history})  # fmt: skip
    return {"iterations": done, "heldout_history": tracker.history, "stopped_early": stopped,
            "best_volume": tracker.best_state}  # fmt: skip


def heldout(problem, module, volume, stage) -> float:
    with torch.no_grad():
        z = module()
    return problem.heldout_loss(z)


def lbfgs_loop(module, opt, loss_fn, volume, iterations, problem, stop, callback, checkpointer):
    """L-BFGS, one line-searched iteration per step, held-out checks every segment."""
    state = checkpointer.state("waterfat") if checkpointer else None
    tracker, done = Tracker(), 0
    if state is not None:
        module.load_state_dict(state["module"])
        opt.load_state_dict(state["opt"])
        done = state["done"]
        tracker = Tracker(
            state["best"], _on(state["best_volume"], problem.device), state["bad"], state["history"]
        )
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
        held = heldout(problem, module, volume, "waterfat")
        stopped = tracker.update(held, volume().clone(), stop)
        if checkpointer is not None:
            checkpointer.save("waterfat", {"module": module.state_dict(), "opt": opt.state_dict(),
                                           "done": done, "best": tracker.best,
                                           "best_volume": tracker.best_state, "bad": tracker.bad,
                                           "history": tracker.history})  # fmt: skip
    return {"iterations": done, "heldout_history": tracker.history, "stopped_early": stopped,
            "best_volume": tracker.best_state}  # fmt: skip
