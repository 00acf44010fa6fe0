"""Two-layer ReLU training through its Max-Cut connection (after arXiv 2311.10972).

:func:`solve` (random-hyperplane rounding with a certified approximation ratio),
:func:`solve_orthogonal` (exact for orthogonally separable data when its certificate
holds), the dataset generators and the dual bounds. Only the paper's abstract was
available: the algorithms, the certificates and :func:`geometric_factor` are our
construction (see :mod:`.solve` and :mod:`.datasets`), not the paper's.
"""

from mrsolve.solvers.maxcut.bounds import arrangement_bound, maxcut_bound, relaxation_bound
from mrsolve.solvers.maxcut.datasets import (
    CLASSES,
    dataset_class,
    geometric_factor,
    is_negatively_correlated,
    is_orthogonally_separable,
    make_dataset,
)
from mrsolve.solvers.maxcut.solve import MaxCutResult, orthogonal_gates, solve, solve_orthogonal
from mrsolve.solvers.validation import deprecated_names

__all__ = [
    "CLASSES",
    "MaxCutResult",
    "arrangement_bound",
    "dataset_class",
    "geometric_factor",
    "is_negatively_correlated",
    "is_orthogonally_separable",
    "make_dataset",
    "maxcut_bound",
    "orthogonal_gates",
    "relaxation_bound",
    "solve",
    "solve_orthogonal",
]

__getattr__ = deprecated_names(__name__, {"MaxCutSolution": MaxCutResult})
