"""Wedge-product features for ReLU networks (arXiv 2309.16512).

Neurons are hyperplanes through ``d`` training samples (generalized cross products of
their differences); training is a lasso over the resulting signed-volume features.
"""

from mrsolve.solvers.validation import deprecated_names
from mrsolve.solvers.wedge.estimators import WedgeClassifier, WedgeRegressor
from mrsolve.solvers.wedge.features import (
    generalized_cross,
    sample_subsets,
    wedge_features,
    wedge_neurons,
)
from mrsolve.solvers.wedge.lasso import LassoResult, beta_max, lasso, lasso_path
from mrsolve.solvers.wedge.model import WedgeModel, fit_wedge, wedge_path
from mrsolve.solvers.wedge.spiral import make_spiral

__all__ = [
    "LassoResult",
    "WedgeClassifier",
    "WedgeModel",
    "WedgeRegressor",
    "beta_max",
    "fit_wedge",
    "generalized_cross",
    "lasso",
    "lasso_path",
    "make_spiral",
    "sample_subsets",
    "wedge_features",
    "wedge_neurons",
    "wedge_path",
]

__getattr__ = deprecated_names(__name__, {"LassoFit": LassoResult})
