"""The one optimizer loop of the spectral stages (sigpy's ``App.run`` in spirit).

:func:`run` drives a stepper (:mod:`~mrsolve.recon.spectral.steppers`) in segments of
``check_every`` iterations. After every iteration it reports progress; after every
segment it measures the held-out data-consistency loss, keeps the best iterate, writes a
checkpoint of the full stepper state and stops after ``patience`` segments without
improvement (never looking at the truth), or as soon as a stepper with a ``converged``
attribute says it is. A resumed run restores the stepper state and
the held-out history, so it ends where an uninterrupted run ends.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

#: ``callback(step, total, image=None, loss=None)`` after every iteration
Callback = Callable[..., None] | None


@dataclass
class StoppingConfig:
    """Held-out data-consistency stopping rule: check every ``check_every`` iterations,
    stop after ``patience`` checks that improve by less than ``min_improvement``."""

    check_every: int = 10
    patience: int = 3
    min_improvement: float = 1e-3


class Stepper(Protocol):
    """One iteration per :meth:`step`; its whole state round-trips through a dict (an
    optional ``converged`` attribute ends the run when True)."""

    def step(self) -> float:
        """One iteration; returns the data loss (scaled units) it evaluated."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


FORMAT = "mrsolve-spectral-checkpoint"


def scan_sha256(scan) -> str:
    """SHA-256 of a scan's samples, trajectory and sample times (the input data, whatever
    file or slice they came from)."""
    digest = hashlib.sha256()
    for tensor in (scan.kspace, scan.traj, scan.times):
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


def checkpoint_binding(scan, config: dict) -> dict:
    """What a checkpoint belongs to: the input data's SHA-256, the scan geometry (in the
    command line's words) and the resolved configuration (JSON-plain)."""
    n_coils, n_blades, n_lines, n_read = scan.kspace.shape
    geometry = {
        "matrix size": " x ".join(map(str, scan.image_shape)),
        "coils": n_coils,
        "blades": n_blades,
        "lines per blade": n_lines,
        "readout samples": n_read,
        "frames": scan.n_frames,
        "echoes": scan.n_echoes,
    }
    plain = json.loads(json.dumps(config, sort_keys=True, default=str))
    return {"input_sha256": scan_sha256(scan), "geometry": geometry, "config": plain}


def _differences(saved: dict, current: dict) -> list[str]:
    """'what: checkpoint value vs this run' for each entry of two bindings that differs."""
    out = []
    if saved.get("input_sha256") != current.get("input_sha256"):
        out.append(
            f"input data SHA-256 {str(saved.get('input_sha256'))[:12]}... vs "
            f"{str(current.get('input_sha256'))[:12]}..."
        )
    for section in ("geometry", "config"):
        old, new = _flat(saved.get(section, {})), _flat(current.get(section, {}))
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                name = key if section == "geometry" else f"option {key}"
                out.append(f"{name} {old.get(key)!r} vs {new.get(key)!r}")
    return out


def _flat(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


class Checkpointer:
    """Saves and restores stage states at ``path`` (None: no checkpoints).

    A checkpoint holds plain tensors, dicts, lists and numbers only and is read with
    ``torch.load(weights_only=True)`` (no code runs from a crafted file). It records
    ``binding`` (:func:`checkpoint_binding`): a resume whose binding differs is refused
    with a ValueError naming what differs. The folder of ``path`` is checked when the
    Checkpointer is made, before any computation.
    """

    def __init__(
        self, path: str | os.PathLike | None, resume: bool = False, binding: dict | None = None
    ) -> None:
        self.path = None if path is None else Path(path)
        self.binding = binding or {}
        self.loaded: dict | None = None
        if self.path is None:
            if resume:
                raise ValueError("resume needs a checkpoint file, got checkpoint=None")
            return
        folder = self.path.parent
        if self.path.is_dir():
            raise ValueError(f"checkpoint {str(path)!r} is a folder, expected a file name")
        if not folder.is_dir() or not os.access(folder, os.W_OK):
            raise ValueError(f"checkpoint folder {str(folder)!r} does not exist or is not writable")
        if resume:
            if not self.path.is_file():
                raise ValueError(f"resume needs an existing checkpoint file, got {str(path)!r}")
            self.loaded = self._load()

    def _load(self) -> dict:
        try:
            # on the CPU: a checkpoint written on a GPU resumes anywhere (the steppers move it)
            data = torch.load(self.path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError:  # weights_only refused an object: it could run code
            raise ValueError(
                f"checkpoint {str(self.path)!r} holds objects other than tensors, lists, dicts "
                "and numbers; not loaded (loading it could run code)"
            ) from None
        except Exception as err:  # any other unreadable file: truncated, not torch
            first = str(err).strip().split(". ")[0].splitlines()[0] if str(err).strip() else ""
            raise ValueError(
                f"checkpoint {str(self.path)!r} cannot be read as an mrsolve checkpoint "
                f"({type(err).__name__}: {first})"
            ) from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(
                f"checkpoint {str(self.path)!r} is not an mrsolve spectral checkpoint "
                "(or one from an older version); rerun without --resume"
            )
        differences = _differences(data.get("binding", {}), self.binding)
        if differences:
            raise ValueError(
                f"checkpoint {str(self.path)!r} was made for another run: "
                f"{'; '.join(differences[:4])}"
                f"{f' (and {len(differences) - 4} more)' if len(differences) > 4 else ''}; "
                "rerun without --resume to start over"
            )
        return data["states"]

    def state(self, name: str) -> dict | None:
        """The saved state under ``name`` if the checkpoint holds it."""
        if self.loaded is None:
            return None
        return self.loaded.get(name)

    def save(self, name: str, state: object) -> None:
        """Store ``state`` under ``name`` (written to a temporary file, then renamed)."""
        if self.path is None:
            return
        data = dict(self.loaded or {})
        data[name] = state
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        torch.save({"format": FORMAT, "binding": self.binding, "states": data}, tmp)
        os.replace(tmp, self.path)
        self.loaded = data


@dataclass
class Tracker:
    """Held-out loss history, best iterate and patience counter."""

    best: float = math.inf
    best_state: torch.Tensor | None = None
    bad: int = 0
    history: list[float] = field(default_factory=list)

    def update(self, loss: float, state: torch.Tensor, cfg: StoppingConfig) -> bool:
        """Record ``loss``; True when the run should stop."""
        self.history.append(loss)
        if math.isnan(loss):  # no held-out lines: keep the latest iterate
            self.best_state = state
            return False
        if loss < self.best * (1 - cfg.min_improvement):
            self.best, self.best_state, self.bad = loss, state, 0
        else:
            if loss < self.best:
                self.best, self.best_state = loss, state
            self.bad += 1
        return self.bad >= cfg.patience


@dataclass(frozen=True)
class RunResult:
    """What :func:`run` did: ``best`` is the iterate at the best held-out check (the last
    iterate without checks; None without ``iterate``), on the device of the iterate."""

    best: torch.Tensor | None
    n_iter: int
    heldout_history: list[float]
    stopped_early: bool

    def report(self) -> dict:
        """The stage report entries (JSON-friendly)."""
        return {
            "iterations": self.n_iter,
            "heldout_history": self.heldout_history,
            "stopped_early": self.stopped_early,
        }


def run(
    stepper: Stepper,
    max_iter: int,
    iterate: Callable[[], torch.Tensor] | None = None,
    *,
    heldout: Callable[[], float] | None = None,
    stopping: StoppingConfig | None = None,
    residual: Callable[[float], float] = float,
    preview: Callable[[], torch.Tensor] | None = None,
    callback: Callback = None,
    checkpointer: Checkpointer | None = None,
    name: str | None = None,
    checkpoint_every: int | None = None,
) -> RunResult:
    """Run ``stepper`` for up to ``max_iter`` iterations (module doc).

    Args:
        stepper: the optimizer state and its update.
        max_iter: iteration budget.
        iterate: the current iterate as a new tensor (kept as the best one; needed with
            ``stopping``).
        heldout: the held-out loss of the current iterate; with ``stopping``, checked
            every ``stopping.check_every`` iterations (None: no checks, run to the end).
        stopping: the held-out rule (None: no checks).
        residual: maps the stepper's data loss to the value reported as ``loss``.
        preview: an image for the callback (None: ``image=None``).
        callback: ``callback(step, max_iter, image=..., loss=...)`` after each iteration.
        checkpointer, name: save the stepper and tracker under ``name`` after every
            segment, and resume from that entry when the checkpoint holds it.
        checkpoint_every: segment length without ``stopping`` (None: one segment).
    """
    if (heldout is None) != (stopping is None):
        raise ValueError("heldout and stopping must be given together, got one of them")
    if stopping is not None and iterate is None:
        raise ValueError("iterate must be given with stopping (the best iterate is kept)")
    tracker, done = Tracker(), 0
    saved = checkpointer.state(name) if checkpointer is not None and name else None
    if saved is not None:
        stepper.load_state_dict(saved["stepper"])
        done = saved["done"]
        tracker = Tracker(saved["best"], saved["best_state"], saved["bad"], saved["history"])
    segment = stopping.check_every if stopping is not None else (checkpoint_every or max_iter)
    stopped = False
    while done < max_iter and not stopped:
        for _ in range(min(segment, max_iter - done)):
            loss = stepper.step()
            done += 1
            if callback is not None:
                image = preview() if preview is not None else None
                callback(done, max_iter, image=image, loss=residual(loss))
            if getattr(stepper, "converged", False):
                break
        if stopping is not None:
            stopped = tracker.update(heldout(), iterate(), stopping)
        stopped = stopped or getattr(stepper, "converged", False)
        if checkpointer is not None and name:
            checkpointer.save(name, _checkpoint(stepper, done, tracker))
    best = None
    if iterate is not None:
        current = iterate()
        best = current if tracker.best_state is None else tracker.best_state.to(current.device)
    return RunResult(best, done, tracker.history, stopped)


def shifted(callback: Callback, offset: int, total: int) -> Callback:
    """``callback`` as seen by a part of a longer run: steps move by ``offset`` and the
    total is ``total`` (None stays None)."""
    if callback is None:
        return None

    def inner(step: int, _total: int, image=None, loss=None) -> None:
        callback(offset + step, total, image=image, loss=loss)

    return inner


def _checkpoint(stepper: Stepper, done: int, tracker: Tracker) -> dict:
    best = None if tracker.best_state is None else tracker.best_state.cpu()
    return {
        "stepper": stepper.state_dict(),
        "done": done,
        "best": tracker.best,
        "best_state": best,
        "bad": tracker.bad,
        "history": list(tracker.history),
    }
