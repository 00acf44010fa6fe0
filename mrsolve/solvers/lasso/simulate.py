"""Grouped-data simulation of the pretrained lasso paper (the authors' test design).

Rows fall into ``K`` equal groups; ``X`` is standard normal; the first ``n_common``
features carry the same coefficient ``beta_common`` in every group; group ``k`` also has
``n_individual[k]`` features of its own (disjoint blocks after the common ones) with
coefficient ``beta_individual``; ``y = X beta_k + intercept_k + noise_sd * N(0, 1)``.
The defaults follow the authors' design (K = 5, p = 10 + 50 + 40 + 20 + 10 + 10 = 140,
noise sd 20, 300 rows); the coefficient sizes are our choice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrsolve.solvers.validation import SeedLike, make_generator


@dataclass(frozen=True)
class GroupedData:
    """X ``(n, p)``, y ``(n,)``, groups ``(n,)`` in ``0..K-1``, beta ``(K, p)`` (true
    coefficients per group) and common ``(p,)`` (mask of the shared features)."""

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    beta: np.ndarray
    common: np.ndarray


def simulate_groups(
    n: int = 300,
    n_common: int = 10,
    n_individual: tuple[int, ...] = (50, 40, 20, 10, 10),
    beta_common: float = 10.0,
    beta_individual: float = 5.0,
    noise_sd: float = 20.0,
    seed: SeedLike = 0,
) -> GroupedData:
    """Draw one data set of the design above (``n`` rows split evenly over the groups)."""
    K = len(n_individual)
    if n < 2 * K:
        raise ValueError(f"n must be >= 2 * number of groups = {2 * K}, got {n}")
    rng = make_generator(seed, "numpy")
    p = n_common + int(np.sum(n_individual))
    beta = np.zeros((K, p))
    beta[:, :n_common] = beta_common
    start = n_common
    for k, m in enumerate(n_individual):
        beta[k, start : start + m] = beta_individual
        start += m
    groups = np.arange(n) % K
    X = rng.standard_normal((n, p))
    intercepts = np.linspace(-1, 1, K) * noise_sd / 4
    y = np.einsum("np,np->n", X, beta[groups]) + intercepts[groups]
    y = y + noise_sd * rng.standard_normal(n)
    common = np.zeros(p, dtype=bool)
    common[:n_common] = True
    return GroupedData(X, y, groups, beta, common)
