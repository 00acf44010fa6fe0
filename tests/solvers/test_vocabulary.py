"""The public API of ``mrsolve.solvers`` speaks one vocabulary (ARCHITECTURE.md).

Walks every public class and function of the solver modules and checks: estimators take
``random_state`` (never ``seed``), functions never ``random_state``; path functions take
``penalties`` / ``n_penalties`` / ``penalty_min_ratio`` keyword-only and none of the old
names; iteration budgets and tolerances are ``max_iter`` / ``tol``; result dataclasses are
frozen and named ``...Result``.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil

import pytest
from sklearn.base import BaseEstimator

import mrsolve.solvers

MODULES = sorted(
    m.name
    for m in pkgutil.walk_packages(mrsolve.solvers.__path__, "mrsolve.solvers.")
    if not any(part.startswith("_") for part in m.name.split("."))
)

OLD_PATH_NAMES = {"lambdas", "betas", "n_lambdas", "n_betas", "eps", "lambda_min_ratio"}
PATH_NAMES = ("penalties", "n_penalties", "penalty_min_ratio")
#: spellings of max_iter / tol that the vocabulary replaces
NOT_VOCABULARY = {
    "tolerance",
    "maxiter",
    "max_iters",
    "maxit",
    "n_iterations",
    "num_iter",
    "num_iters",
    "iters",
    "n_iters",
    "iterations",
    "max_iterations",
}
#: suffixes of result types the vocabulary replaces by ``Result``
OLD_RESULT_SUFFIXES = ("Info", "Solution", "Fit", "Report", "Run")


def _public_objects():
    """(qualified name, object) of every public class and function defined in the solvers."""
    seen = {}
    for name in MODULES:
        module = importlib.import_module(name)
        names = getattr(module, "__all__", None) or [n for n in vars(module) if n[0] != "_"]
        for attr in names:
            obj = getattr(module, attr)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not getattr(obj, "__module__", "").startswith("mrsolve.solvers"):
                continue
            seen.setdefault(f"{obj.__module__}.{obj.__qualname__}", obj)
    return sorted(seen.items())


PUBLIC = _public_objects()


def _parameters(obj) -> list[inspect.Parameter]:
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return []
    return [p for p in sig.parameters.values() if p.name != "self"]


def test_the_walk_finds_the_api():
    names = {name.rsplit(".", 1)[-1] for name, _ in PUBLIC}
    assert {"LassoCV", "PretrainedLasso", "ConvexNNRegressor", "WedgeRegressor"} <= names
    assert {"fit_path", "lasso_path", "regularization_path", "wedge_path", "solve"} <= names
    assert len(PUBLIC) > 100


@pytest.mark.parametrize(("name", "obj"), PUBLIC, ids=[n for n, _ in PUBLIC])
def test_parameter_names(name, obj):
    params = {p.name: p for p in _parameters(obj)}
    assert not NOT_VOCABULARY & set(params), f"{name}: use max_iter / tol"
    if inspect.isclass(obj) and issubclass(obj, BaseEstimator):
        assert "seed" not in params, f"{name}: estimators take random_state"
    elif inspect.isfunction(obj):
        assert "random_state" not in params, f"{name}: functions take seed"
    if inspect.isfunction(obj) and obj.__name__.endswith("_path"):
        assert not OLD_PATH_NAMES & set(params), f"{name}: use {PATH_NAMES}"
        for path_name in PATH_NAMES:
            assert params[path_name].kind is inspect.Parameter.KEYWORD_ONLY, name


RESULTS = [(n, o) for n, o in PUBLIC if inspect.isclass(o) and dataclasses.is_dataclass(o)]


@pytest.mark.parametrize(("name", "cls"), RESULTS, ids=[n for n, _ in RESULTS])
def test_result_dataclasses(name, cls):
    assert not cls.__name__.endswith(OLD_RESULT_SUFFIXES), f"{name}: name it ...Result"
    if cls.__name__.endswith("Result"):
        assert cls.__dataclass_params__.frozen, f"{name} must be frozen"
        fields = {f.name for f in dataclasses.fields(cls)}
        # the shared names for the shared ideas, never a synonym
        assert not fields & {"iterations", "n_iterations", "duality_gap", "relative_gap"}, name
