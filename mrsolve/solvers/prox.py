"""Proximal maps and projections on torch tensors.

``prox_{t h}(x) = argmin_z h(z) + ||z - x||^2 / (2 t)``. Every map works on any shape,
dtype (real or complex where it makes sense) and device; thresholds are a scalar or a
tensor that broadcasts against the input.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

Threshold = float | torch.Tensor


def soft_threshold(x: torch.Tensor, t: Threshold) -> torch.Tensor:
    """Prox of ``t * ||x||_1``: shrink every entry towards 0 by ``t`` (complex: the modulus)."""
    if x.is_complex():
        mag = x.abs()
        return x * (mag - t).clamp_min(0) / mag.clamp_min(torch.finfo(mag.dtype).tiny)
    return x.sign() * (x.abs() - t).clamp_min(0)


def group_soft_threshold(
    x: torch.Tensor, t: Threshold, dim: int | Sequence[int] = -1
) -> torch.Tensor:
    """Prox of ``t * sum_g ||x_g||_2`` where a group ``g`` is a slice over ``dim``.

    With ``x`` of shape ``(..., p, d)`` and ``dim=-1`` every length-``d`` row is a group:
    ``x_g * max(0, 1 - t / ||x_g||)``. ``t`` broadcasts against the group norms
    (the shape of ``x`` with ``dim`` kept as size 1), so groups may carry weights.
    """
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    scale = (1 - t / norm.clamp_min(torch.finfo(norm.dtype).tiny)).clamp_min(0)
    return x * scale


def project_nonneg(x: torch.Tensor) -> torch.Tensor:
    """Projection onto the non-negative orthant (prox of its indicator)."""
    return x.clamp_min(0)


def project_box(
    x: torch.Tensor, lower: Threshold = -float("inf"), upper: Threshold = float("inf")
) -> torch.Tensor:
    """Projection onto ``{lower <= x <= upper}`` (element-wise bounds broadcast against x)."""
    lo = torch.as_tensor(lower, dtype=x.dtype, device=x.device)
    hi = torch.as_tensor(upper, dtype=x.dtype, device=x.device)
    if bool((lo > hi).any()):
        raise ValueError("lower must be <= upper everywhere, got lower > upper somewhere")
    return torch.minimum(torch.maximum(x, lo), hi)


def project_l2_ball(
    x: torch.Tensor, radius: Threshold = 1.0, dim: int | Sequence[int] = -1
) -> torch.Tensor:
    """Projection of every group (slice over ``dim``) onto the l2 ball of ``radius``.

    This is the dual of :func:`group_soft_threshold` (Moreau: ``x = prox(x) + proj(x)``).
    """
    norm = torch.linalg.vector_norm(x, dim=dim, keepdim=True)
    return x * torch.clamp(radius / norm.clamp_min(torch.finfo(norm.dtype).tiny), max=1.0)
