"""Seeded straggler models: how long each worker takes, and which workers die."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

import numpy as np

from mrsolve.solvers.validation import check_positive


@dataclass(frozen=True)
class ShiftedExponential:
    """Worker delay ``shift + Exp(mean=scale)`` seconds, i.i.d. over workers (and iterations).

    The standard straggler model of the coded-computation literature: every worker needs
    at least ``shift`` seconds, and a heavy exponential tail makes a few of them slow.
    """

    shift: float = 0.0
    scale: float = 1.0

    def __post_init__(self) -> None:
        check_positive("shift", self.shift, allow_zero=True)
        check_positive("scale", self.scale, allow_zero=True)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``(n,)`` delays in seconds."""
        extra = rng.exponential(self.scale, size=n) if self.scale > 0 else np.zeros(n)
        return self.shift + extra

    def straggler_probability(self, deadline: float) -> float:
        """Probability that one worker is not done by ``deadline`` seconds."""
        if deadline < self.shift:
            return 1.0
        return float(np.exp(-(deadline - self.shift) / self.scale)) if self.scale else 0.0


DelaySpec = ShiftedExponential | Sequence[float] | None


def draw_delays(spec: DelaySpec, n: int, rng: np.random.Generator) -> np.ndarray:
    """Delays of ``n`` workers from a model, an explicit list of ``n`` seconds, or None (zeros)."""
    if spec is None:
        return np.zeros(n)
    if isinstance(spec, ShiftedExponential):
        return spec.sample(n, rng)
    d = np.asarray(spec, dtype=float)
    if d.shape != (n,) or not np.all(np.isfinite(d)) or np.any(d < 0):
        raise ValueError(
            f"delays must be a ShiftedExponential or {n} non-negative seconds, got shape {d.shape}"
        )
    return d


def check_failures(fail: Collection[int], n: int) -> frozenset[int]:
    """Validate the set of worker indices to kill."""
    out = frozenset(int(i) for i in fail)
    bad = sorted(i for i in out if not 0 <= i < n)
    if bad:
        raise ValueError(f"fail must hold worker indices in [0, {n}), got {bad}")
    return out
