"""The non-convex two-layer network behind a convex solution, as a ``torch.nn.Module``.

``f(x) = sum_j a_j sigma(w_j^T x + b_j)`` with ``sigma(t) = max(t, kappa t)`` (ReLU family)
or, for gated ReLU, ``1[[x, 1]^T g_j >= 0] (w_j^T x + b_j)`` with fixed gates ``g_j``.
Weight-decay objective: ``datafit(f(X)) + beta/2 (||W||^2 + ||b||^2 + ||A||^2)`` (the bias is
decayed too, matching the convex program where it is one more input column).
"""

from __future__ import annotations

import torch
from torch import nn

from mrsolve.solvers.datafit import Datafit
from mrsolve.solvers.validation import SeedLike, make_generator


class TwoLayerNet(nn.Module):
    """Two-layer network with weights ``W`` ``(m, d)``, bias ``b`` ``(m,)`` or None and
    output weights ``A`` ``(k, m)``; ``kappa`` is the negative slope (0 ReLU, -1 absolute
    value) and ``gates`` ``(m, d [+ 1])`` makes it a gated ReLU network."""

    def __init__(
        self,
        W: torch.Tensor,
        b: torch.Tensor | None,
        A: torch.Tensor,
        kappa: float = 0.0,
        gates: torch.Tensor | None = None,
    ) -> None:
        super().__init__()
        self.W = nn.Parameter(W.clone())
        self.b = None if b is None else nn.Parameter(b.clone())
        self.A = nn.Parameter(A.clone())
        self.kappa = float(kappa)
        self.register_buffer("gates", None if gates is None else gates.clone())

    @classmethod
    def random(
        cls,
        d: int,
        width: int,
        n_outputs: int = 1,
        kappa: float = 0.0,
        bias: bool = True,
        seed: SeedLike = 0,
        dtype: torch.dtype = torch.float64,
        scale: float = 1.0,
    ) -> TwoLayerNet:
        """He-style random initialization (the starting point of non-convex training)."""
        g = make_generator(seed)
        W = torch.randn(width, d, generator=g, dtype=dtype) * scale * (2 / d) ** 0.5
        b = torch.randn(width, generator=g, dtype=dtype) * 0.1 * scale if bias else None
        A = torch.randn(n_outputs, width, generator=g, dtype=dtype) * scale / width**0.5
        return cls(W, b, A, kappa)

    def hidden(self, x: torch.Tensor) -> torch.Tensor:
        """Hidden activations ``(n, m)``."""
        pre = x @ self.W.T + (0 if self.b is None else self.b)
        if self.gates is None:
            return torch.maximum(pre, self.kappa * pre)
        xa = torch.cat([x, torch.ones_like(x[:, :1])], 1) if self.b is not None else x
        return pre * (xa @ self.gates.T >= 0).to(pre.dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Predictions ``(n, k)``."""
        return self.hidden(x) @ self.A.T

    def weight_decay(self) -> torch.Tensor:
        """``1/2 (||W||^2 + ||b||^2 + ||A||^2)``."""
        total = (self.W**2).sum() + (self.A**2).sum()
        if self.b is not None:
            total = total + (self.b**2).sum()
        return total / 2


def network_objective(
    net: TwoLayerNet, X: torch.Tensor, datafit: Datafit, beta: float
) -> torch.Tensor:
    """``datafit(net(X)) + beta * weight_decay`` (differentiable)."""
    return datafit.value(net(X)) + beta * net.weight_decay()


def network_from_groups(
    u: torch.Tensor, kappa: float | None, bias: bool, gates: torch.Tensor | None = None
) -> TwoLayerNet:
    """Neurons from the non-zero groups: ``w = u / sqrt(||u||)``, ``a = +-sqrt(||u||) e_c``.

    Args:
        u: ``(k, P, d)`` (gated ReLU, with ``gates`` ``(P, d)``) or ``(2, k, P, d)``.
        kappa: negative slope, None for gated ReLU.
        bias: whether the last input column of ``u`` is the bias.
    """
    gated = kappa is None
    uu = u[None] if gated else u
    signs = torch.tensor([1.0, -1.0], dtype=u.dtype, device=u.device)[: uu.shape[0]]
    norms = torch.linalg.vector_norm(uu, dim=-1)  # (J, k, P)
    keep = torch.nonzero(norms > 0)
    j, c, p = keep.T
    root = norms[j, c, p].sqrt()
    Wfull = uu[j, c, p] / root[:, None]
    A = torch.zeros(uu.shape[1], keep.shape[0], dtype=u.dtype, device=u.device)
    A[c, torch.arange(keep.shape[0])] = signs[j] * root
    W, b = (Wfull[:, :-1], Wfull[:, -1]) if bias else (Wfull, None)
    return TwoLayerNet(W, b, A, 0.0 if gated else kappa, gates[p] if gated else None)
