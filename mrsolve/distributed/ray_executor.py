"""Ray backend of the executor interface (the only module of mrsolve that imports Ray).

Each submitted task is a Ray task with ``max_retries=0`` (a dead worker is an erasure,
not something to retry); ``wait`` is ``ray.wait(refs, num_returns=k)``; ``cancel`` is
``ray.cancel``. An injected failure ends the worker process with ``os._exit``, so Ray
sees a real worker crash.
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping
from typing import Any

import ray

from mrsolve.distributed.executors import Executor, WorkerFailure, _check_num_returns, run_task
from mrsolve.solvers.validation import check_positive


def _crash_or_run(fn, delay, fail, *args):
    # top-level *args so that Ray resolves ObjectRefs passed as arguments
    if fail:
        time.sleep(delay)
        os._exit(1)  # a real worker death: the process is gone, Ray reports a crash
    return run_task(fn, args, delay, False, _sleep)


def _sleep(seconds: float) -> bool:
    time.sleep(seconds)
    return False


def _check_remote_options(remote_options: Mapping[str, Any] | None) -> dict[str, Any]:
    if remote_options is None:
        return {}
    if not isinstance(remote_options, Mapping):
        raise TypeError(
            f"remote_options must be a mapping of ray.remote options, got "
            f"{type(remote_options).__name__}"
        )
    fixed = sorted({"num_cpus", "max_retries"} & set(remote_options))
    if fixed:
        raise ValueError(
            f"remote_options must not set {fixed}: num_cpus is num_cpus_per_task and "
            f"max_retries stays 0, got {dict(remote_options)!r}"
        )
    return dict(remote_options)


class RayExecutor(Executor):
    """Run tasks on a Ray cluster.

    Args:
        address: address of an existing cluster ("auto", "ray://host:10001", ...); None
            starts a local one unless Ray is already initialized in this process.
        num_cpus: CPUs of a locally started cluster.
        num_cpus_per_task: CPUs reserved by each task.
        remote_options: further options of every task's ``ray.remote`` (resources such as
            ``{"num_gpus": 1}``, ``memory``, ``scheduling_strategy``, ...). ``num_cpus`` and
            ``max_retries`` are not among them: the first is ``num_cpus_per_task``, the
            second stays 0 (a dead worker is an erasure, not something to retry).

    Raises:
        ValueError: ``num_cpus_per_task`` not positive, or ``remote_options`` setting
            ``num_cpus`` or ``max_retries``.
        TypeError: ``remote_options`` not a mapping.
    """

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        num_cpus_per_task: float = 1,
        remote_options: Mapping[str, Any] | None = None,
    ) -> None:
        cpus = check_positive("num_cpus_per_task", num_cpus_per_task)
        options = _check_remote_options(remote_options)
        self._owns = False
        if not ray.is_initialized():
            ray.init(
                address=address, num_cpus=num_cpus, include_dashboard=False, log_to_driver=False
            )
            self._owns = True
        self._remote = ray.remote(num_cpus=cpus, max_retries=0, **options)(_crash_or_run)
        self._t0 = time.perf_counter()

    def put(self, obj: Any) -> Any:
        return ray.put(obj)

    def submit(self, fn, *args, delay=0.0, fail=False):
        delay = check_positive("delay", delay, allow_zero=True)
        return self._remote.remote(fn, delay, bool(fail), *args)

    def wait(self, handles, num_returns=1, timeout=None):
        if not handles:
            return [], []
        k = _check_num_returns(num_returns, len(handles))
        return ray.wait(list(handles), num_returns=k, timeout=timeout)

    def result(self, handle):
        try:
            return ray.get(handle)
        except ray.exceptions.RayError as err:
            raise WorkerFailure(f"Ray task failed: {type(err).__name__}") from err

    def cancel(self, handles):
        for h in handles:
            try:
                ray.cancel(h, force=False)
            except (ray.exceptions.RayError, ValueError, TypeError):
                pass  # already finished or gone: nothing to cancel

    def now(self):
        return time.perf_counter() - self._t0

    def shutdown(self):
        if self._owns:
            ray.shutdown()
            self._owns = False
