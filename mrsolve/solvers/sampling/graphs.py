"""Communication graphs for the distributed samplers (networkx in, neighbour lists out)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import networkx as nx
import numpy as np

from mrsolve.solvers.validation import check_int

GRAPH_KINDS = ("cycle", "complete", "empty", "path", "star", "geometric")


def make_graph(
    kind: str, n_agents: int, *, radius: float | None = None, seed: int | None = None
) -> nx.Graph:
    """A named graph on agents 0..n_agents-1.

    ``geometric`` is a random geometric graph in the unit square (``radius`` defaults to
    sqrt(2 log(n) / n) * 1.5, connected with high probability; ``seed`` fixes the points).
    """
    check_int("n_agents", n_agents)
    if kind == "cycle":
        return nx.cycle_graph(n_agents) if n_agents > 2 else nx.path_graph(n_agents)
    if kind == "complete":
        return nx.complete_graph(n_agents)
    if kind == "empty":
        return nx.empty_graph(n_agents)
    if kind == "path":
        return nx.path_graph(n_agents)
    if kind == "star":
        return nx.star_graph(n_agents - 1)
    if kind == "geometric":
        r = 1.5 * math.sqrt(2 * math.log(max(n_agents, 2)) / n_agents) if radius is None else radius
        return nx.random_geometric_graph(n_agents, r, seed=seed)
    raise ValueError(f"kind must be one of {list(GRAPH_KINDS)}, got {kind!r}")


@dataclass(frozen=True)
class GraphStructure:
    """Neighbour lists and the two weightings the samplers use.

    ``adjacency`` weights every neighbour 1 (ADMM, D-ULA); ``metropolis`` uses
    W_ij = 1 / (max(d_i, d_j) + 1) with W_ii = 1 - sum_j W_ij (D-SGLD, D-SGHMC).
    """

    neighbours: tuple[tuple[int, ...], ...]

    @property
    def n_agents(self) -> int:
        return len(self.neighbours)

    @property
    def degree(self) -> np.ndarray:
        return np.array([len(nb) for nb in self.neighbours], dtype=float)

    def neighbour_weights(self, agent: int, weighting: str) -> tuple[tuple[int, float], ...]:
        """(neighbour, weight) pairs of one agent."""
        if weighting == "adjacency":
            return tuple((j, 1.0) for j in self.neighbours[agent])
        if weighting == "metropolis":
            deg = self.degree
            return tuple((j, 1.0 / (max(deg[agent], deg[j]) + 1.0)) for j in self.neighbours[agent])
        raise ValueError(f"weighting must be 'adjacency' or 'metropolis', got {weighting!r}")

    def self_weight(self, agent: int, weighting: str) -> float:
        """W_ii: 1 minus the neighbour weights for ``metropolis``, 0 for ``adjacency``."""
        if weighting == "adjacency":
            return 0.0
        return 1.0 - sum(w for _, w in self.neighbour_weights(agent, weighting))

    def mixing_matrix(self, weighting: str) -> np.ndarray:
        """(N, N) matrix of neighbour weights, zero diagonal."""
        M = np.zeros((self.n_agents, self.n_agents))
        for i in range(self.n_agents):
            for j, w in self.neighbour_weights(i, weighting):
                M[i, j] = w
        return M


def graph_structure(graph: nx.Graph, n_agents: int, require_connected: bool) -> GraphStructure:
    """Check ``graph`` against the target's agents and return its neighbour lists.

    Raises ValueError for a directed or multi graph, nodes other than 0..n_agents-1,
    self-loops, or (when ``require_connected``) a disconnected graph.
    """
    if not isinstance(graph, nx.Graph):
        raise TypeError(f"graph must be a networkx.Graph, got {type(graph)}")
    if graph.is_directed() or graph.is_multigraph():
        raise ValueError(f"graph must be an undirected simple networkx.Graph, got {type(graph)}")
    nodes = set(graph.nodes)
    if nodes != set(range(n_agents)):
        raise ValueError(
            f"graph must have the target's {n_agents} agents as nodes 0..{n_agents - 1}, "
            f"got {graph.number_of_nodes()} nodes {sorted(nodes, key=str)[:8]}"
        )
    loops = list(nx.selfloop_edges(graph))
    if loops:
        raise ValueError(f"graph must not have self-loops, got {loops[:5]}")
    if require_connected and n_agents > 1 and not nx.is_connected(graph):
        k = nx.number_connected_components(graph)
        raise ValueError(
            f"graph must be connected for the agents to reach consensus, got {k} components "
            "(pass require_connected=False to let each component sample on its own)"
        )
    return GraphStructure(tuple(tuple(sorted(graph.neighbors(i))) for i in range(n_agents)))
