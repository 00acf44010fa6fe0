"""Distributed posterior sampling: D-ADMMS (arXiv:2401.15838), consensus ADMM and the
decentralized Langevin baselines D-SGLD, D-SGHMC, D-ULA, vectorized over agents and chains.

    target = BayesianLinearRegression(X_parts, y_parts, noise_sd=4.0, prior_var=10.0)
    chains = run("dadmms", target, make_graph("cycle", 20), n_iter=50, n_chains=100, seed=0)
    w2 = chains_w2(chains, *target.posterior())      # (n_iter + 1, n_agents)

The multi-process runtime (one Ray actor per agent) is ``mrsolve.distributed.admm_sampler``.
"""

from mrsolve.solvers.sampling.graphs import GRAPH_KINDS, GraphStructure, graph_structure, make_graph
from mrsolve.solvers.sampling.methods import METHODS, NonFiniteError, ULASchedule, make_sampler
from mrsolve.solvers.sampling.metrics import (
    chains_w2,
    gaussian_fit,
    gaussian_w2,
    predictive_accuracy,
)
from mrsolve.solvers.sampling.reference import MALAResult, mala
from mrsolve.solvers.sampling.targets import (
    BayesianLinearRegression,
    BayesianLogisticRegression,
    LocalDensities,
    Target,
    newton_prox,
)
from mrsolve.solvers.sampling.vectorized import run

__all__ = [
    "GRAPH_KINDS",
    "METHODS",
    "BayesianLinearRegression",
    "BayesianLogisticRegression",
    "GraphStructure",
    "LocalDensities",
    "MALAResult",
    "NonFiniteError",
    "Target",
    "ULASchedule",
    "chains_w2",
    "gaussian_fit",
    "gaussian_w2",
    "graph_structure",
    "make_graph",
    "make_sampler",
    "mala",
    "newton_prox",
    "predictive_accuracy",
    "run",
]
