"""Black-box (zeroth-order) optimization with coded workers (an application in arXiv 2309.00682).

The gradient of a black-box ``f`` is estimated from random directional derivatives,
``g = (1/M) sum_i v_i (v_i . grad f(x))`` with ``v_i ~ N(0, I)``. The directional
derivative is linear in the direction, so the directions can be *coded*: worker ``j``
receives coded directions (linear combinations of data-block directions), evaluates ``f``
at ``x +- mu v`` for each and returns central differences; decoding recovers the
derivatives along the original directions. Any set of recovered blocks still gives an
unbiased gradient estimate (the directions are i.i.d.), so a straggler only costs
directions, never the iteration.
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import numpy as np
import torch

from mrsolve.distributed.coded_matmul import make_code
from mrsolve.distributed.coded_run import run_coded
from mrsolve.distributed.executors import Executor, make_executor
from mrsolve.distributed.stragglers import DelaySpec
from mrsolve.solvers.sketching import SeedLike, make_generator
from mrsolve.solvers.validation import check_finite, check_int, check_positive


def directional_derivatives(
    directions: torch.Tensor, f: Callable[[torch.Tensor], float], x: torch.Tensor, mu: float
) -> torch.Tensor:
    """Central differences ``(f(x + mu v) - f(x - mu v)) / (2 mu)`` for each row ``v``: ``(r,)``.

    Exact for quadratic ``f``; error ``O(mu^2)`` for smooth ``f``.
    """
    vals = [(float(f(x + mu * v)) - float(f(x - mu * v))) / (2 * mu) for v in directions]
    return torch.tensor(vals, dtype=directions.dtype)


@dataclass
class ZerothOrderReport:
    """Per-iteration record: objective values, recovered directions, decode status, and the
    executor-clock seconds each iteration waited for its workers."""

    values: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    directions_used: list[int] = field(default_factory=list)
    decoded: list[bool] = field(default_factory=list)


def coded_zeroth_order(
    f: Callable[[torch.Tensor], float],
    x0,
    iters: int = 50,
    lr: float = 0.1,
    workers: int = 8,
    code: str = "polar",
    k: int | None = None,
    directions_per_block: int = 2,
    mu: float = 1e-4,
    executor: Executor | str | None = None,
    delays: DelaySpec = None,
    fail: Collection[int] = (),
    timeout: float | None = None,
    seed: SeedLike = 0,
) -> tuple[torch.Tensor, ZerothOrderReport]:
    """Minimize a black-box ``f`` by gradient descent on coded random-direction estimates.

    Args:
        f: objective taking a ``(d,)`` tensor and returning a float (never differentiated).
        x0: ``(d,)`` start (numpy or torch).
        iters: number of iterations; lr: step size.
        workers, code, k, executor, delays, fail, timeout: as in
            :func:`~mrsolve.distributed.coded_matmul.coded_matmul`; each iteration uses
            ``k * directions_per_block`` directions.
        mu: finite-difference step.
        seed: seed of the directions and delays.

    Returns:
        ``(x, report)``.
    """
    x = torch.as_tensor(np.asarray(x0) if not isinstance(x0, torch.Tensor) else x0)
    if x.dim() != 1 or not x.is_floating_point():
        raise ValueError(f"x0 must be a real 1-D vector, got {x.dtype} {tuple(x.shape)}")
    check_finite("x0", x)
    lr = check_positive("lr", lr)
    mu = check_positive("mu", mu)
    check_int("iters", iters)
    if directions_per_block < 1:
        raise ValueError(f"directions_per_block must be >= 1, got {directions_per_block}")
    code_obj = make_code(code, workers, k, seed=0)
    g = make_generator(seed)
    rng = make_generator(g, "numpy")
    report = ZerothOrderReport()
    ex, owned = make_executor(executor)
    try:
        for _ in range(iters):
            v = torch.randn(code_obj.k, directions_per_block, x.shape[0], generator=g)
            v = v.to(x.dtype)
            run = run_coded(
                directional_derivatives, v, code_obj, ex, (f, x, mu), delays, fail, timeout, rng
            )
            used = torch.from_numpy(run.recovered)
            report.decoded.append(run.decoded)
            report.seconds.append(run.elapsed)
            report.directions_used.append(int(used.sum()) * directions_per_block)
            if used.any():
                dirs = v[used].reshape(-1, x.shape[0])
                derivs = run.outputs[used].reshape(-1)
                x = x - lr * (dirs.T @ derivs) / dirs.shape[0]
            report.values.append(float(f(x)))
    finally:
        if owned:
            ex.shutdown()
    return x, report
