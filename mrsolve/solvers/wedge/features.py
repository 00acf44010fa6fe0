"""Wedge-product neurons: hyperplanes through ``d`` training samples (arXiv 2309.16512).

For samples ``x_{i_0}, ..., x_{i_{d-1}}`` in ``R^d`` the hyperplane through them has the
normal ``c = star(a_1 ^ ... ^ a_{d-1})``, the Hodge dual of the wedge of the differences
``a_k = x_{i_k} - x_{i_0}``: the generalized cross product, whose entries are the signed
cofactors ``c_j = (-1)^(d-1+j) det(A without column j)`` (``A`` the ``(d-1, d)`` matrix of
differences), so that ``det([A; x]) = c^T x``. The neuron is ``v = c / ||c||`` with bias
``b = -v^T x_{i_0}`` and the feature ``relu(v^T x + b) = relu(det([A; x - x_{i_0}])) / ||c||``
is the signed volume of the parallelotope spanned by ``x - x_{i_0}`` and the differences,
divided by the volume of its base. In 2-D, ``v`` is the 90-degree rotation of
``x_i - x_j``. Both orientations (``+-v``) are kept.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mrsolve.solvers.validation import SeedLike, check_int, make_generator

#: relative size below which a cross product counts as zero (degenerate subset)
_DEGENERATE = 1e-10


def generalized_cross(A: torch.Tensor) -> torch.Tensor:
    """Hodge dual of the wedge of the rows of ``A`` ``(..., d - 1, d)``: ``(..., d)``.

    Orthogonal to every row, with norm the ``(d-1)``-volume they span, oriented so that
    ``det([A; c]) = ||c||^2 >= 0``. Own code: the cofactor formula is a few lines and
    batched ``det`` handles any ``d`` (an SVD null vector would lose the orientation).
    """
    d = A.shape[-1]
    if A.shape[-2] != d - 1:
        raise ValueError(f"A must have shape (..., d - 1, d), got {tuple(A.shape)}")
    if d == 1:
        return torch.ones((*A.shape[:-2], 1), dtype=A.dtype, device=A.device)
    cols = [torch.cat([A[..., :j], A[..., j + 1 :]], dim=-1) for j in range(d)]
    minors = torch.linalg.det(torch.stack(cols, dim=-3))  # (..., d)
    signs = torch.tensor([(-1.0) ** (d - 1 + j) for j in range(d)], dtype=A.dtype, device=A.device)
    return minors * signs


def sample_subsets(n: int, d: int, max_subsets: int | None, seed: SeedLike = 0) -> np.ndarray:
    """All ``C(n, d)`` sorted index subsets when at most ``max_subsets`` (or ``None``),
    else ``max_subsets`` distinct random ones: ``(m, d)`` int array."""
    total = math.comb(n, d)
    if max_subsets is None or total <= max_subsets:
        import itertools

        return np.array(list(itertools.combinations(range(n), d)), dtype=np.int64).reshape(-1, d)
    rng = make_generator(seed, "numpy")
    picked = np.sort(np.argsort(rng.random((2 * max_subsets, n)), axis=1)[:, :d], axis=1)
    return np.unique(picked, axis=0)[:max_subsets] if d else picked[:0]


def wedge_neurons(
    X: torch.Tensor,
    max_features: int | None = None,
    seed: SeedLike = 0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dictionary of wedge neurons of the data ``X`` ``(n, d)``.

    Args:
        X: training samples.
        max_features: cap on the number of neurons (two per subset); None enumerates
            every ``d``-subset exactly, otherwise random subsets beyond the cap.
        seed: seed of the random subsets.

    Returns:
        ``V`` ``(p, d)`` unit normals, ``b`` ``(p,)`` biases and ``subsets`` ``(p, d)``
        sample indices (first = anchor ``x_{i_0}``; ``v^T x_i + b = 0`` for all of them).
        Degenerate subsets (samples not affinely independent) are dropped.
    """
    if not isinstance(X, torch.Tensor) or X.ndim != 2:
        raise ValueError(f"X must be a (n, d) tensor, got {getattr(X, 'shape', type(X))}")
    if max_features is not None:
        check_int("max_features", max_features, 2)
    n, d = X.shape
    cap = None if max_features is None else max_features // 2
    idx = torch.as_tensor(sample_subsets(n, d, cap, seed), device=X.device)
    pts = X[idx]  # (m, d, d)
    c = generalized_cross(pts[:, 1:] - pts[:, :1])
    norm = torch.linalg.vector_norm(c, dim=1)
    scale = float(X.abs().max()) ** max(d - 1, 0) if X.numel() else 1.0
    keep = norm > _DEGENERATE * max(scale, 1e-300)
    v = c[keep] / norm[keep, None]
    b = -(v * pts[keep, 0]).sum(1)
    V = torch.cat([v, -v])
    return V, torch.cat([b, -b]), torch.cat([idx[keep], idx[keep]])


def wedge_features(X: torch.Tensor, V: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``relu(X V^T + b)`` ``(n, p)``: the dictionary evaluated at ``X`` ``(n, d)``."""
    return torch.relu(X @ V.T + b)
