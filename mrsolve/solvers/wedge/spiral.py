"""The two-spiral classification dataset."""

from __future__ import annotations

import numpy as np

from mrsolve.solvers.validation import SeedLike, check_int, make_generator


def make_spiral(
    n: int = 100, turns: float = 1.5, noise: float = 0.0, seed: SeedLike = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaved spirals: ``X`` ``(n, 2)`` in ``[-1, 1]^2`` and labels ``y`` in
    ``{-1, +1}`` (half each); ``turns`` revolutions, Gaussian ``noise`` (std)."""
    check_int("n", n, 2)
    rng = make_generator(seed, "numpy")
    m = n // 2
    t = np.sqrt(rng.uniform(0.02, 1, n))
    angle = 2 * np.pi * turns * t + np.where(np.arange(n) < m, 0.0, np.pi)
    X = t[:, None] * np.stack([np.cos(angle), np.sin(angle)], 1)
    X += noise * rng.standard_normal(X.shape)
    y = np.where(np.arange(n) < m, 1.0, -1.0)
    return X, y
