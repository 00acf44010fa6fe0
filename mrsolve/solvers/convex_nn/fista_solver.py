"""FISTA for the unconstrained (gated ReLU) programs: returns ``(u, info, None)``."""

from __future__ import annotations

from collections.abc import Callable

import torch

from mrsolve.solvers.alg import FistaInfo, fista, power_iteration
from mrsolve.solvers.convex_nn.problem import ConvexProgram
from mrsolve.solvers.prox import group_soft_threshold


def solve_fista(
    p: ConvexProgram,
    u0: torch.Tensor | None = None,
    max_iter: int = 10000,
    tol: float = 1e-7,
    callback: Callable | None = None,
) -> tuple[torch.Tensor, FistaInfo, None]:
    """Restarted FISTA with backtracking on the group lasso (programs without cones)."""
    if p.constrained:
        raise ValueError("solver 'fista' handles activation='gated_relu' only; use 'admm'")
    last: dict[str, torch.Tensor] = {}

    def eta(u):
        # f and grad are evaluated at the same point: share the forward pass
        if last.get("u") is not u:
            last["u"], last["eta"] = u, p.forward(u)
        return last["eta"]

    def f(u):
        return p.datafit.value(eta(u))

    def grad(u):
        return p.adjoint(p.datafit.grad(eta(u)))

    gen = torch.Generator().manual_seed(0)
    start = torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.X.device, p.X.dtype)
    lip = p.datafit.lipschitz * power_iteration(
        lambda v: p.adjoint(p.forward(v)), start, max_iter=30, tol=1e-3
    )
    u, info = fista(
        f,
        grad,
        lambda v, t: group_soft_threshold(v, p.beta * t),
        p.zeros() if u0 is None else u0,
        step=1.0 / max(lip, 1e-30),
        max_iter=max_iter,
        tol=tol,
        callback=callback,
    )
    return u, info, None
