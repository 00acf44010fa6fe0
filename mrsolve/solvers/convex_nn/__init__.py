"""Convex training of two-layer networks (ReLU, gated ReLU, leaky ReLU, absolute value).

arXiv 2312.12657 (convex programs, exact arrangements, zonotope subsampling) and
2309.15096 (gated ReLU as multiple kernel learning, see :mod:`mrsolve.solvers.mkl`).
"""

from mrsolve.solvers.convex_nn.api import (
    ConvexNNSolution,
    add_bias,
    make_datafit,
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
from mrsolve.solvers.convex_nn.problem import ACTIVATIONS, ConvexProgram

__all__ = [
    "ACTIVATIONS",
    "ConvexNNClassifier",
    "ConvexNNRegressor",
    "ConvexNNSolution",
    "ConvexProgram",
    "TwoLayerNet",
    "add_bias",
    "certificate",
    "enumerate_gates",
    "gate_masks",
    "make_datafit",
    "network_objective",
    "regularization_path",
    "sample_gates",
    "solve",
    "zonotope_gates",
]
