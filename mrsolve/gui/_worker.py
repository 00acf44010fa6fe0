"""Reconstruction as a generator of progress steps (no Qt; napari wraps it in a thread worker).

The reconstruction methods report through ``callback(step, total, image=..., **info)``;
this module runs one in a helper thread and turns its callbacks into yielded
:class:`Progress` items, so a GUI can show a progress bar and a live preview and can
cancel: after :meth:`Cancel.set` the next callback raises :class:`Cancelled`, which
stops the algorithm at its next step.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from mrsolve.data.results import Reconstruction
from mrsolve.propeller.scan import Scan
from mrsolve.recon.methods import reconstruct


class Cancelled(Exception):
    """Raised inside the algorithm's callback once cancellation was requested."""


@dataclass
class Progress:
    """One step: ``preview`` is a magnitude image (numpy) every ``preview_every`` steps."""

    step: int
    total: int
    preview: np.ndarray | None = None
    info: dict = field(default_factory=dict)


Reconstructor = Callable[..., Reconstruction]


def reconstruction_steps(
    scan: Scan,
    method: str,
    cancel: threading.Event,
    preview_every: int = 5,
    run: Reconstructor = reconstruct,
    poll_s: float = 0.05,
    **options,
) -> Iterator[Progress | None]:
    """Yield Progress (or None while waiting) and return the Reconstruction.

    Args:
        scan: the acquisition.
        method: a key of :data:`mrsolve.recon.methods.METHODS`.
        cancel: set it to stop; the generator then raises :class:`Cancelled`.
        preview_every: attach a preview image to every this many steps (and the last).
        run: ``run(scan, method, callback=..., **options)`` -> Reconstruction.
        poll_s: how long to wait for a step before yielding None (lets the caller
            check for abort requests).
        options: passed to ``run`` (device, preset, iterations, ...).
    """
    if isinstance(preview_every, bool) or not isinstance(preview_every, int) or preview_every < 1:
        raise ValueError(f"preview_every must be a positive integer, got {preview_every!r}")
    steps: queue.Queue = queue.Queue()
    outcome: dict = {}

    def callback(step: int, total: int, image=None, *_, **info) -> None:
        if cancel.is_set():
            raise Cancelled(f"reconstruction cancelled at step {step} of {total}")
        preview = None
        if image is not None and (step % preview_every == 0 or step == total):
            preview = np.abs(
                image.detach().cpu().numpy() if isinstance(image, torch.Tensor) else image
            )
        steps.put(Progress(int(step), int(total), preview, info))

    def target() -> None:
        try:
            outcome["result"] = run(scan, method, callback=callback, **options)
        except BaseException as err:  # handed to the caller's thread below
            outcome["error"] = err

    thread = threading.Thread(target=target, name=f"mrsolve-{method}", daemon=True)
    thread.start()
    try:
        while thread.is_alive() or not steps.empty():
            try:
                yield steps.get(timeout=poll_s)
            except queue.Empty:
                yield None
    finally:  # closed early (napari abort): stop the algorithm at its next callback
        if thread.is_alive():
            cancel.set()
            thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]
