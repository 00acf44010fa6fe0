"""Executors: submit tasks to workers, wait for the first k of n, cancel the rest.

One small interface, three backends:

- :class:`SimulatedExecutor` runs each task at once in the caller's thread and orders
  completions by a *virtual* clock (the injected delay). Deterministic and fast: the
  default of the algorithms and of the benchmarks' convergence studies.
- :class:`ThreadExecutor` runs tasks on a thread pool with real (interruptible) sleeps.
- :class:`~mrsolve.distributed.ray_executor.RayExecutor` runs Ray tasks; an injected
  failure really kills the worker process. Ray is imported only there.

Stragglers are injected per task: ``submit(fn, *args, delay=seconds, fail=bool)``; the
task sleeps ``delay`` seconds, then dies if ``fail`` else returns ``fn(*args)``.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from mrsolve.solvers.validation import check_positive


class WorkerFailure(RuntimeError):
    """A task whose worker died or raised; ``executor.result`` raises it."""


class Executor(ABC):
    """Submit tasks, wait for the first ``num_returns`` of them, cancel the rest.

    Handles returned by ``submit`` are opaque and hashable. ``now()`` is the executor's
    clock in seconds (virtual for :class:`SimulatedExecutor`).
    """

    def put(self, obj: Any) -> Any:
        """Store ``obj`` once for many tasks (Ray object store); returns what to pass to tasks."""
        return obj

    @abstractmethod
    def submit(self, fn: Callable, *args: Any, delay: float = 0.0, fail: bool = False) -> Any:
        """Run ``fn(*args)`` on a worker after ``delay`` seconds; ``fail=True`` kills it instead."""

    @abstractmethod
    def wait(
        self, handles: Sequence[Any], num_returns: int = 1, timeout: float | None = None
    ) -> tuple[list[Any], list[Any]]:
        """Block until ``num_returns`` of ``handles`` finished (or failed) or ``timeout`` passed.

        Returns ``(done, pending)``; ``done`` may hold more or (on timeout) fewer than asked.
        """

    @abstractmethod
    def result(self, handle: Any) -> Any:
        """The value of a finished task; raises :class:`WorkerFailure` if it failed."""

    @abstractmethod
    def cancel(self, handles: Sequence[Any]) -> None:
        """Stop the given tasks (running ones are interrupted where the backend allows)."""

    @abstractmethod
    def now(self) -> float:
        """Seconds on the executor's clock."""

    @abstractmethod
    def shutdown(self) -> None:
        """Release the workers."""

    def __enter__(self) -> Executor:
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()


def _check_num_returns(num_returns: int, n: int) -> int:
    if isinstance(num_returns, bool) or not isinstance(num_returns, int) or num_returns < 1:
        raise ValueError(f"num_returns must be an int >= 1, got {num_returns!r}")
    return min(num_returns, n)


def wait_futures(
    futures: Sequence[cf.Future], num_returns: int = 1, timeout: float | None = None
) -> set[cf.Future]:
    """The finished ``futures`` once ``num_returns`` of them finished or ``timeout`` passed.

    ``concurrent.futures.wait`` knows only "first" and "all"; this waits for the first k.
    Raises ValueError for ``num_returns`` not an int >= 1.
    """
    if not futures:
        return set()
    k = _check_num_returns(num_returns, len(futures))
    deadline = None if timeout is None else time.perf_counter() + timeout
    done: set[cf.Future] = set()
    while len(done) < k:
        left = None if deadline is None else max(0.0, deadline - time.perf_counter())
        finished, _ = cf.wait(
            [f for f in futures if f not in done], timeout=left, return_when=cf.FIRST_COMPLETED
        )
        if not finished:
            break
        done |= finished
    return done


# -- in-process, virtual clock --------------------------------------------------------------


@dataclass(eq=False)
class _SimTask:
    finish: float
    value: Any = None
    error: BaseException | None = None
    cancelled: bool = False


class SimulatedExecutor(Executor):
    """Runs tasks synchronously at ``submit``; completion order follows a virtual clock.

    A task submitted at virtual time ``t`` with ``delay`` finishes at ``t + delay`` (compute
    time is not counted, so runs are deterministic); a failing task fails at that time.
    ``wait`` advances the clock to the last completion it reports (or by ``timeout``).
    """

    def __init__(self) -> None:
        self._now = 0.0

    def submit(self, fn, *args, delay=0.0, fail=False):
        delay = check_positive("delay", delay, allow_zero=True)
        task = _SimTask(finish=self._now + delay)
        if fail:
            task.error = WorkerFailure("injected worker failure")
        else:
            try:
                task.value = fn(*args)
            except Exception as err:  # a raising task is a failed worker, as on a cluster
                task.error = err
        return task

    def wait(self, handles, num_returns=1, timeout=None):
        live = [h for h in handles if not h.cancelled]
        if not live:
            return [], list(handles)
        k = _check_num_returns(num_returns, len(live))
        order = sorted(live, key=lambda h: h.finish)
        horizon = order[k - 1].finish
        if timeout is not None:
            horizon = min(horizon, self._now + check_positive("timeout", timeout, True))
        done = [h for h in order if h.finish <= horizon]
        self._now = max(self._now, horizon)
        return done, [h for h in handles if h not in done]

    def result(self, handle):
        if handle.error is not None:
            raise WorkerFailure(str(handle.error)) from handle.error
        return handle.value

    def cancel(self, handles):
        for h in handles:
            h.cancelled = True

    def now(self):
        return self._now

    def shutdown(self):
        """Nothing to release: tasks ran in the caller's thread."""


# -- in-process, real threads --------------------------------------------------------------


def run_task(
    fn: Callable, args: tuple, delay: float, fail: bool, sleep: Callable[[float], Any]
) -> Any:
    """Sleep ``delay`` (``sleep`` returns True when interrupted), then fail or return ``fn(*args)``."""
    if delay > 0 and sleep(delay):
        raise WorkerFailure("cancelled")
    if fail:
        raise WorkerFailure("injected worker failure")
    return fn(*args)


@dataclass(eq=False)
class _ThreadTask:
    future: cf.Future
    stop: threading.Event = field(default_factory=threading.Event)


class ThreadExecutor(Executor):
    """A ``concurrent.futures`` thread pool; delays are real sleeps that ``cancel`` interrupts.

    Torch releases the GIL inside its kernels, so matrix products run in parallel.
    An injected failure raises inside the task (a thread cannot be killed).
    """

    def __init__(self, max_workers: int = 64) -> None:
        if isinstance(max_workers, bool) or not isinstance(max_workers, int) or max_workers < 1:
            raise ValueError(f"max_workers must be an int >= 1, got {max_workers!r}")
        self._pool = cf.ThreadPoolExecutor(max_workers=max_workers)
        self._t0 = time.perf_counter()

    def submit(self, fn, *args, delay=0.0, fail=False):
        delay = check_positive("delay", delay, allow_zero=True)
        stop = threading.Event()
        fut = self._pool.submit(run_task, fn, args, delay, bool(fail), stop.wait)
        return _ThreadTask(fut, stop)

    def wait(self, handles, num_returns=1, timeout=None):
        done = wait_futures([h.future for h in handles], num_returns, timeout)
        return [h for h in handles if h.future in done], [
            h for h in handles if h.future not in done
        ]

    def result(self, handle):
        try:
            return handle.future.result()
        except WorkerFailure:
            raise
        except Exception as err:
            raise WorkerFailure(f"task raised {type(err).__name__}: {err}") from err

    def cancel(self, handles):
        for h in handles:
            h.stop.set()
            h.future.cancel()

    def now(self):
        return time.perf_counter() - self._t0

    def shutdown(self):
        self._pool.shutdown(wait=False, cancel_futures=True)


EXECUTORS = ("simulated", "threads", "ray")


def make_executor(executor: Executor | str | None) -> tuple[Executor, bool]:
    """Resolve ``executor`` (an instance, a name from ``EXECUTORS`` or None -> simulated).

    Returns ``(executor, owned)``; ``owned`` is True when the caller should shut it down.
    """
    if isinstance(executor, Executor):
        return executor, False
    if executor is None or executor == "simulated":
        return SimulatedExecutor(), True
    if executor == "threads":
        return ThreadExecutor(), True
    if executor == "ray":
        from mrsolve.distributed.ray_executor import RayExecutor

        return RayExecutor(), True
    raise ValueError(f"executor must be an Executor or one of {list(EXECUTORS)}, got {executor!r}")
