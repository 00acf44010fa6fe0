"""Activation patterns ``D_i = diag(1[X g_i >= 0])`` of a data matrix and their gate vectors.

Three ways to choose gates ``g_i`` (rows of a ``(P, d)`` tensor, ``d`` including the bias
column when the data carry one):

- :func:`sample_gates`: Gaussian gates (optionally with quantile biases);
- :func:`enumerate_gates`: every cell of the hyperplane arrangement ``{x_j^T g = 0}``
  of low-rank data (exact for data in general position), so the convex program is the
  full, not a sampled, one;
- :func:`zonotope_gates`: exact arrangements of random low-rank projections of the data
  (the polynomial-time subsampling of arXiv 2312.12657).

Every function drops the all-zero pattern and keeps one gate per distinct pattern.
"""

from __future__ import annotations

import math

import torch

from mrsolve.solvers.validation import SeedLike, check_finite, check_int, make_generator

_MAX_SUBSETS = 500_000


def _check_X(X: torch.Tensor) -> torch.Tensor:
    if not isinstance(X, torch.Tensor):
        raise TypeError(f"X must be a torch.Tensor, got {type(X).__name__}")
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(X.shape)}")
    check_finite("X", X)
    return X


def gate_masks(X: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Patterns ``1[X g_i >= 0]`` as a boolean ``(n, P)`` tensor (``gates``: ``(P, d)``)."""
    if gates.ndim != 2 or gates.shape[1] != X.shape[1]:
        raise ValueError(
            f"gates must have shape (P, {X.shape[1]}) to match X, got {tuple(gates.shape)}"
        )
    return X @ gates.to(X.dtype).T >= 0


def unique_patterns(X: torch.Tensor, gates: torch.Tensor) -> torch.Tensor:
    """Keep the first gate of every distinct non-zero pattern, in their original order."""
    masks = gate_masks(X, gates)
    nonzero = masks.any(0)
    gates, masks = gates[nonzero], masks[:, nonzero]
    if gates.shape[0] == 0:
        return gates
    _, inverse = torch.unique(masks.T, dim=0, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), gates.shape[0], dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(gates.shape[0]), reduce="amin")
    return gates[first.sort().values]


def sample_gates(
    X: torch.Tensor,
    n_gates: int,
    seed: SeedLike = 0,
    bias_quantiles: bool = False,
) -> torch.Tensor:
    """Gaussian gates ``g ~ N(0, I_d)`` with distinct non-zero patterns on ``X``.

    Args:
        X: data ``(n, d)``; when it carries a bias column of ones last, pass
            ``bias_quantiles=True`` to set each gate's last entry so the hyperplane cuts
            the projected data ``X[:, :-1] g`` at a uniformly random quantile.
        n_gates: number of gates drawn (fewer come back after deduplication).
        seed: seed or generator.

    Returns:
        ``(P, d)`` gates, ``P <= n_gates``, same dtype and device as ``X``.
    """
    X = _check_X(X)
    check_int("n_gates", n_gates)
    gen = make_generator(seed)
    d = X.shape[1]
    gates = torch.randn(n_gates, d, generator=gen, dtype=torch.float64)
    gates = gates.to(device=X.device, dtype=X.dtype)
    if bias_quantiles:
        if d < 2:
            raise ValueError(f"bias_quantiles needs X with a bias column and d >= 2, got d={d}")
        proj = X[:, :-1] @ gates[:, :-1].T
        levels = torch.rand(n_gates, generator=gen, dtype=torch.float64).to(X.device, X.dtype)
        q = torch.quantile(proj, levels, dim=0).diagonal()
        gates[:, -1] = -q / X[:, -1].abs().clamp_min(1e-12).mean()
    return unique_patterns(X, gates)


def _arrangement_gates(Xr: torch.Tensor, tol: float) -> torch.Tensor:
    """One interior gate per cell of the central arrangement of the rows of ``Xr`` (n, r).

    Every cell of an essential arrangement in R^r has an extreme ray, the intersection of
    r - 1 hyperplanes; around the ray through ``h`` (null vector of r - 1 rows ``X_S``) the
    adjacent cells are reached by ``+-h + eps * e_s`` with ``X_S e_s = s`` for each sign
    vector ``s``, ``eps`` small enough to cross no other hyperplane.
    """
    n, r = Xr.shape
    if r == 1:
        return torch.tensor([[1.0], [-1.0]], dtype=Xr.dtype)
    n_sub = math.comb(n, r - 1)
    if n_sub > _MAX_SUBSETS:
        raise ValueError(
            f"exact enumeration needs C(n, rank-1) = {n_sub} subsets (limit {_MAX_SUBSETS}); "
            f"use sample_gates or zonotope_gates for n={n}, rank={r}"
        )
    subsets = torch.combinations(torch.arange(n), r - 1) if r > 2 else torch.arange(n)[:, None]
    A = Xr[subsets]  # (C, r-1, r)
    h = torch.linalg.svd(A).Vh[:, -1, :]  # (C, r)
    pinv = torch.linalg.pinv(A)  # (C, r, r-1)
    signs = torch.tensor(
        [[1.0 if (b >> i) & 1 else -1.0 for i in range(r - 1)] for b in range(2 ** (r - 1))],
        dtype=Xr.dtype,
    )
    E = pinv @ signs.T  # (C, r, 2^(r-1))
    t = (Xr @ h.T).abs()  # (n, C)
    scale = float(Xr.abs().max())
    t_min = torch.where(t > tol * scale, t, torch.inf).min(0).values  # (C,)
    t_min = torch.where(torch.isfinite(t_min), t_min, torch.ones_like(t_min))
    xe_max = torch.einsum("nr,crs->ncs", Xr, E).abs().amax(dim=(0, 2))  # (C,)
    eps = 0.5 * t_min / xe_max.clamp_min(torch.finfo(Xr.dtype).tiny)
    pert = eps[:, None, None] * E.transpose(1, 2)  # (C, 2^(r-1), r)
    gates = torch.cat([h[:, None, :] + pert, -h[:, None, :] + pert], dim=1)
    return gates.reshape(-1, r)


def enumerate_gates(X: torch.Tensor, tol: float = 1e-9) -> torch.Tensor:
    """Gates of every pattern of the hyperplane arrangement of ``X`` (low rank).

    Works in the row space of ``X`` (rank ``r`` from its singular values, relative
    ``tol``) and enumerates over the ``C(n, r - 1)`` subsets of rows, so it suits
    ``r <= 3`` or small ``n``. For ``X`` in general position the patterns are all
    ``diag(1[X g >= 0])`` with non-empty interior.

    Returns:
        ``(P, d)`` gates with distinct non-zero patterns.
    """
    X = _check_X(X)
    X64 = X.to(torch.float64).cpu()
    _, s, Vh = torch.linalg.svd(X64, full_matrices=False)
    r = int((s > tol * s[0]).sum()) if s.numel() and s[0] > 0 else 0
    if r == 0:
        raise ValueError("X must be non-zero to have activation patterns, got all zeros")
    Vr = Vh[:r].T  # (d, r)
    gates = _arrangement_gates(X64 @ Vr, tol) @ Vr.T
    return unique_patterns(X64, gates).to(device=X.device, dtype=X.dtype)


def zonotope_gates(
    X: torch.Tensor,
    rank: int = 2,
    n_draws: int = 4,
    seed: SeedLike = 0,
    tol: float = 1e-9,
) -> torch.Tensor:
    """Gates from exact arrangements of ``n_draws`` random Gaussian projections of ``X``.

    Each draw projects the data to ``X Q`` with ``Q`` ``(d, rank)`` Gaussian, enumerates
    that rank-``rank`` arrangement exactly and maps the gates back by ``g = Q g'``.
    """
    X = _check_X(X)
    if check_int("rank", rank) > X.shape[1]:
        raise ValueError(f"rank must be an int in [1, {X.shape[1]}], got {rank!r}")
    check_int("n_draws", n_draws)
    gen = make_generator(seed)
    X64 = X.to(torch.float64).cpu()
    gates = []
    for _ in range(n_draws):
        Q = torch.randn(X.shape[1], rank, generator=gen, dtype=torch.float64)
        gates.append(_arrangement_gates(X64 @ Q, tol) @ Q.T)
    return unique_patterns(X64, torch.cat(gates)).to(device=X.device, dtype=X.dtype)
