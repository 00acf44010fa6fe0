"""Gated-ReLU networks as multiple kernel learning (arXiv 2309.15096).

Patterns ``D_i = diag(1[X g_i >= 0])`` of gates ``g_i`` give the masked feature maps
``A_i = D_i X`` and the kernel ``K_eta = sum_i eta_i D_i X X^T D_i``. With
``||u|| = min_{eta > 0} ||u||^2 / (2 eta) + eta / 2`` the gated-ReLU group lasso

    min_u 1/(2n) ||sum_i A_i u_i - y||^2 + beta sum_i ||u_i||_2

is kernel ridge regression in ``K_eta`` jointly minimized over ``eta``: for fixed ``eta``,
``c = (K_eta + n beta I)^(-1) y`` and ``u_i = eta_i A_i^T c``; for fixed ``u``,
``eta_i = ||u_i||``. :func:`reweight` alternates the two (a majorize-minimize scheme whose
objective decreases to the group-lasso optimum). The NTK of the gated ReLU network is
``K_eta`` with ``eta_i`` the probability that a Gaussian gate gives pattern ``D_i``
(:func:`ntk_weights`). ``X`` is used as given: append a column of ones for a bias. For
``k`` outputs the groups are shared across outputs (``||u_i||`` is a Frobenius norm).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from mrsolve.solvers.convex_nn.patterns import gate_masks
from mrsolve.solvers.validation import (
    RenamedAttributes,
    SeedLike,
    check_finite,
    check_int,
    check_positive,
    make_generator,
)


def _check(X: torch.Tensor, gates: torch.Tensor) -> None:
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(X.shape)}")
    check_finite("X", X)
    if gates.ndim != 2 or gates.shape[1] != X.shape[1]:
        raise ValueError(f"gates must have shape (P, {X.shape[1]}), got {tuple(gates.shape)}")


def masked_kernel(
    X: torch.Tensor, gates: torch.Tensor, eta: torch.Tensor, Z: torch.Tensor | None = None
) -> torch.Tensor:
    """``K_eta(Z, X) = sum_i eta_i D_i(Z) Z X^T D_i(X)``: ``(m, n)`` (``Z = X`` by default).

    Args:
        X: ``(n, d)`` training data.
        gates: ``(P, d)``.
        eta: ``(P,)`` non-negative mask weights.
        Z: ``(m, d)`` points to evaluate at.
    """
    _check(X, gates)
    if eta.shape != (gates.shape[0],) or bool((eta < 0).any()):
        raise ValueError(f"eta must be >= 0 of shape ({gates.shape[0]},), got {tuple(eta.shape)}")
    Z = X if Z is None else Z
    DX = gate_masks(X, gates).to(X.dtype)
    DZ = DX if Z is X else gate_masks(Z, gates).to(X.dtype)
    return (Z @ X.T) * ((DZ * eta.to(X.dtype)) @ DX.T)


def ntk_weights(
    X: torch.Tensor, gates: torch.Tensor, n_samples: int = 20000, seed: SeedLike = 0
) -> torch.Tensor:
    """Monte Carlo probability that ``h ~ N(0, I)`` gives the pattern of each gate on ``X``.

    Returns ``(P,)`` weights (they sum to at most 1: patterns of ``X`` missing from
    ``gates`` carry the rest of the mass).
    """
    _check(X, gates)
    check_int("n_samples", n_samples)
    gen = make_generator(seed)
    h = torch.randn(n_samples, X.shape[1], generator=gen, dtype=torch.float64).to(X)
    pats = torch.cat([gate_masks(X, gates).T, gate_masks(X, h).T])  # (P + S, n)
    _, inverse = torch.unique(pats, dim=0, return_inverse=True)
    counts = torch.bincount(inverse[gates.shape[0] :], minlength=int(inverse.max()) + 1)
    return counts[inverse[: gates.shape[0]]].to(X.dtype) / n_samples


def ntk_gates(
    X: torch.Tensor, n_samples: int = 1000, seed: SeedLike = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo NTK: ``n_samples`` Gaussian gates, one per distinct non-zero pattern,
    with ``eta`` the fraction of draws giving it, so ``K_eta ~ E_h[D_h X X^T D_h]``.

    In more than a few dimensions every pattern of :func:`ntk_weights` has a tiny
    probability and is rarely hit again; this estimator weights the drawn patterns instead.

    Returns:
        gates ``(P, d)`` and ``eta`` ``(P,)``.
    """
    if X.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(X.shape)}")
    check_int("n_samples", n_samples)
    gen = make_generator(seed)
    h = torch.randn(n_samples, X.shape[1], generator=gen, dtype=torch.float64).to(X)
    masks = gate_masks(X, h).T  # (S, n)
    _, inverse, counts = torch.unique(masks, dim=0, return_inverse=True, return_counts=True)
    first = torch.full((counts.shape[0],), n_samples, dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(n_samples), reduce="amin")
    keep = masks[first].any(1)
    return h[first[keep]], counts[keep].to(X.dtype) / n_samples


def kernel_ridge(K: torch.Tensor, y: torch.Tensor, beta: float) -> torch.Tensor:
    """Dual coefficients ``(K + n beta I)^(-1) y`` of the ``eta``-weighted ridge."""
    n = K.shape[0]
    A = K + n * beta * torch.eye(n, dtype=K.dtype, device=K.device)
    return torch.linalg.solve(A, y)


@dataclass(frozen=True)
class MKLResult(RenamedAttributes):
    """Output of :func:`reweight`: final ``eta`` ``(P,)``, dual coefficients ``dual_coef``
    (the old name ``alpha`` is deprecated),
    group weights ``u`` ``(P, d, k)``, the group-lasso objective per iteration
    (``objectives``; the old name ``objective`` is deprecated), iterations, convergence."""

    _renamed: ClassVar[dict[str, str]] = {"objective": "objectives", "alpha": "dual_coef"}

    eta: torch.Tensor
    dual_coef: torch.Tensor
    u: torch.Tensor
    objectives: list[float] = field(default_factory=list)
    converged: bool = False
    n_iter: int = 0


def group_lasso_objective(
    X: torch.Tensor, gates: torch.Tensor, u: torch.Tensor, y: torch.Tensor, beta: float
) -> float:
    """``1/(2n) ||sum_i D_i X u_i - y||^2 + beta sum_i ||u_i||`` for ``u`` ``(P, d, k)``."""
    D = gate_masks(X, gates).to(X.dtype)
    pred = torch.einsum("np,nd,pdk->nk", D, X, u)
    y2 = y[:, None] if y.ndim == 1 else y
    fit = 0.5 * float(((pred - y2) ** 2).sum()) / X.shape[0]
    return fit + beta * float(torch.linalg.vector_norm(u, dim=(1, 2)).sum())


def reweight(
    X: torch.Tensor,
    y: torch.Tensor,
    gates: torch.Tensor,
    beta: float,
    eta0: torch.Tensor | None = None,
    max_iter: int = 200,
    tol: float = 1e-9,
    seed: SeedLike = 0,
) -> MKLResult:
    """Iteratively reweighted kernel ridge: ``c = (K_eta + n beta I)^(-1) y``,
    ``u_i = eta_i (D_i X)^T c``, ``eta_i = ||u_i||``; from ``eta0`` (NTK weights by
    default). Stops when the objective decreases by less than ``tol`` relative."""
    _check(X, gates)
    beta = check_positive("beta", beta)
    y2 = y[:, None] if y.ndim == 1 else y
    if y2.shape[0] != X.shape[0]:
        raise ValueError(f"y must have {X.shape[0]} rows, got shape {tuple(y.shape)}")
    eta = ntk_weights(X, gates, seed=seed) if eta0 is None else eta0.to(X.dtype)
    D = gate_masks(X, gates).to(X.dtype)
    coef, u, used_eta = y2, torch.zeros(0), eta
    objectives: list[float] = []
    converged = False
    for _ in range(max_iter):
        coef = kernel_ridge(masked_kernel(X, gates, eta), y2.to(X.dtype), beta)
        u = eta[:, None, None] * torch.einsum("np,nd,nk->pdk", D, X, coef)
        used_eta = eta
        objectives.append(group_lasso_objective(X, gates, u, y2, beta))
        eta = torch.linalg.vector_norm(u, dim=(1, 2))
        if len(objectives) > 1 and objectives[-2] - objectives[-1] <= tol * abs(objectives[-1]):
            converged = True
            break
    return MKLResult(
        eta=used_eta,
        dual_coef=coef,
        u=u,
        objectives=objectives,
        converged=converged,
        n_iter=len(objectives),
    )


def kernel_predict(
    X: torch.Tensor,
    gates: torch.Tensor,
    eta: torch.Tensor,
    dual_coef: torch.Tensor,
    Z: torch.Tensor,
) -> torch.Tensor:
    """Kernel predictions ``K_eta(Z, X) dual_coef`` at new points ``Z`` ``(m, d)``."""
    return masked_kernel(X, gates, eta, Z) @ dual_coef
