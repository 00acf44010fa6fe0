import time

import numpy as np
import pytest

from mrsolve.distributed.executors import (
    SimulatedExecutor,
    ThreadExecutor,
    WorkerFailure,
    make_executor,
)
from mrsolve.distributed.stragglers import ShiftedExponential, check_failures, draw_delays


def _square(x):
    return x * x


def _boom(x):
    raise ArithmeticError("bad")


def test_simulated_first_k_follow_the_delays():
    ex = SimulatedExecutor()
    delays = [3.0, 1.0, 2.0, 0.5]
    hs = [ex.submit(_square, i, delay=d) for i, d in enumerate(delays)]
    done, pending = ex.wait(hs, num_returns=2)
    assert [ex.result(h) for h in done] == [9, 1]
    assert ex.now() == 1.0 and len(pending) == 2
    done, _ = ex.wait(pending, num_returns=5, timeout=0.5)
    assert done == [] and ex.now() == 1.5  # the clock moved by the timeout only


def test_simulated_failures_raise_worker_failure():
    ex = SimulatedExecutor()
    dead = ex.submit(_square, 2, fail=True)
    raising = ex.submit(_boom, 2)
    done, _ = ex.wait([dead, raising], num_returns=2)
    for h in done:
        with pytest.raises(WorkerFailure):
            ex.result(h)


def test_threads_return_fast_tasks_first_and_cancel_sleepers():
    with ThreadExecutor(max_workers=4) as ex:
        t0 = time.perf_counter()
        hs = [ex.submit(_square, i, delay=d) for i, d in enumerate([0.0, 30.0, 0.05, 30.0])]
        done, pending = ex.wait(hs, num_returns=2)
        assert sorted(ex.result(h) for h in done) == [0, 4]
        ex.cancel(pending)
        for h in pending:
            with pytest.raises(WorkerFailure):
                ex.result(h)
        assert time.perf_counter() - t0 < 10.0  # the 30 s sleepers were interrupted
        dead = ex.submit(_square, 3, fail=True)
        ex.wait([dead])
        with pytest.raises(WorkerFailure, match="injected"):
            ex.result(dead)


def test_threads_timeout_returns_what_is_done():
    with ThreadExecutor(max_workers=2) as ex:
        hs = [ex.submit(_square, 1), ex.submit(_square, 2, delay=30.0)]
        done, pending = ex.wait(hs, num_returns=2, timeout=2.0)
        assert len(done) == 1 and len(pending) == 1
        ex.cancel(pending)


def test_shifted_exponential_moments_and_probability():
    model = ShiftedExponential(shift=0.5, scale=2.0)
    d = model.sample(20000, np.random.default_rng(0))
    assert d.min() >= 0.5
    assert abs(d.mean() - 2.5) < 0.06
    assert abs(np.mean(d > 3.0) - model.straggler_probability(3.0)) < 0.01
    np.testing.assert_array_equal(draw_delays([1.0, 2.0], 2, None), [1.0, 2.0])
    with pytest.raises(ValueError, match="delays"):
        draw_delays([1.0], 2, None)
    with pytest.raises(ValueError, match="fail"):
        check_failures([5], 4)
    with pytest.raises(ValueError, match="scale"):
        ShiftedExponential(scale=-1.0)


def test_make_executor_names():
    ex, owned = make_executor(None)
    assert isinstance(ex, SimulatedExecutor) and owned
    with pytest.raises(ValueError, match="executor"):
        make_executor("dask")
