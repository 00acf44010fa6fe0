"""Distributed sampler runtime: one agent per process, each holding only its own data.

Every agent owns its local target, its state (sample, dual or momentum) and its random
generator seeded from (seed, agent). An iteration is one or two *phases* (see
``mrsolve.solvers.sampling.methods``); before each phase an agent receives its
neighbours' current iterates, forms the weighted neighbour sum and updates itself. The
phase code and the noise streams are those of the vectorized runner, so for the same
seed both give the same chains (up to floating-point rounding of the neighbour sums).

Engines:
- ``"local"`` (default): the agents are plain objects in this process (the in-process
  executor; no Ray needed).
- ``"ray"``: each agent is a Ray actor. Iterates travel between actors through Ray's
  object store as ObjectRefs (the driver never gathers them unless a callback asks for
  them), so the same code runs on one machine or a cluster (``ray.init(address=...)``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import torch

from mrsolve.solvers.sampling.graphs import graph_structure
from mrsolve.solvers.sampling.methods import (
    ULASchedule,
    agent_block,
    initial_samples,
    make_sampler,
)
from mrsolve.solvers.sampling.targets import Target
from mrsolve.solvers.sampling.vectorized import Callback, check_counts
from mrsolve.solvers.validation import check_choice, seed_to_int

LocalTarget = Target | Callable[[], Target]
ENGINES = ("local", "ray")


class SamplerAgent:
    """One agent: its local target (n_agents = 1), neighbour weights and sampler state.

    Args:
        agent: this agent's index.
        local_target: a Target with one agent, or a zero-argument callable that builds it
            (so the data can be loaded where the agent runs).
        neighbour_weights: (neighbour index, weight) pairs, in the order of ``phase`` args.
        degree: number of neighbours; self_weight: Metropolis W_ii.
        n_total: number of agents; seed: the run's seed; n_chains: chains per agent.
        sampler_kwargs: method and its parameters for ``make_sampler``.
        x0: optional starting points as accepted by ``initial_samples``.
    """

    def __init__(
        self,
        agent: int,
        local_target: LocalTarget,
        neighbour_weights: Sequence[tuple[int, float]],
        degree: float,
        self_weight: float,
        n_total: int,
        seed: int,
        n_chains: int,
        sampler_kwargs: dict[str, Any],
        x0: torch.Tensor | np.ndarray | None = None,
    ) -> None:
        target = local_target() if callable(local_target) else local_target
        if not isinstance(target, Target) or target.n_agents != 1:
            raise ValueError(
                f"agent {agent} needs a Target with exactly one agent, got {type(target)}"
                f" with {getattr(target, 'n_agents', '?')} agents"
            )
        self.sampler = make_sampler(**sampler_kwargs)
        self.weights = [w for _, w in neighbour_weights]
        self.block = agent_block(target, [agent], [degree], [self_weight], n_total, seed)
        self.state = self.sampler.init(self.block, initial_samples(self.block, n_chains, x0))
        self.history = [self.state["x"][0].clone()]

    def current(self) -> torch.Tensor:
        """This agent's iterate (n_chains, dim)."""
        return self.state["x"][0]

    def phase(self, iteration: int, index: int, *neighbour_x: torch.Tensor) -> torch.Tensor:
        """Run phase ``index`` of ``iteration`` given the neighbours' iterates; return x."""
        nbr_sum = torch.zeros_like(self.state["x"])
        for w, xj in zip(self.weights, neighbour_x, strict=True):
            nbr_sum = nbr_sum + w * xj.to(nbr_sum.device)
        phase = self.sampler.phases[index]
        self.state = phase(iteration, self.block, self.state, nbr_sum)
        if index == len(self.sampler.phases) - 1:
            self.history.append(self.state["x"][0].clone())
        return self.state["x"][0]

    def chains(self) -> torch.Tensor:
        """All iterates so far, (n_iter + 1, n_chains, dim)."""
        return torch.stack(self.history)


def _local_targets(target: Target | Sequence[LocalTarget]) -> list[LocalTarget]:
    if isinstance(target, Target):
        return [target.local(i) for i in range(target.n_agents)]
    if isinstance(target, Sequence) and len(target) > 0:
        return list(target)
    raise TypeError(
        "target must be a Target or a list with one local Target (or builder) per agent, "
        f"got {type(target)}"
    )


def run_agents(
    method: str,
    target: Target | Sequence[LocalTarget],
    graph: nx.Graph,
    n_iter: int,
    n_chains: int,
    seed: int | np.random.Generator | torch.Generator = 0,
    *,
    engine: str = "local",
    rho: float = 5.0,
    step_size: float | None = None,
    friction: float = 7.0,
    schedule: ULASchedule | None = None,
    x0: torch.Tensor | np.ndarray | None = None,
    require_connected: bool = True,
    callback: Callback | None = None,
    actor_options: dict[str, Any] | None = None,
) -> torch.Tensor | np.ndarray:
    """Run a distributed sampler with one agent object (``local``) or Ray actor (``ray``) each.

    Same arguments and result as ``mrsolve.solvers.sampling.run``, plus:
        target: a Target (split with ``target.local(i)``) or a list with one one-agent
            Target, or a zero-argument builder of one, per agent (a builder runs inside the
            agent, so its data never pass through the driver).
        engine: "local" or "ray" (Ray must be initialized, or it is started locally).
        actor_options: options for the Ray actors (default ``{"num_cpus": 0}``).
        callback: ``callback(iteration, n_iter, x)``; with Ray it gathers x every iteration.

    Returns:
        chains (n_iter + 1, n_agents, n_chains, dim), torch (numpy for a numpy-built target).
    """
    check_choice("engine", engine, ENGINES)
    check_counts(n_iter, n_chains)
    locals_ = _local_targets(target)
    n_agents = len(locals_)
    sampler_kwargs = {
        "method": method,
        "rho": rho,
        "step_size": step_size,
        "friction": friction,
        "schedule": schedule,
    }
    sampler = make_sampler(**sampler_kwargs)
    structure = graph_structure(graph, n_agents, require_connected)
    seed = seed_to_int(seed)
    args = [
        (
            i,
            locals_[i],
            structure.neighbour_weights(i, sampler.weighting),
            float(structure.degree[i]),
            structure.self_weight(i, sampler.weighting),
            n_agents,
            seed,
            n_chains,
            sampler_kwargs,
            x0,
        )
        for i in range(n_agents)
    ]
    n_phases = len(sampler.phases)
    if engine == "local":
        agents = [SamplerAgent(*a) for a in args]
        chains = _drive_local(agents, structure.neighbours, n_iter, n_phases, callback)
    else:
        chains = _drive_ray(args, structure.neighbours, n_iter, n_phases, callback, actor_options)
    returns_numpy = target.returns_numpy if isinstance(target, Target) else False
    return chains.cpu().numpy() if returns_numpy else chains


def _drive_local(
    agents: list[SamplerAgent],
    neighbours: tuple[tuple[int, ...], ...],
    n_iter: int,
    n_phases: int,
    callback: Callback | None,
) -> torch.Tensor:
    xs = [a.current() for a in agents]
    for k in range(n_iter):
        for ph in range(n_phases):
            xs = [
                a.phase(k, ph, *[xs[j] for j in nb])
                for a, nb in zip(agents, neighbours, strict=True)
            ]
        if callback is not None:
            callback(k + 1, n_iter, torch.stack(xs))
    return torch.stack([a.chains() for a in agents], dim=1)


def _drive_ray(
    args: list[tuple],
    neighbours: tuple[tuple[int, ...], ...],
    n_iter: int,
    n_phases: int,
    callback: Callback | None,
    actor_options: dict[str, Any] | None,
) -> torch.Tensor:
    import ray

    if not ray.is_initialized():
        ray.init()
    options = {"num_cpus": 0} if actor_options is None else dict(actor_options)
    remote_agent = ray.remote(_RayAgent).options(**options)
    actors = [remote_agent.remote(*a) for a in args]
    try:
        xs = [a.current.remote() for a in actors]
        for k in range(n_iter):
            for ph in range(n_phases):
                # ObjectRefs as top-level arguments: Ray hands each actor its neighbours'
                # iterates straight from the object store once they are computed.
                xs = [
                    a.phase.remote(k, ph, *[xs[j] for j in nb])
                    for a, nb in zip(actors, neighbours, strict=True)
                ]
            if callback is not None:
                callback(k + 1, n_iter, torch.stack(ray.get(xs)))
        return torch.stack(ray.get([a.chains.remote() for a in actors]), dim=1)
    finally:
        for a in actors:
            ray.kill(a)


class _RayAgent(SamplerAgent):
    """SamplerAgent inside a Ray worker: one torch thread per agent."""

    def __init__(self, *args: Any) -> None:
        torch.set_num_threads(1)
        super().__init__(*args)
