"""Convex training of two-layer networks (ReLU, gated ReLU, leaky ReLU, absolute value).

arXiv 2312.12657 (convex programs, exact arrangements, zonotope subsampling) and
2309.15096 (gated ReLU as multiple kernel learning, see :mod:`mrsolve.solvers.mkl`).
"""

from mrsolve.solvers.convex_nn.api import (
    SOLVERS,
    ConvexNNResult,
    Solver,
    add_bias,
    make_datafit,
    penalty_max,
    regularization_path,
    solve,
)
from mrsolve.solvers.convex_nn.certificate import certificate
from mrsolve.solvers.convex_nn.estimators import ConvexNNClassifier, ConvexNNRegressor
from mrsolve.solvers.convex_nn.network import TwoLayerNet, network_objective
from mrsolve.solvers.convex_nn.patterns import (
    enumerate_gates,
    gate_masks,
    sample_gates,
    zonotope_gates,
)
from mrsolve.solvers.convex_nn.problem import ACTIVATIONS, ConvexProgram, SolverResult
from mrsolve.solvers.validation import deprecated_names

__all__ = [
    "ACTIVATIONS",
    "SOLVERS",
    "ConvexNNClassifier",
    "ConvexNNRegressor",
    "ConvexNNResult",
    "ConvexProgram",
    "Solver",
    "SolverResult",
    "TwoLayerNet",
    "add_bias",
    "certificate",
    "enumerate_gates",
    "gate_masks",
    "make_datafit",
    "network_objective",
    "penalty_max",
    "regularization_path",
    "sample_gates",
    "solve",
    "zonotope_gates",
]

__getattr__ = deprecated_names(__name__, {"ConvexNNSolution": ConvexNNResult})
