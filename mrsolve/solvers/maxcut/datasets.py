"""The three dataset classes of the Max-Cut analysis of ReLU training (arXiv 2311.10972).

Labels ``y`` are ``+-1``; the classes are the signs of ``y``.

- orthogonally separable: ``x_i^T x_j > 0`` within a class and ``<= 0`` across classes;
- negatively correlated: ``x_i^T x_j <= 0`` across classes (no condition within);
- general: anything else.

:func:`geometric_factor` is OUR construction, not the paper's. The paper's abstract says
that for general data the achievable approximation "is governed by a geometric factor
that controls the diameter of two zonotopes intrinsic to the dataset"; its definition,
and the bound it enters, are in the body of the paper, which was not obtainable here (only
the abstract and the first paragraph of the introduction were retrievable). Ours is the
largest cross-class cosine ``max_{y_i != y_j} cos(x_i, x_j)`` clipped at 0: 0 exactly for
the two special classes, growing as the classes mix. No approximation bound is attached
to it.
"""

from __future__ import annotations

import math

import numpy as np

from mrsolve.solvers.validation import SeedLike, check_int, make_generator

CLASSES = ("orthogonal", "negative", "general")


def _check_size(n: int, d: int) -> None:
    check_int("n", n, 2)
    check_int("d", d, 2)


def _labels(n: int) -> np.ndarray:
    y = np.ones(n)
    y[n // 2 :] = -1.0
    return y


def _cone(rng: np.random.Generator, m: int, axis: np.ndarray, half_angle: float) -> np.ndarray:
    """``m`` unit vectors at angle <= ``half_angle`` (radians) from the unit ``axis``,
    times a radius in [0.5, 1.5]."""
    d = axis.size
    tangent = rng.standard_normal((m, d))
    tangent -= np.outer(tangent @ axis, axis)
    tangent /= np.linalg.norm(tangent, axis=1, keepdims=True)
    angle = half_angle * rng.uniform(0, 1, m)
    x = np.cos(angle)[:, None] * axis + np.sin(angle)[:, None] * tangent
    return x * rng.uniform(0.5, 1.5, (m, 1))


def make_dataset(
    kind: str, n: int, d: int = 2, seed: SeedLike = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Data ``X`` ``(n, d)`` and labels ``y`` ``(n,)`` in ``{+1, -1}`` of class ``kind``.

    - ``"orthogonal"``: positive class in the positive orthant, negative class in the
      negative orthant (all within-class products > 0, all cross products < 0);
    - ``"negative"``: positive class in a cone of half-angle 70 degrees around ``e_1``,
      negative class in a cone of 20 degrees around ``-e_1`` (cross angles >= 90
      degrees, within-class angles up to 140 degrees, so not orthogonally separable);
    - ``"general"``: Gaussian points with labels of a random ReLU teacher's sign.
    """
    if kind not in CLASSES:
        raise ValueError(f"kind must be one of {list(CLASSES)}, got {kind!r}")
    _check_size(n, d)
    rng = make_generator(seed, "numpy")
    y = _labels(n)
    n_pos = int((y > 0).sum())
    if kind == "orthogonal":
        X = np.abs(rng.standard_normal((n, d))) + 0.05
        X[y < 0] *= -1
    elif kind == "negative":
        e1 = np.eye(d)[0]
        pos = _cone(rng, n_pos, e1, math.radians(70))
        if n_pos >= 2:  # two positives 140 degrees apart: never orthogonally separable
            pos[1] = 2 * pos[0, 0] * e1 - pos[0]
            pos[:2] = math.cos(math.radians(70)) * e1 + (pos[:2] - np.outer(pos[:2, 0], e1)) / (
                np.linalg.norm(pos[:2] - np.outer(pos[:2, 0], e1), axis=1, keepdims=True)
                / math.sin(math.radians(70))
            )
        X = np.concatenate([pos, _cone(rng, n - n_pos, -e1, math.radians(20))])
    else:
        X = rng.standard_normal((n, d))
        W = rng.standard_normal((3, d))
        score = np.maximum(X @ W.T, 0) @ np.array([1.0, -1.0, 1.0])
        order = np.argsort(-score)
        X = X[order]  # the n/2 highest scores get y = +1
    return X, y


def _cross_products(X: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    X = np.asarray(X, dtype=float)
    y = np.asarray(y, dtype=float)
    if X.ndim != 2 or y.shape != (X.shape[0],):
        raise ValueError(f"X must be (n, d) and y (n,), got {X.shape} and {y.shape}")
    if np.any(y == 0):
        raise ValueError("y must be non-zero everywhere (its sign is the class), got zeros")
    G = X @ X.T
    same = np.sign(y)[:, None] == np.sign(y)[None, :]
    return G, same


def is_orthogonally_separable(X: np.ndarray, y: np.ndarray, tol: float = 1e-12) -> bool:
    """``x_i^T x_j > 0`` within each class of ``sign(y)`` and ``<= 0`` across."""
    G, same = _cross_products(X, y)
    scale = tol * float(np.abs(G).max())
    return bool(np.all(G[same] > scale) and np.all(G[~same] <= scale))


def is_negatively_correlated(X: np.ndarray, y: np.ndarray, tol: float = 1e-12) -> bool:
    """``x_i^T x_j <= 0`` for every pair in different classes of ``sign(y)``."""
    G, same = _cross_products(X, y)
    return bool(np.all(G[~same] <= tol * float(np.abs(G).max())))


def dataset_class(X: np.ndarray, y: np.ndarray) -> str:
    """``"orthogonal"``, ``"negative"`` or ``"general"`` (the most special that holds)."""
    if is_orthogonally_separable(X, y):
        return "orthogonal"
    return "negative" if is_negatively_correlated(X, y) else "general"


def geometric_factor(X: np.ndarray, y: np.ndarray) -> float:
    """Largest cross-class cosine ``max(0, max_{y_i y_j < 0} cos(x_i, x_j))``.

    Our proxy, not the paper's zonotope-diameter factor (see the module docstring); 0 for
    orthogonally separable and negatively correlated data."""
    G, same = _cross_products(X, y)
    norms = np.sqrt(np.clip(np.diag(G), 1e-300, None))
    cos = G / np.outer(norms, norms)
    return float(max(0.0, cos[~same].max()))
