"""Secure iterative sketching for distributed least squares (arXiv 2308.04185).

The master encodes ``[A b]`` once with a random transform ``Pi`` and hands worker ``i``
the row block ``(Pi A)_i, (Pi b)_i``; no worker sees ``A`` or ``b`` in the clear. At
iteration ``t`` it broadcasts ``theta``; worker ``i`` returns the block gradient
``g_i = (Pi A)_i^T ((Pi A)_i theta - (Pi b)_i)``; the master keeps the first ``q``
responders ``I_t`` and steps along ``g = (K/q) sum_{i in I_t} g_i``. With ``Pi``
orthonormal, ``g`` is the gradient of a block-sampled sketch of the problem, unbiased for
the full gradient, and a fresh responder set each iteration makes this *iterative
sketching*.

Encodings (``sketch=``):

- "block-srht": ``Pi = H D / sqrt(L)`` (Hadamard times random signs; blocks of its rows
  sampled by the responders = block SRHT).
- "garbled-block-srht": ``Pi = P_out H D P_in / sqrt(L)`` with secret random row
  permutations before and after (our reading of the paper's garbling: the key space grows
  from ``2^L`` sign patterns to ``(L!)^2 2^L``, and the blocks become random row subsets).
- "haar": a Haar-random orthogonal ``Pi``.
- "gaussian": i.i.d. ``N(0, 1/L)`` entries. Not orthonormal, so the iterates converge to
  the solution of the Gaussian-sketched problem ``min ||Pi (A theta - b)||`` instead.
- "uncoded": ``Pi = I``, plain block sampling (the insecure baseline).

Convergence: the block gradients do not vanish at the solution unless ``b`` lies in the
range of ``A``, so with ``q < K`` the last iterate hovers around ``theta*`` at a distance
proportional to the residual; the tail (Polyak-Ruppert) average, returned by default
when ``q < K``, converges to ``theta*``. With ``b`` in the range of ``A`` (or ``q = K``) the iterates
converge linearly.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass, field

import numpy as np
import torch

from mrsolve.distributed.executors import Executor, WorkerFailure, make_executor
from mrsolve.distributed.stragglers import DelaySpec, check_failures, draw_delays
from mrsolve.solvers.sketching import (
    SeedLike,
    make_generator,
    next_pow2,
    random_orthogonal,
    random_signs,
    randomized_hadamard,
)
from mrsolve.solvers.validation import (
    check_choice,
    check_finite,
    check_int,
    check_positive,
    resolve_device,
)

SECURE_SKETCHES = ("block-srht", "garbled-block-srht", "haar", "gaussian", "uncoded")
STEPS = ("fixed", "adaptive")


def encode_blocks(
    a: torch.Tensor, b: torch.Tensor, workers: int, sketch: str, seed: SeedLike = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode ``[A b]`` and split it into one row block per worker.

    Args:
        a: ``(n, d)``; b: ``(n,)``; workers: ``K``; sketch: one of ``SECURE_SKETCHES``.

    Returns:
        ``(K, r, d)`` blocks of ``Pi A`` and ``(K, r)`` blocks of ``Pi b`` (``K r = L >= n``).
    """
    check_choice("sketch", sketch, SECURE_SKETCHES)
    n, d = a.shape
    g = make_generator(seed)
    ab = torch.cat([a, b.unsqueeze(1)], dim=1)
    if sketch in ("block-srht", "garbled-block-srht"):
        size = next_pow2(max(n, workers))
        if size % workers:
            raise ValueError(f"workers must be a power of two for sketch={sketch!r}, got {workers}")
        signs = random_signs(size, g).to(a.device)
        if sketch == "block-srht":
            enc = randomized_hadamard(ab, signs)
        else:
            perm_in = torch.randperm(size, generator=g).to(a.device)
            perm_out = torch.randperm(size, generator=g).to(a.device)
            enc = randomized_hadamard(ab, signs, perm_in)[perm_out]
    else:
        size = workers * math.ceil(n / workers)
        padded = torch.cat([ab, ab.new_zeros((size - n, d + 1))])
        if sketch == "haar":
            enc = random_orthogonal(size, g, a.device, torch.float64).to(a.dtype) @ padded
        elif sketch == "gaussian":
            pi = torch.randn(size, size, generator=g, dtype=torch.float64) / math.sqrt(size)
            enc = pi.to(device=a.device, dtype=a.dtype) @ padded
        else:
            enc = padded
    blocks = enc.reshape(workers, size // workers, d + 1)
    return blocks[..., :d].contiguous(), blocks[..., d].contiguous()


def encoding_matrix(n: int, workers: int, sketch: str, seed: int) -> torch.Tensor:
    """The worker blocks ``(K, r, n)`` of ``Pi`` itself: what :func:`encode_blocks` with the
    same int ``seed`` applies to the ``n`` data rows."""
    eye = torch.eye(n, dtype=torch.float64)
    return encode_blocks(eye, torch.zeros(n, dtype=torch.float64), workers, sketch, seed)[0]


def leakage(pi_blocks: torch.Tensor) -> float:
    """Largest share of one data row in one worker row, ``max_ij |Pi_ij| / ||Pi_i||``.

    1 means some worker holds a (scaled) row of ``A`` in the clear; ``1/sqrt(n)`` is the
    floor, reached by the Hadamard encodings (every row mixes all data rows equally).
    """
    rows = pi_blocks.reshape(-1, pi_blocks.shape[-1])
    norms = rows.norm(dim=1)
    keep = norms > 0
    return float((rows[keep].abs().max(dim=1).values / norms[keep]).max())


def _block_gradient(block: tuple[torch.Tensor, torch.Tensor], theta: torch.Tensor):
    a_i, b_i = block
    return a_i.T @ (a_i @ theta - b_i)


@dataclass
class SecureReport:
    """Per-iteration record of a secure least-squares run.

    ``iterates`` is ``(iters + 1, d)`` (the last iterates, not averaged); ``responders[t]``
    are the workers whose gradients were used at iteration ``t``.
    """

    sketch: str
    workers: int
    responders_per_iteration: int
    step: str
    iterates: torch.Tensor
    step_sizes: list[float] = field(default_factory=list)
    responders: list[list[int]] = field(default_factory=list)
    failed: list[list[int]] = field(default_factory=list)
    averaged_from: int = 0
    elapsed: float = 0.0
    leakage: float = 1.0


def secure_lstsq(
    A,
    b,
    workers: int = 8,
    responders: int | None = None,
    sketch: str = "block-srht",
    iters: int = 100,
    step: str = "adaptive",
    step_size: float | None = None,
    average: bool | None = None,
    executor: Executor | str | None = None,
    delays: DelaySpec = None,
    fail: Collection[int] = (),
    seed: SeedLike = 0,
    device: str | torch.device | None = None,
):
    """Least squares ``min ||A theta - b||`` by secure iterative sketching over ``workers``.

    Args:
        A: ``(n, d)`` real matrix (numpy or torch); b: ``(n,)``.
        workers: ``K`` workers, each holding one encoded row block.
        responders: ``q``, gradients used per iteration (default ``K // 2``); the first
            ``q`` to answer are kept, the rest cancelled.
        sketch: the encoding, one of ``SECURE_SKETCHES``.
        iters: number of iterations.
        step: "fixed" (``step_size``, default ``1 / ||A||_2^2``) or "adaptive" (exact line
            search on the sketched objective, with the responders' block Gram matrices the
            master kept from encoding).
        average: return the average of the iterates of the second half (Polyak-Ruppert)
            instead of the last iterate; default: only when ``responders < workers``
            (with every gradient in, the last iterate converges linearly).
        executor, delays, fail: as in :func:`~mrsolve.distributed.coded_matmul.coded_matmul`;
            delays are drawn afresh every iteration, failed workers stay dead.
        seed: seed of the encoding and of the delay draws.
        device: where the master computes (default: where ``A`` is).

    Returns:
        ``(theta, report)``: ``theta`` ``(d,)`` (numpy if ``A`` was numpy) and a
        :class:`SecureReport`.
    """
    a, b_t, was_np = _check_problem(A, b, device)
    d = a.shape[1]
    check_int("workers", workers)
    q = max(1, workers // 2) if responders is None else responders
    if isinstance(q, bool) or not isinstance(q, int) or not 1 <= q <= workers:
        raise ValueError(f"responders must be an int in [1, workers={workers}], got {q!r}")
    check_int("iters", iters)
    check_choice("step", step, STEPS)
    dead = check_failures(fail, workers)
    g = make_generator(seed)
    enc_seed = int(torch.randint(0, 2**62, (1,), generator=g))
    blocks_a, blocks_b = encode_blocks(a, b_t, workers, sketch, enc_seed)
    rng = make_generator(g, "numpy")
    if step == "fixed":
        eta = (
            1.0 / float(torch.linalg.matrix_norm(a, ord=2)) ** 2
            if step_size is None
            else check_positive("step_size", step_size)
        )
    else:
        grams = blocks_a.transpose(1, 2) @ blocks_a  # (K, d, d): no extra round trip needed
    report = SecureReport(
        sketch, workers, q, step, torch.zeros(iters + 1, d, dtype=a.dtype, device=a.device)
    )
    report.leakage = leakage(encoding_matrix(a.shape[0], workers, sketch, enc_seed))
    ex, owned = make_executor(executor)
    try:
        refs = [ex.put((blocks_a[i], blocks_b[i])) for i in range(workers)]
        t0 = ex.now()
        theta = torch.zeros(d, dtype=a.dtype, device=a.device)
        for t in range(iters):
            got, grads, failed = _first_responders(ex, refs, theta, q, delays, dead, rng)
            report.responders.append(got)
            report.failed.append(failed)
            if not got:
                raise RuntimeError(f"no worker answered at iteration {t} (failed: {failed})")
            grad = torch.stack(grads).sum(dim=0) * (workers / len(got))
            if step == "adaptive":
                curv = float(grad @ (grams[got].sum(dim=0) @ grad)) * workers / len(got)
                gnorm2 = float(grad @ grad)
                eta = gnorm2 / curv if curv > 0 else 0.0
            report.step_sizes.append(eta)
            theta = theta - eta * grad
            report.iterates[t + 1] = theta
        report.elapsed = ex.now() - t0
    finally:
        if owned:
            ex.shutdown()
    if average or (average is None and q < workers):
        report.averaged_from = iters // 2 + 1
        theta = report.iterates[report.averaged_from :].mean(dim=0)
    return (theta.cpu().numpy() if was_np else theta), report


def _first_responders(ex: Executor, refs, theta, q, delays, dead, rng):
    k = len(refs)
    delay = draw_delays(delays, k, rng)
    handles = [
        ex.submit(_block_gradient, refs[i], theta, delay=float(delay[i]), fail=i in dead)
        for i in range(k)
    ]
    worker_of = {h: i for i, h in enumerate(handles)}
    got, grads, failed = [], [], []
    pending = handles
    while pending and len(got) < q:
        done, pending = ex.wait(pending, num_returns=q - len(got))
        for h in done:
            try:
                grads.append(torch.as_tensor(ex.result(h)).to(theta.device))
                got.append(worker_of[h])
            except WorkerFailure:
                failed.append(worker_of[h])
    ex.cancel(pending)
    return got, grads, failed


def _check_problem(A, b, device):
    tensors = []
    was_np = isinstance(A, np.ndarray)
    for name, x in (("A", A), ("b", b)):
        if isinstance(x, np.ndarray):
            x = torch.from_numpy(np.ascontiguousarray(x))
        elif not isinstance(x, torch.Tensor):
            raise TypeError(f"{name} must be a numpy array or torch tensor, got {type(x).__name__}")
        if x.is_complex() or not x.is_floating_point():
            raise TypeError(f"{name} must be real floating point, got {x.dtype}")
        check_finite(name, x)
        tensors.append(x)
    a, b_t = tensors
    if a.dim() != 2:
        raise ValueError(f"A must be a 2-D matrix, got shape {tuple(a.shape)}")
    if b_t.shape != (a.shape[0],):
        raise ValueError(f"b must have shape ({a.shape[0]},) to match A, got {tuple(b_t.shape)}")
    dev = a.device if device is None else resolve_device(device)
    return a.to(dev), b_t.to(device=dev, dtype=a.dtype), was_np
