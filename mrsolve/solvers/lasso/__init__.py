"""Lasso, elastic net and group lasso paths with cross-validation, and the pretrained lasso.

The GLM families (gaussian, binomial, multinomial, poisson) come from
:mod:`mrsolve.solvers.datafit`; the solver is glmnet-style coordinate descent.
"""

from mrsolve.solvers.lasso.cv import CVPathResult, cv_path, make_folds
from mrsolve.solvers.lasso.estimators import LassoCV, LassoPath
from mrsolve.solvers.lasso.path import PathResult, fit_path
from mrsolve.solvers.lasso.pretrained import PretrainedLasso, PretrainedLassoCV
from mrsolve.solvers.lasso.simulate import GroupedData, simulate_groups
from mrsolve.solvers.lasso.variants import (
    PretrainedRLearner,
    SequentialPretrainedLasso,
    StumpFeatures,
)
from mrsolve.solvers.validation import deprecated_names

__all__ = [
    "CVPathResult",
    "GroupedData",
    "LassoCV",
    "LassoPath",
    "PathResult",
    "PretrainedLasso",
    "PretrainedLassoCV",
    "PretrainedRLearner",
    "SequentialPretrainedLasso",
    "StumpFeatures",
    "cv_path",
    "fit_path",
    "make_folds",
    "simulate_groups",
]

__getattr__ = deprecated_names(__name__, {"CVPath": CVPathResult, "Path": PathResult})
