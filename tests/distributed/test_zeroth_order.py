import numpy as np
import pytest
import scipy.optimize
import torch

from mrsolve.distributed.coded_run import run_coded
from mrsolve.distributed.codes import UncodedCode
from mrsolve.distributed.executors import SimulatedExecutor
from mrsolve.distributed.polar import PolarCode
from mrsolve.distributed.stragglers import ShiftedExponential
from mrsolve.distributed.zeroth_order import coded_zeroth_order, directional_derivatives

RNG = np.random.default_rng(0)
Q = RNG.standard_normal((5, 5))
H = torch.from_numpy(Q @ Q.T + np.eye(5))
X_DATA = torch.from_numpy(RNG.standard_normal((60, 5)))
Y_DATA = torch.from_numpy(np.where(RNG.random(60) < 0.5, 1.0, -1.0))


def _quadratic(x):
    return float(0.5 * x @ H @ x - x.sum())


def _logistic(w):
    return float(torch.nn.functional.softplus(-Y_DATA * (X_DATA @ w)).mean() + 0.05 * (w @ w))


def test_coded_directional_derivatives_decode_exactly_for_a_quadratic():
    x = torch.from_numpy(RNG.standard_normal(5))
    v = torch.from_numpy(RNG.standard_normal((4, 3, 5)))
    known = [0.0, 9.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0]  # two stragglers
    run = run_coded(
        directional_derivatives,
        v,
        PolarCode(8, 4),
        SimulatedExecutor(),
        (_quadratic, x, 1e-3),
        delays=known,
        timeout=1.0,
    )
    assert run.decoded
    grad = (H @ x - 1.0).numpy()
    np.testing.assert_allclose(run.outputs.numpy(), v.numpy() @ grad, rtol=1e-7, atol=1e-7)


def test_coded_zeroth_order_reaches_the_scipy_minimum():
    ref = scipy.optimize.minimize(
        lambda w: _logistic(torch.from_numpy(w)), np.zeros(5), method="BFGS", tol=1e-10
    ).x
    x, rep = coded_zeroth_order(
        _logistic,
        np.zeros(5),
        iters=120,
        lr=0.5,
        workers=8,
        delays=ShiftedExponential(0.0, 1.0),
        timeout=1.0,
        seed=0,
    )
    assert np.linalg.norm(x.numpy() - ref) < 1e-3 * max(1.0, np.linalg.norm(ref))
    assert not all(rep.decoded) and any(rep.decoded)  # some iterations ran on estimates
    assert rep.values[-1] <= rep.values[0]
    assert len(rep.seconds) == 120 and max(rep.seconds) <= 1.0 + 1e-9  # the timeout holds


def test_uncoded_directions_match_gradient_projection():
    x = torch.zeros(5, dtype=torch.float64)
    v = torch.from_numpy(RNG.standard_normal((2, 2, 5)))
    run = run_coded(
        directional_derivatives, v, UncodedCode(2), SimulatedExecutor(), (_quadratic, x, 1e-3)
    )
    np.testing.assert_allclose(run.outputs.numpy(), v.numpy() @ -np.ones(5), atol=1e-9)


def test_bad_arguments():
    with pytest.raises(ValueError, match="x0"):
        coded_zeroth_order(_quadratic, np.zeros((2, 2)))
    with pytest.raises(ValueError, match="lr"):
        coded_zeroth_order(_quadratic, np.zeros(5), lr=0.0)
