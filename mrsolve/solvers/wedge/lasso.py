"""Lasso with an unpenalized intercept and its regularization path, by FISTA.

``min_{W, c} ||Y - Phi W - 1 c^T||_F^2 / (2n) + beta ||W||_1`` for ``Phi`` ``(n, p)`` and
``Y`` ``(n, k)`` (the columns are independent lassos sharing the dictionary). The
intercept is eliminated by centering; the path runs from ``beta_max = max |Phi_c^T Y_c| / n``
(where ``W = 0``) down, warm-started.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrsolve.solvers.alg import fista
from mrsolve.solvers.prox import soft_threshold


@dataclass
class LassoFit:
    """``coef`` ``(p, k)``, ``intercept`` ``(k,)``, ``beta``, FISTA ``n_iter``."""

    coef: torch.Tensor
    intercept: torch.Tensor
    beta: float
    n_iter: int


def _center(Phi: torch.Tensor, Y: torch.Tensor):
    mu_phi, mu_y = Phi.mean(0), Y.mean(0)
    return Phi - mu_phi, Y - mu_y, mu_phi, mu_y


def beta_max(Phi: torch.Tensor, Y: torch.Tensor) -> float:
    """Smallest ``beta`` with the all-zero solution: ``max |Phi_c^T Y_c| / n``."""
    Pc, Yc, _, _ = _center(Phi, Y)
    return float((Pc.T @ Yc).abs().max()) / Phi.shape[0] if Phi.shape[1] else 0.0


def lasso(
    Phi: torch.Tensor,
    Y: torch.Tensor,
    beta: float,
    init: torch.Tensor | None = None,
    max_iter: int = 5000,
    tol: float = 1e-9,
) -> LassoFit:
    """One lasso solve (see the module docstring); ``Y`` ``(n, k)``."""
    n = Phi.shape[0]
    Pc, Yc, mu_phi, mu_y = _center(Phi, Y)
    W0 = torch.zeros(Phi.shape[1], Y.shape[1], dtype=Phi.dtype, device=Phi.device)
    W0 = W0 if init is None else init.clone()
    n_iter = 0
    if Phi.shape[1]:
        lip = float(torch.linalg.matrix_norm(Pc, ord=2)) ** 2 / n
        last: dict[str, torch.Tensor] = {}

        def residual(W):
            if last.get("W") is not W:
                last["W"], last["r"] = W, Pc @ W - Yc
            return last["r"]

        W0, info = fista(
            lambda W: (residual(W) ** 2).sum() / (2 * n),
            lambda W: Pc.T @ residual(W) / n,
            lambda V, t: soft_threshold(V, beta * t),
            W0,
            step=1.0 / max(lip, 1e-30),
            max_iter=max_iter,
            tol=tol,
        )
        n_iter = info.n_iter
    return LassoFit(W0, mu_y - mu_phi @ W0, float(beta), n_iter)


def lasso_path(
    Phi: torch.Tensor,
    Y: torch.Tensor,
    betas: torch.Tensor | list[float] | None = None,
    n_betas: int = 20,
    eps: float = 1e-3,
    **kwargs,
) -> list[LassoFit]:
    """Solutions for ``betas`` (default ``n_betas`` log-spaced from ``beta_max`` to
    ``eps * beta_max``), largest first, each warm-started at the previous one."""
    if betas is None:
        top = max(beta_max(Phi, Y), 1e-12)
        betas = top * torch.logspace(0, math.log10(eps), n_betas, dtype=torch.float64)
    betas = sorted((float(b) for b in betas), reverse=True)
    if not betas or betas[-1] < 0:
        raise ValueError(f"betas must be a non-empty list of values >= 0, got {betas!r}")
    fits: list[LassoFit] = []
    for b in betas:
        fits.append(lasso(Phi, Y, b, init=fits[-1].coef if fits else None, **kwargs))
    return fits
