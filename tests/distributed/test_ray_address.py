"""A second process joins the session's Ray cluster by its address and computes there."""

import subprocess
import sys
import textwrap

DRIVER = textwrap.dedent(
    """
    import sys
    import numpy as np
    import ray
    from mrsolve.distributed import coded_matmul
    from mrsolve.distributed.ray_executor import RayExecutor

    rng = np.random.default_rng(1)
    A, B = rng.standard_normal((32, 5)), rng.standard_normal((5, 2))
    executor = RayExecutor(address=sys.argv[1])
    out, report = coded_matmul(A, B, workers=4, code="mds", executor=executor)
    assert report.decoded, report
    assert np.linalg.norm(out - A @ B) < 1e-8 * np.linalg.norm(A @ B)
    print(ray.get_runtime_context().gcs_address)
    """
)


def test_executor_joins_an_existing_cluster_by_address(ray_cluster):
    address = ray_cluster.get_runtime_context().gcs_address
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, address], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == address
