"""Old names keep working for one release, with a DeprecationWarning, and mean the same."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
import torch

from mrsolve.solvers import alg
from mrsolve.solvers.convex_nn import regularization_path, sample_gates
from mrsolve.solvers.lasso import LassoCV, PretrainedLasso, PretrainedLassoCV, fit_path
from mrsolve.solvers.lasso.variants import StumpFeatures
from mrsolve.solvers.mkl import reweight
from mrsolve.solvers.wedge import lasso_path

#: (module, old name, new name)
RENAMED_TYPES = [
    ("mrsolve.solvers.alg", "FistaInfo", "FistaResult"),
    ("mrsolve.solvers.alg", "AdmmInfo", "AdmmResult"),
    ("mrsolve.solvers.alg", "CgInfo", "CgResult"),
    ("mrsolve.solvers.convex_nn", "ConvexNNSolution", "ConvexNNResult"),
    ("mrsolve.solvers.convex_nn.api", "ConvexNNSolution", "ConvexNNResult"),
    ("mrsolve.solvers.convex_nn.fista_solver", "GapFistaInfo", "GapFistaResult"),
    ("mrsolve.solvers.convex_nn.ipm_solver", "IpmInfo", "IpmResult"),
    ("mrsolve.solvers.convex_nn.polish", "PolishInfo", "PolishResult"),
    ("mrsolve.solvers.lasso", "Path", "PathResult"),
    ("mrsolve.solvers.lasso", "CVPath", "CVPathResult"),
    ("mrsolve.solvers.lasso.path", "Path", "PathResult"),
    ("mrsolve.solvers.lasso.cv", "CVPath", "CVPathResult"),
    ("mrsolve.solvers.maxcut", "MaxCutSolution", "MaxCutResult"),
    ("mrsolve.solvers.wedge", "LassoFit", "LassoResult"),
]


@pytest.mark.parametrize(("module", "old", "new"), RENAMED_TYPES)
def test_old_type_names_warn_and_alias_the_new(module, old, new):
    mod = importlib.import_module(module)
    with pytest.warns(DeprecationWarning, match=old):
        assert getattr(mod, old) is getattr(mod, new)
    with pytest.raises(AttributeError):
        mod.NoSuchName  # noqa: B018


def _data(n=40, p=6, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    return X, X[:, 0] - 2 * X[:, 1] + 0.3 * rng.standard_normal(n)


def test_fit_path_old_keywords():
    X, y = _data()
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        old = fit_path(X, y, n_lambdas=6, lambda_min_ratio=0.1)
    new = fit_path(X, y, n_penalties=6, penalty_min_ratio=0.1)
    np.testing.assert_array_equal(old.coef, new.coef)
    with pytest.warns(DeprecationWarning, match="lambdas"):
        np.testing.assert_array_equal(old.lambdas, new.penalties)
    with pytest.raises(TypeError, match="both"):
        fit_path(X, y, lambdas=[0.1], penalties=[0.1])


def test_estimator_old_keywords_and_attributes():
    X, y = _data()
    with pytest.warns(DeprecationWarning, match="seed"):
        est = LassoCV(n_penalties=5, n_folds=3, seed=3)
    assert est.get_params()["random_state"] == 3 and "seed" not in est.get_params()
    est.fit(X, y)
    with pytest.warns(DeprecationWarning, match="lambdas_"):
        np.testing.assert_array_equal(est.lambdas_, est.penalties_)
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        pre = PretrainedLasso(alpha=0.3, n_lambdas=5)
    assert pre.pretrain_alpha == 0.3 and pre.n_penalties == 5
    with pytest.warns(DeprecationWarning, match="alpha"):
        assert pre.alpha == 0.3
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        cv = PretrainedLassoCV(alphas=(0.0, 1.0), alpha_rule="per_group")
    assert cv.pretrain_alphas == (0.0, 1.0) and cv.pretrain_alpha_rule == "per_group"
    with pytest.warns(DeprecationWarning, match="seed"):
        assert StumpFeatures(seed=4).random_state == 4


def test_path_functions_old_keywords():
    g = torch.Generator().manual_seed(0)
    Phi = torch.rand(30, 8, generator=g, dtype=torch.float64)
    Y = (Phi[:, :2].sum(1) + 0.1 * torch.randn(30, generator=g, dtype=torch.float64))[:, None]
    with pytest.warns(DeprecationWarning, match="is deprecated"):
        old = lasso_path(Phi, Y, n_betas=3, eps=0.1)
    new = lasso_path(Phi, Y, n_penalties=3, penalty_min_ratio=0.1)
    assert [f.beta for f in old] == [f.beta for f in new]
    X = torch.randn(20, 3, generator=g, dtype=torch.float64)
    y = X[:, 0].clamp_min(0)
    gates = sample_gates(X, 6, seed=1)
    with pytest.warns(DeprecationWarning, match="betas"):
        sols = regularization_path(X, y, gates, betas=[0.1, 0.01], activation="gated_relu")
    assert [s.beta for s in sols] == [0.1, 0.01]


def test_result_fields_old_names():
    X = torch.randn(20, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gates = sample_gates(X, 5, seed=0)
    res = reweight(X, X[:, 0], gates, 0.1, max_iter=3)
    with pytest.warns(DeprecationWarning, match="objective"):
        assert res.objective is res.objectives
    with pytest.warns(DeprecationWarning, match="alpha"):
        assert res.alpha is res.dual_coef
    with pytest.warns(DeprecationWarning, match="FistaInfo"):
        assert alg.FistaInfo is alg.FistaResult


def test_admm_alpha_is_the_relaxation():
    # min (x - 3)^2 / 2 + |z| s.t. x = z: x = z = 2
    args = (
        lambda v, rho: (3 + rho * v) / (1 + rho),
        lambda v, rho: torch.sign(v) * (v.abs() - 1 / rho).clamp_min(0),
        lambda x: x,
        lambda z: z,
        torch.zeros(1, dtype=torch.float64),
        torch.zeros(1, dtype=torch.float64),
    )
    with pytest.warns(DeprecationWarning, match="relaxation"):
        x_old, _, _ = alg.admm(*args, alpha=1.2)
    x_new, _, _ = alg.admm(*args, relaxation=1.2)
    torch.testing.assert_close(x_old, x_new)
    torch.testing.assert_close(x_new, torch.tensor([2.0], dtype=torch.float64), atol=1e-5, rtol=0)
