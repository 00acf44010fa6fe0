"""Single-machine reference sampler (MALA) for targets without a closed-form posterior."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrsolve.solvers.sampling.targets import Target
from mrsolve.solvers.validation import SeedLike, check_positive, make_generator


@dataclass(frozen=True)
class MALAResult:
    """samples (n_keep, n_chains, dim) after burn-in and thinning; acceptance rate in [0, 1]."""

    samples: torch.Tensor
    acceptance: float


def _potential(target: Target, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """U(x) = sum_i f_i(x) and its gradient for x (C, d)."""
    xs = x.unsqueeze(0).expand(target.n_agents, -1, -1)
    return target.neg_log_density(xs).sum(0), target.grad(xs).sum(0)


def mala(
    target: Target,
    n_chains: int,
    n_iter: int,
    step_size: float,
    seed: SeedLike = 0,
    *,
    burn_in: int | None = None,
    thin: int = 1,
    x0: torch.Tensor | None = None,
) -> MALAResult:
    """Metropolis-adjusted Langevin on the full target exp(-sum_i f_i), vectorized over chains.

    Unbiased for any step size (the Metropolis test corrects the discretization); aim for
    an acceptance rate around 0.6. Starts from x0 (C, d) or from N(0, I) draws.
    """
    h = check_positive("step_size", step_size)
    if burn_in is None:
        burn_in = n_iter // 2
    if not 0 <= burn_in < n_iter or thin < 1:
        raise ValueError(
            f"need 0 <= burn_in < n_iter and thin >= 1, got {burn_in}, {n_iter}, {thin}"
        )
    gen = make_generator(seed)
    shape, kw = (n_chains, target.dim), {"dtype": target.dtype}
    x = torch.randn(shape, generator=gen, **kw) if x0 is None else torch.as_tensor(x0, **kw)
    x = x.to(target.device)
    u, g = _potential(target, x)
    kept, accepted = [], 0.0

    def log_q(to: torch.Tensor, frm: torch.Tensor, g_frm: torch.Tensor) -> torch.Tensor:
        return -((to - frm + h * g_frm) ** 2).sum(-1) / (4 * h)

    for k in range(n_iter):
        prop = x - h * g + math.sqrt(2 * h) * torch.randn(shape, generator=gen, **kw).to(x.device)
        u_p, g_p = _potential(target, prop)
        log_a = u - u_p + log_q(x, prop, g_p) - log_q(prop, x, g)
        uniform = torch.rand(n_chains, generator=gen, **kw).to(x.device)
        acc = torch.log(uniform) < log_a
        x = torch.where(acc[:, None], prop, x)
        u, g = torch.where(acc, u_p, u), torch.where(acc[:, None], g_p, g)
        if k >= burn_in:
            accepted += float(acc.to(torch.float64).mean())
            if (k - burn_in) % thin == 0:
                kept.append(x.clone())
    return MALAResult(torch.stack(kept), accepted / (n_iter - burn_in))
