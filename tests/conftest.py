"""Shared fixtures: one Ray cluster per test session, the devices to run on."""

from __future__ import annotations

import pytest
import torch

# One intra-op thread: the tests use small tensors, where a second thread costs far more
# than it gives on a busy 2-core machine (measured 30-70x slower for small SVDs and exps).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def ray_cluster():
    """A real single-node Ray cluster (2 CPUs) shared by every test that asks for it."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


#: where the device-generic tests run: the CPU, and CUDA where a GPU is present
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> torch.device:
    """Each device of ``DEVICES`` in turn (tests compare against CPU-side references)."""
    return torch.device(request.param)
