"""Run a row-wise linear map on coded blocks over an executor, stop as soon as it decodes.

``run_coded`` is the master loop shared by coded matrix multiplication and the
zeroth-order example: encode the data blocks, submit one task per worker (with its
injected delay or failure), collect answers one at a time, stop when the code decodes
(or at ``timeout``, or when nothing is left to wait for), cancel the rest, and decode
whatever can be decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from mrsolve.distributed.codes import Code
from mrsolve.distributed.executors import Executor, WorkerFailure
from mrsolve.distributed.stragglers import DelaySpec, check_failures, draw_delays


@dataclass
class CodedRun:
    """What the master got back.

    Attributes:
        outputs: ``(k, *out_block)`` decoded data-block outputs (zero where not recovered).
        recovered: boolean ``(k,)`` mask of recovered data blocks.
        answered: workers whose result arrived, in arrival order.
        arrival_times: executor-clock seconds from submission to each arrival.
        failed: workers that died or raised.
        cancelled: workers still running when the master stopped.
        elapsed: executor-clock seconds from submission to the stop.
        decode_seconds: wall-clock seconds spent decoding.
    """

    outputs: torch.Tensor
    recovered: np.ndarray
    answered: list[int] = field(default_factory=list)
    arrival_times: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    elapsed: float = 0.0
    decode_seconds: float = 0.0

    @property
    def decoded(self) -> bool:
        return bool(self.recovered.all())


def run_coded(
    fn: Callable,
    blocks: torch.Tensor,
    code: Code,
    executor: Executor,
    extra_args: Sequence = (),
    delays: DelaySpec = None,
    fail: Collection[int] = (),
    timeout: float | None = None,
    rng: np.random.Generator | None = None,
) -> CodedRun:
    """Compute ``fn(block, *extra_args)`` for every data block through ``code``.

    Args:
        fn: a map linear in its first argument (rows of a block), e.g. ``X -> X @ B``.
        blocks: ``(k, *block)`` data blocks.
        code: the erasure code (``code.k`` must equal ``len(blocks)``).
        executor: where the worker tasks run.
        extra_args: further arguments of ``fn``, the same for every worker (stored once
            with ``executor.put``).
        delays: injected delay per worker: a model, ``n`` seconds, or None.
        fail: indices of workers that die after their delay.
        timeout: stop waiting after this many executor-clock seconds.
        rng: generator for the delay model.
    """
    n = code.n
    fail = check_failures(fail, n)
    delay = draw_delays(delays, n, rng if rng is not None else np.random.default_rng())
    coded = code.encode(blocks)
    shared = [executor.put(a) for a in extra_args]
    t0 = executor.now()
    handles = [
        executor.submit(fn, executor.put(coded[j]), *shared, delay=float(delay[j]), fail=j in fail)
        for j in range(n)
    ]
    worker_of = {h: j for j, h in enumerate(handles)}
    known = np.zeros(n, dtype=bool)
    results: dict[int, torch.Tensor] = {}
    run = CodedRun(outputs=torch.empty(0), recovered=np.zeros(code.k, dtype=bool))
    pending = list(handles)
    while pending and not code.decodable(known):
        left = None if timeout is None else timeout - (executor.now() - t0)
        if left is not None and left <= 0:
            break
        done, pending = executor.wait(pending, num_returns=1, timeout=left)
        if not done:
            break
        for h in done:
            j = worker_of[h]
            try:
                results[j] = torch.as_tensor(executor.result(h))
            except WorkerFailure:
                run.failed.append(j)
                continue
            known[j] = True
            run.answered.append(j)
            run.arrival_times.append(executor.now() - t0)
    run.elapsed = executor.now() - t0
    executor.cancel(pending)
    run.cancelled = sorted(worker_of[h] for h in pending)
    tic = time.perf_counter()
    run.outputs, run.recovered = _decode(code, results, known, blocks)
    run.decode_seconds = time.perf_counter() - tic
    return run


def _decode(code: Code, results: dict, known: np.ndarray, like: torch.Tensor):
    if not results:  # nothing arrived: no output shape known yet
        empty = torch.zeros((code.k, 0), dtype=like.dtype, device=like.device)
        return empty, np.zeros(code.k, dtype=bool)
    sample = next(iter(results.values()))
    y = sample.new_zeros((code.n, *sample.shape))
    for j, out in results.items():
        y[j] = out.to(y.device)
    return code.decode(y, known)
