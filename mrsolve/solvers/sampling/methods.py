"""The per-agent update rules of D-ADMMS, consensus ADMM, D-SGLD, D-SGHMC and D-ULA.

An iteration is a sequence of *phases*. Before each phase every agent receives the
weighted sum of its neighbours' current iterates, s_i = sum_{j in N(i)} w_ij x_j, and
then updates its own state using only that sum, its local target and its own random
generator. The single-process runner computes s for all agents with one matrix product;
the distributed runtime computes it from the iterates neighbours send. Both call the
same phase functions, and every agent draws its noise from its own generator seeded
from (seed, agent), so both give the same chains.

Methods (x_i the agent's sample, rho the ADMM penalty, d_i its degree):

- ``dadmms``: zeta_i ~ N(0, I / (2 rho^2));
  x_i <- argmin f_i(x) + p_i^T x + rho sum_j ||x - (x_i + x_j)/2 + zeta_i||^2;
  then p_i <- p_i + rho sum_j (x_i - x_j).
- ``admm``: the same with zeta = 0 (consensus ADMM; converges to the MAP).
- ``dsgld``: x_i <- sum_j W_ij x_j - eta grad f_i(x_i) + sqrt(2 eta) xi (Metropolis W).
- ``dsghmc``: v_i <- v_i - eta (gamma v_i + grad f_i(x_i)) + sqrt(2 gamma eta) xi;
  x_i <- sum_j W_ij x_j + eta v_i.
- ``dula``: x_i <- x_i - beta_k sum_j (x_i - x_j) - alpha_k N grad f_i(x_i)
  + sqrt(2 alpha_k N) xi, alpha_k = alpha0 / (b + k)^delta_alpha, beta_k = beta0 / (b + k)^delta_beta.

Defaults of the Langevin baselines are the step sizes the authors of arXiv:2401.15838 use
for their Bayesian linear regression comparison.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mrsolve.solvers.sampling.targets import Target
from mrsolve.solvers.validation import check_choice, check_positive, deprecated_names, seed_to_int

METHODS = ("dadmms", "admm", "dsgld", "dsghmc", "dula")
State = dict[str, torch.Tensor]


class NonFiniteError(ValueError):
    """A sampler produced NaN or infinity (a non-finite gradient, or a step size too large)."""


def agent_generator(seed: int, agent: int) -> torch.Generator:
    """The random generator of one agent: independent streams for (seed, agent) pairs."""
    state = np.random.SeedSequence(entropy=seed, spawn_key=(agent,)).generate_state(2)
    gen = torch.Generator()
    gen.manual_seed(int(state[0]) << 31 ^ int(state[1]))
    return gen


@dataclass
class AgentBlock:
    """What a block of agents knows: their local target, degrees, Metropolis self-weights,
    their ids, the total number of agents and one generator per agent."""

    target: Target
    agents: tuple[int, ...]
    degree: torch.Tensor
    self_weight: torch.Tensor
    n_total: int
    generators: list[torch.Generator] = field(repr=False)

    def normal(self, n_chains: int) -> torch.Tensor:
        """Standard normal noise (n_agents, n_chains, dim), each agent from its own generator."""
        t = self.target
        draws = [torch.randn(n_chains, t.dim, generator=g, dtype=t.dtype) for g in self.generators]
        return torch.stack(draws).to(t.device)

    def check_finite(self, what: str, x: torch.Tensor, iteration: int) -> None:
        bad = ~torch.isfinite(x).reshape(x.shape[0], -1).all(1)
        if bool(bad.any()):
            agents = [self.agents[i] for i in torch.nonzero(bad).flatten().tolist()]
            raise NonFiniteError(
                f"{what} is non-finite at iteration {iteration} on agent(s) {agents[:10]}; "
                "check the target's gradient or lower the step size"
            )


Phase = Callable[[int, AgentBlock, State, torch.Tensor], State]


@dataclass(frozen=True)
class ULASchedule:
    """Decaying D-ULA steps alpha_k = alpha0 / (offset + k)^alpha_decay (gradient) and
    beta_k = beta0 / (offset + k)^beta_decay (consensus)."""

    alpha0: float = 0.00082
    beta0: float = 0.48
    offset: float = 230.0
    alpha_decay: float = 0.05
    beta_decay: float = 0.05

    def alpha(self, k: int) -> float:
        return self.alpha0 / (self.offset + k) ** self.alpha_decay

    def beta(self, k: int) -> float:
        return self.beta0 / (self.offset + k) ** self.beta_decay


@dataclass(frozen=True)
class Sampler:
    """One method: which neighbour weighting it uses, how it initializes, its phases."""

    name: str
    weighting: str
    phases: tuple[Phase, ...]
    init: Callable[[AgentBlock, torch.Tensor], State]


def _init_x(block: AgentBlock, x0: torch.Tensor) -> State:
    return {"x": x0}


def _admm(rho: float, noisy: bool) -> tuple[Phase, ...]:
    def primal(k: int, block: AgentBlock, state: State, nbr_sum: torch.Tensor) -> State:
        x, p = state["x"], state["p"]
        deg = block.degree[:, None, None]
        # rho sum_j ||x - (x_i + x_j)/2 + zeta||^2 = (tau/2) ||x - v||^2 + const with
        # tau = 2 rho d_i and v = (x_i + mean_j x_j)/2 - zeta.
        v = 0.5 * (x + nbr_sum / deg.clamp(min=1.0))
        if noisy:
            v = v - block.normal(x.shape[1]) / (math.sqrt(2.0) * rho)
        x_new = block.target.prox(v, p, 2.0 * rho * block.degree, x)
        block.check_finite("the proximal step", x_new, k + 1)
        return {"x": x_new, "p": p}

    def dual(k: int, block: AgentBlock, state: State, nbr_sum: torch.Tensor) -> State:
        x = state["x"]
        return {"x": x, "p": state["p"] + rho * (block.degree[:, None, None] * x - nbr_sum)}

    return primal, dual


def _grad(k: int, block: AgentBlock, x: torch.Tensor) -> torch.Tensor:
    g = block.target.grad(x)
    block.check_finite("the gradient of the target", g, k + 1)
    return g


def _sgld(eta: float) -> Phase:
    def step(k: int, block: AgentBlock, state: State, nbr_sum: torch.Tensor) -> State:
        x = state["x"]
        g = _grad(k, block, x)
        noise = block.normal(x.shape[1])
        mixed = block.self_weight[:, None, None] * x + nbr_sum
        return {"x": mixed - eta * g + math.sqrt(2.0 * eta) * noise}

    return step


def _sghmc(eta: float, friction: float) -> Phase:
    def step(k: int, block: AgentBlock, state: State, nbr_sum: torch.Tensor) -> State:
        x, v = state["x"], state["v"]
        g = _grad(k, block, x)
        noise = block.normal(x.shape[1])
        v = v - eta * (friction * v + g) + math.sqrt(2.0 * friction * eta) * noise
        mixed = block.self_weight[:, None, None] * x + nbr_sum
        return {"x": mixed + eta * v, "v": v}

    return step


def _ula(schedule: ULASchedule) -> Phase:
    def step(k: int, block: AgentBlock, state: State, nbr_sum: torch.Tensor) -> State:
        x = state["x"]
        g = _grad(k, block, x)
        noise = block.normal(x.shape[1])
        a, b = schedule.alpha(k) * block.n_total, schedule.beta(k)
        disagreement = block.degree[:, None, None] * x - nbr_sum
        return {"x": x - b * disagreement - a * g + math.sqrt(2.0 * a) * noise}

    return step


def make_sampler(
    method: str,
    *,
    rho: float = 5.0,
    step_size: float | None = None,
    friction: float = 7.0,
    schedule: ULASchedule | None = None,
) -> Sampler:
    """Build a method by name (see the module docstring for the updates).

    Args:
        method: one of ``METHODS``.
        rho: ADMM penalty (dadmms, admm).
        step_size: eta of dsgld (default 0.009) and dsghmc (default 0.1).
        friction: gamma of dsghmc.
        schedule: step sizes of dula (default ``ULASchedule()``).
    """
    check_choice("method", method, METHODS)
    if method in ("dadmms", "admm"):
        rho = check_positive("rho", rho)
        return Sampler(method, "adjacency", _admm(rho, method == "dadmms"), _init_admm)
    if method == "dsgld":
        eta = check_positive("step_size", 0.009 if step_size is None else step_size)
        return Sampler(method, "metropolis", (_sgld(eta),), _init_x)
    if method == "dsghmc":
        eta = check_positive("step_size", 0.1 if step_size is None else step_size)
        gamma = check_positive("friction", friction)
        return Sampler(method, "metropolis", (_sghmc(eta, gamma),), _init_sghmc)
    schedule = ULASchedule() if schedule is None else schedule
    if not isinstance(schedule, ULASchedule):
        raise TypeError(f"schedule must be a ULASchedule, got {type(schedule)}")
    return Sampler(method, "adjacency", (_ula(schedule),), _init_x)


def _init_admm(block: AgentBlock, x0: torch.Tensor) -> State:
    return {"x": x0, "p": torch.zeros_like(x0)}


def _init_sghmc(block: AgentBlock, x0: torch.Tensor) -> State:
    return {"x": x0, "v": block.normal(x0.shape[1])}


def initial_samples(
    block: AgentBlock, n_chains: int, x0: torch.Tensor | np.ndarray | None
) -> torch.Tensor:
    """Starting points (n_agents, n_chains, dim): N(0, I) draws from the agents' generators,
    or ``x0`` of shape (dim,), (n_chains, dim) or (n_total_agents, n_chains, dim)."""
    t = block.target
    if x0 is None:
        return block.normal(n_chains)
    x0 = torch.as_tensor(x0).to(dtype=t.dtype, device=t.device)
    shapes = [(t.dim,), (n_chains, t.dim), (block.n_total, n_chains, t.dim)]
    if tuple(x0.shape) not in shapes:
        raise ValueError(f"x0 must have one of the shapes {shapes}, got {tuple(x0.shape)}")
    if x0.ndim == 3:
        x0 = x0[list(block.agents)]
    return x0.expand(len(block.agents), n_chains, t.dim).clone()


def agent_block(
    target: Target,
    agents: Sequence[int],
    degree: Sequence[float],
    self_weight: Sequence[float],
    n_total: int,
    seed: int,
) -> AgentBlock:
    """An AgentBlock for ``agents`` of a target already restricted to them."""

    def as_tensor(values: Sequence[float]) -> torch.Tensor:
        array = np.asarray(values, dtype=float)
        return torch.as_tensor(array, dtype=target.dtype).to(target.device)

    return AgentBlock(
        target=target,
        agents=tuple(int(a) for a in agents),
        degree=as_tensor(degree),
        self_weight=as_tensor(self_weight),
        n_total=n_total,
        generators=[agent_generator(seed, int(a)) for a in agents],
    )


__getattr__ = deprecated_names(__name__, {"resolve_seed": seed_to_int})
