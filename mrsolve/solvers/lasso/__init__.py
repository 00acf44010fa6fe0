"""Lasso, elastic net and group lasso paths with cross-validation, and the pretrained lasso.

The GLM families (gaussian, binomial, multinomial, poisson) come from
:mod:`mrsolve.solvers.datafit`; the solver is glmnet-style coordinate descent.
"""

from mrsolve.solvers.lasso.cv import CVPath, cv_path, make_folds
from mrsolve.solvers.lasso.estimators import LassoCV, LassoPath
from mrsolve.solvers.lasso.path import Path, fit_path
from mrsolve.solvers.lasso.pretrained import PretrainedLasso, PretrainedLassoCV
from mrsolve.solvers.lasso.simulate import GroupedData, simulate_groups
from mrsolve.solvers.lasso.variants import (
    PretrainedRLearner,
    SequentialPretrainedLasso,
    StumpFeatures,
)

__all__ = [
    "CVPath",
    "GroupedData",
    "LassoCV",
    "LassoPath",
    "Path",
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
