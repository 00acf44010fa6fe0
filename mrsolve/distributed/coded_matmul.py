"""Straggler-resilient coded matrix multiplication with an anytime estimator.

``coded_matmul(A, B)`` splits the rows of ``A`` into ``k`` data blocks, encodes them
(polar, MDS, replication or uncoded) into one block per worker, lets worker ``j``
compute ``(coded block j) @ B`` and decodes ``A @ B`` as soon as the answers allow.

The sketch (arXiv 2309.00682): the rows of ``A`` are first mixed by a random orthonormal
``Q`` (row-permuted randomized Hadamard ``P H D / sqrt(L)``, or Haar when ``k`` is not a
power of two),
so every data block of ``Q A B`` gives an unbiased estimate of ``A B``:
``E[k Q_b^T Q_b] = I``. From the recovered blocks ``R`` the anytime estimate is
``(k/|R|) sum_{b in R} Q_b^T (Q A B)_b``; its error bar is the finite-population
standard error of the ``|R|`` per-block estimates (exact zero once all blocks are in).
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import torch

from mrsolve.distributed.coded_run import CodedRun, run_coded
from mrsolve.distributed.codes import Code, MDSCode, ReplicationCode, UncodedCode
from mrsolve.distributed.executors import Executor, make_executor
from mrsolve.distributed.polar import PolarCode
from mrsolve.distributed.stragglers import DelaySpec
from mrsolve.solvers.sketching import (
    SeedLike,
    fwht,
    make_generator,
    next_pow2,
    random_orthogonal,
    random_signs,
    randomized_hadamard,
)
from mrsolve.solvers.validation import check_choice, check_finite, resolve_device

CODES = ("polar", "mds", "mds-vandermonde", "replication", "uncoded")


def make_code(
    code: str, workers: int, k: int | None = None, design_erasure: float = 0.25, seed: SeedLike = 0
) -> Code:
    """Build a code by name (``CODES``); ``k`` defaults to ``workers // 2`` (all for uncoded)."""
    check_choice("code", code, CODES)
    if code == "uncoded":
        if k not in (None, workers):
            raise ValueError(f"k must equal workers = {workers} for the uncoded scheme, got {k}")
        return UncodedCode(workers)
    k = max(1, workers // 2) if k is None else k
    if code == "polar":
        return PolarCode(workers, k, design_erasure)
    if code == "replication":
        return ReplicationCode(workers, k)
    return MDSCode(workers, k, "gaussian" if code == "mds" else "vandermonde", seed)


class RowMixer:
    """Random orthonormal ``(L, L)`` transform ``Q`` of zero-padded rows, ``k | L``, ``L >= m``.

    ``Q = P H D / sqrt(L)`` (random row permutation ``P``, Hadamard ``H``, random signs
    ``D``; ``O(L log L)`` per column) when ``k`` divides ``next_pow2(m)``, otherwise a dense
    Haar orthogonal matrix. The permutation matters: contiguous row blocks of a Sylvester
    Hadamard matrix are Kronecker-structured (``H_L = H_k (x) H_{L/k}``), and an estimate
    from half of them is a reflection of the truth (relative error exactly one).
    """

    def __init__(self, m: int, k: int, seed: SeedLike = None, device="cpu") -> None:
        g = make_generator(seed)
        self.m, self.k = m, k
        size = next_pow2(max(m, k))
        if size % k == 0:
            self.size, self.q = size, None
            self.signs = random_signs(size, g).to(device)
            self.perm = torch.randperm(size, generator=g).to(device)
        else:
            self.size = k * math.ceil(m / k)
            self.q = random_orthogonal(self.size, g, device, torch.float64)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Q [x; 0]``: ``(m, ...)`` -> ``(L, ...)``."""
        x = torch.cat([x, x.new_zeros((self.size - x.shape[0], *x.shape[1:]))])
        if self.q is None:
            return randomized_hadamard(x, self.signs)[self.perm]
        return torch.tensordot(self.q.to(x.dtype), x, dims=1)

    def adjoint(self, y: torch.Tensor) -> torch.Tensor:
        """``Q^T y``: ``(L, ...)`` -> ``(L, ...)``."""
        if self.q is None:
            z = torch.empty_like(y)
            z[self.perm] = y
            s = self.signs.to(y.dtype).reshape((-1,) + (1,) * (y.dim() - 1))
            return fwht(z) * s / math.sqrt(self.size)
        return torch.tensordot(self.q.T.to(y.dtype), y, dims=1)


def anytime_estimate(
    mixer: RowMixer, outputs: torch.Tensor, recovered: np.ndarray
) -> tuple[torch.Tensor, float, float]:
    """Unbiased estimate of the unmixed result from the recovered blocks of the mixed one.

    Args:
        mixer: the row mixer used to build the blocks.
        outputs: ``(k, r, ...)`` block outputs (zero where not recovered), ``k r = L``.
        recovered: boolean ``(k,)``.

    Returns:
        ``(estimate (m, ...), error_estimate, relative_error_estimate)``; the error is a
        Frobenius-norm standard error (inf with fewer than two blocks, 0 with all).
    """
    k, r = outputs.shape[0], outputs.shape[1]
    got = int(recovered.sum())
    if got == 0:
        return outputs.new_zeros((mixer.m, *outputs.shape[2:])), math.inf, math.inf
    full = mixer.adjoint(outputs.reshape(k * r, *outputs.shape[2:])) * (k / got)
    # ||k Q_b^T Z_b|| = k ||Z_b|| because the rows of Q_b are orthonormal
    sq = (outputs[torch.from_numpy(recovered)].reshape(got, -1).double() ** 2).sum(dim=1) * k**2
    total = float(full.double().pow(2).sum())
    scale = math.sqrt(float(sq.sum()) / (k * got))  # estimate of ||result||_F
    if got == k:
        err = 0.0
    elif got == 1:
        err = math.inf
    else:
        s2 = max(0.0, (float(sq.sum()) - got * total) / (got - 1))
        err = math.sqrt((1 - got / k) * s2 / got)
    rel = err / scale if scale > 0 else (0.0 if err == 0 else math.inf)
    return full[: mixer.m], err, rel


@dataclass
class CodedReport:
    """Who answered, when, and whether the result is decoded or estimated.

    ``status`` is "decoded" (exact up to rounding), "estimated" (anytime estimate from
    the recovered blocks, with ``error_estimate``) or "partial" (no sketch: the rows of
    unrecovered blocks are zero). Times are executor-clock seconds from submission.
    """

    code: str
    workers: int
    k: int
    status: str
    recovered_blocks: int
    error_estimate: float
    relative_error_estimate: float
    elapsed: float
    decode_seconds: float
    answered: list[int] = field(default_factory=list)
    arrival_times: list[float] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    @property
    def decoded(self) -> bool:
        return self.status == "decoded"


def _to_tensor(name: str, x, device) -> tuple[torch.Tensor, bool]:
    if isinstance(x, np.ndarray):
        t, was_np = torch.from_numpy(np.ascontiguousarray(x)), True
    elif isinstance(x, torch.Tensor):
        t, was_np = x, False
    else:
        raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
    if t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}")
    if t.is_complex() or not t.is_floating_point():
        raise TypeError(f"{name} must be a real floating-point matrix, got {t.dtype}")
    check_finite(name, t)
    return (t if device is None else t.to(resolve_device(device))), was_np


def coded_apply(
    fn,
    a: torch.Tensor,
    *extra_args,
    workers: int | None = None,
    code: str | Code = "polar",
    k: int | None = None,
    executor: Executor | str | None = None,
    delays: DelaySpec = None,
    fail: Collection[int] = (),
    timeout: float | None = None,
    sketch: bool = True,
    seed: SeedLike = 0,
) -> tuple[torch.Tensor, CodedReport]:
    """Compute the row-wise linear map ``fn(a, *extra_args)`` through a coded computation.

    ``fn`` must act on row blocks independently and linearly (``fn(X) = X @ B`` and the
    like). Arguments as in :func:`coded_matmul`. Returns ``(result, report)``.
    """
    if isinstance(code, Code):
        code_obj = code
        if k not in (None, code.k) or workers not in (None, code.n):
            raise ValueError(f"workers and k must match the given code {code!r}")
    else:
        code_obj = make_code(code, 8 if workers is None else workers, k, seed=seed)
    kb = code_obj.k
    m = a.shape[0]
    g = make_generator(seed)
    if sketch:
        mixer = RowMixer(m, kb, g, a.device)
        mixed = mixer.forward(a)
    else:
        mixer = None
        rows = kb * math.ceil(m / kb)
        mixed = torch.cat([a, a.new_zeros((rows - m, *a.shape[1:]))])
    blocks = mixed.reshape(kb, mixed.shape[0] // kb, *a.shape[1:])
    ex, owned = make_executor(executor)
    try:
        rng = make_generator(g, "numpy")
        run = run_coded(fn, blocks, code_obj, ex, extra_args, delays, fail, timeout, rng)
    finally:
        if owned:
            ex.shutdown()
    result, status, err, rel = _assemble(run, mixer, m)
    report = CodedReport(
        code=code_obj.name,
        workers=code_obj.n,
        k=kb,
        status=status,
        recovered_blocks=int(run.recovered.sum()),
        error_estimate=err,
        relative_error_estimate=rel,
        elapsed=run.elapsed,
        decode_seconds=run.decode_seconds,
        answered=run.answered,
        arrival_times=run.arrival_times,
        failed=run.failed,
        cancelled=run.cancelled,
    )
    return result, report


def _assemble(run: CodedRun, mixer: RowMixer | None, m: int):
    out = run.outputs
    if out.shape[-1] == 0 and not run.answered:  # nothing answered at all
        raise RuntimeError(
            f"no worker answered (failed: {run.failed}, cancelled: {run.cancelled}); "
            "raise the timeout or reduce the failures"
        )
    if mixer is None:
        flat = out.reshape(-1, *out.shape[2:])[:m]
        if run.decoded:
            return flat, "decoded", 0.0, 0.0
        return flat, "partial", math.nan, math.nan
    if run.decoded:
        flat = mixer.adjoint(out.reshape(-1, *out.shape[2:]))[:m]
        return flat, "decoded", 0.0, 0.0
    est, err, rel = anytime_estimate(mixer, out, run.recovered)
    return est, "estimated", err, rel


def _matmul(x: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return x @ b


def coded_matmul(
    A,
    B,
    workers: int | None = None,
    code: str | Code = "polar",
    k: int | None = None,
    executor: Executor | str | None = None,
    delays: DelaySpec = None,
    fail: Collection[int] = (),
    timeout: float | None = None,
    sketch: bool = True,
    seed: SeedLike = 0,
    device: str | torch.device | None = None,
):
    """``A @ B`` computed by ``workers`` workers, robust to stragglers and dead workers.

    Args:
        A: ``(m, p)`` real matrix (numpy or torch); its rows are split into ``k`` blocks.
        B: ``(p, q)`` real matrix, sent to every worker.
        workers: number of workers ``n`` (a power of two for polar codes; default 8, or
            the given code's).
        code: "polar", "mds" (Gaussian), "mds-vandermonde", "replication", "uncoded" or a
            :class:`~mrsolve.distributed.codes.Code`.
        k: number of data blocks (default ``workers // 2``).
        executor: an :class:`~mrsolve.distributed.executors.Executor`, "simulated"
            (default), "threads" or "ray".
        delays: injected delay per worker in seconds: a
            :class:`~mrsolve.distributed.stragglers.ShiftedExponential`, ``n`` numbers, or None.
        fail: indices of workers that die (after their delay).
        timeout: stop waiting after this many seconds and return the anytime estimate.
        sketch: mix the rows of ``A`` by a random orthonormal transform first, so that an
            undecodable set of answers still gives an unbiased estimate.
        seed: seed of the mixing, the MDS generator and the delay draws.
        device: where the master computes (default: where ``A`` is).

    Returns:
        ``(C, report)``: ``C`` is ``(m, q)`` (numpy if ``A`` was numpy), ``report`` a
        :class:`CodedReport` (status "decoded" or "estimated" with an error estimate;
        "partial" without the sketch).

    Raises:
        RuntimeError: when no worker answered before the timeout.
    """
    a, a_np = _to_tensor("A", A, device)
    b, _ = _to_tensor("B", B, a.device)
    if a.shape[1] != b.shape[0]:
        raise ValueError(
            f"B must have {a.shape[1]} rows to multiply A of shape {tuple(a.shape)}, "
            f"got shape {tuple(b.shape)}"
        )
    c, report = coded_apply(
        _matmul,
        a,
        b.to(a.dtype),
        workers=workers,
        code=code,
        k=k,
        executor=executor,
        delays=delays,
        fail=fail,
        timeout=timeout,
        sketch=sketch,
        seed=seed,
    )
    return (c.cpu().numpy() if a_np else c), report
