"""Penalties as objects (the skglm convention): value, prox and the dual norm.

A solver asks a penalty for ``value(x)``, ``prox(x, step)`` and, for certificates,
``dual_norm(g)`` (the smallest ``c`` with ``g / c`` in the subdifferential at 0 times
``alpha``): ``x = 0`` is optimal for ``f + penalty`` iff ``dual_norm(grad f(0)) <= 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from mrsolve.solvers.prox import group_soft_threshold, project_box, soft_threshold
from mrsolve.solvers.validation import check_positive


class L1:
    """``alpha * ||x||_1``."""

    def __init__(self, alpha: float) -> None:
        self.alpha = check_positive("alpha", alpha, allow_zero=True)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * x.abs().sum()

    def prox(self, x: torch.Tensor, step: float) -> torch.Tensor:
        return soft_threshold(x, self.alpha * step)

    def dual_norm(self, g: torch.Tensor) -> torch.Tensor:
        """``||g||_inf / alpha``."""
        return g.abs().max() / self.alpha


class GroupL1:
    """``alpha * sum_g ||x_g||_2`` with groups the slices of ``x`` over ``dim``.

    With ``x`` of shape ``(..., p, d)`` and ``dim=-1`` each length-``d`` row is a group.
    """

    def __init__(self, alpha: float, dim: int | Sequence[int] = -1) -> None:
        self.alpha = check_positive("alpha", alpha, allow_zero=True)
        self.dim = dim

    def group_norms(self, x: torch.Tensor) -> torch.Tensor:
        """``||x_g||_2`` for every group (the shape of ``x`` without ``dim``)."""
        return torch.linalg.vector_norm(x, dim=self.dim)

    def value(self, x: torch.Tensor) -> torch.Tensor:
        return self.alpha * self.group_norms(x).sum()

    def prox(self, x: torch.Tensor, step: float) -> torch.Tensor:
        return group_soft_threshold(x, self.alpha * step, self.dim)

    def dual_norm(self, g: torch.Tensor) -> torch.Tensor:
        """``max_g ||g_g||_2 / alpha``."""
        return self.group_norms(g).max() / self.alpha


class Box:
    """Indicator of ``{lower <= x <= upper}`` (non-negativity: ``Box(0.0)``)."""

    def __init__(
        self, lower: float | torch.Tensor = 0.0, upper: float | torch.Tensor = float("inf")
    ) -> None:
        self.lower, self.upper = lower, upper

    def value(self, x: torch.Tensor) -> torch.Tensor:
        inside = bool(((x >= self.lower) & (x <= self.upper)).all())
        return torch.zeros((), dtype=x.dtype) if inside else torch.tensor(float("inf"))

    def prox(self, x: torch.Tensor, step: float) -> torch.Tensor:
        return project_box(x, self.lower, self.upper)
