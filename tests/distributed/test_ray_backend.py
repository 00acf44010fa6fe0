"""Ray backend on a real single-node cluster (the session-scoped ``ray_cluster`` fixture).

Few and small on purpose: every killed worker costs Ray a process restart.
"""

import os

import numpy as np
import pytest

from mrsolve.distributed.coded_matmul import coded_matmul
from mrsolve.distributed.secure_lstsq import secure_lstsq

RNG = np.random.default_rng(0)
A = RNG.standard_normal((48, 6))
B = RNG.standard_normal((6, 3))


def _rel(x):
    return np.linalg.norm(x - A @ B) / np.linalg.norm(A @ B)


def _executor():
    from mrsolve.distributed.ray_executor import RayExecutor

    return RayExecutor()


def test_ray_one_worker_killed_mid_run_still_decodes(ray_cluster):
    # polar N=4, K=3: any single erasure is decodable; worker 3 dies as soon as it starts,
    # the others answer after 2 s, long enough for Ray to report the dead worker first
    out, rep = coded_matmul(
        A, B, workers=4, k=3, code="polar", executor=_executor(), delays=[2.0] * 3 + [0.0], fail=[3]
    )
    assert rep.decoded and _rel(out) < 1e-8
    assert rep.failed == [3] and 3 not in rep.answered


def test_ray_too_many_killed_returns_flagged_estimate(ray_cluster):
    # workers 0 and 2 dead: 5 of the 6 data blocks are recoverable, the product is not
    out, rep = coded_matmul(
        A, B, workers=8, k=6, code="polar", executor=_executor(), delays=[0.0] * 8, fail=[0, 2]
    )
    assert rep.status == "estimated" and not rep.decoded
    assert sorted(rep.failed) == [0, 2] and rep.recovered_blocks == 5
    assert 0 < rep.relative_error_estimate < np.inf
    assert _rel(out) < 1.0  # 5/6 of the blocks: E err^2 = (6/5 - 1) ||AB||^2


def test_ray_secure_lstsq_matches_the_simulated_run(ray_cluster):
    b = A @ RNG.standard_normal(6)
    kw = dict(workers=4, responders=4, iters=3, average=False, seed=1)
    theta_ray, rep = secure_lstsq(A, b, executor=_executor(), **kw)
    theta_sim, _ = secure_lstsq(A, b, **kw)
    np.testing.assert_allclose(theta_ray, theta_sim, rtol=1e-10, atol=1e-12)
    assert all(sorted(r) == [0, 1, 2, 3] for r in rep.responders)


def test_ray_remote_options_reach_every_task(ray_cluster):
    from mrsolve.distributed.ray_executor import RayExecutor

    env = {"runtime_env": {"env_vars": {"MRSOLVE_PROBE": "set by remote_options"}}}
    ex = RayExecutor(remote_options=env)
    handles = [ex.submit(os.getenv, "MRSOLVE_PROBE") for _ in range(2)]
    done, _ = ex.wait(handles, num_returns=2, timeout=120.0)
    assert [ex.result(h) for h in done] == ["set by remote_options"] * 2
    plain = _executor()
    assert plain.result(plain.submit(os.getenv, "MRSOLVE_PROBE")) is None


def test_ray_remote_options_keep_cpus_and_retries_fixed():
    from mrsolve.distributed.ray_executor import RayExecutor

    with pytest.raises(ValueError, match="max_retries"):
        RayExecutor(remote_options={"max_retries": 3})
    with pytest.raises(ValueError, match="num_cpus"):
        RayExecutor(remote_options={"num_cpus": 2, "num_gpus": 1})
    with pytest.raises(TypeError, match="remote_options"):
        RayExecutor(remote_options=[("num_gpus", 1)])
