"""Single-process runner: all agents and all chains advance together as one tensor."""

from __future__ import annotations

from collections.abc import Callable

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
from mrsolve.solvers.validation import SeedLike, check_int, seed_to_int

Callback = Callable[[int, int, torch.Tensor], None]


def check_counts(n_iter: int, n_chains: int) -> None:
    """Validate the iteration and chain counts every runner shares."""
    check_int("n_iter", n_iter, 0)
    check_int("n_chains", n_chains)


def run(
    method: str,
    target: Target,
    graph: nx.Graph,
    n_iter: int,
    n_chains: int,
    seed: SeedLike = 0,
    *,
    rho: float = 5.0,
    step_size: float | None = None,
    friction: float = 7.0,
    schedule: ULASchedule | None = None,
    x0: torch.Tensor | np.ndarray | None = None,
    require_connected: bool = True,
    callback: Callback | None = None,
) -> torch.Tensor | np.ndarray:
    """Run a distributed sampler with every agent in this process.

    Args:
        method: "dadmms", "admm" (consensus ADMM, no noise), "dsgld", "dsghmc" or "dula".
        target: the local negative log-densities, one per graph node.
        graph: undirected networkx graph on nodes 0..target.n_agents-1.
        n_iter: number of iterations.
        n_chains: independent chains per agent.
        seed: int or generator; agent i draws from a generator seeded by (seed, i).
        rho, step_size, friction, schedule: method parameters (see ``make_sampler``).
        x0: starting points, (dim,), (n_chains, dim) or (n_agents, n_chains, dim);
            default N(0, I) draws.
        require_connected: raise for a disconnected graph (set False for the "no
            communication" baseline).
        callback: called as ``callback(iteration, n_iter, x)`` after every iteration with
            the current iterates x (n_agents, n_chains, dim).

    Returns:
        chains of shape (n_iter + 1, n_agents, n_chains, dim), starting points first
        (numpy when the target was built from numpy arrays).
    """
    if not isinstance(target, Target):
        raise TypeError(f"target must be a sampling Target, got {type(target)}")
    check_counts(n_iter, n_chains)
    sampler = make_sampler(
        method, rho=rho, step_size=step_size, friction=friction, schedule=schedule
    )
    structure = graph_structure(graph, target.n_agents, require_connected)
    agents = range(target.n_agents)
    block = agent_block(
        target,
        agents,
        structure.degree,
        [structure.self_weight(i, sampler.weighting) for i in agents],
        target.n_agents,
        seed_to_int(seed),
    )
    mixing = torch.as_tensor(structure.mixing_matrix(sampler.weighting), dtype=target.dtype)
    mixing = mixing.to(target.device)
    state = sampler.init(block, initial_samples(block, n_chains, x0))
    chains = torch.empty(
        (n_iter + 1, target.n_agents, n_chains, target.dim),
        dtype=target.dtype,
        device=target.device,
    )
    chains[0] = state["x"]
    for k in range(n_iter):
        for phase in sampler.phases:
            x = state["x"]
            state = phase(k, block, state, (mixing @ x.reshape(len(x), -1)).reshape(x.shape))
        chains[k + 1] = state["x"]
        if callback is not None:
            callback(k + 1, n_iter, state["x"])
    return chains.cpu().numpy() if target.returns_numpy else chains
