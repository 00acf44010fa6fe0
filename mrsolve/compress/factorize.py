"""Low-precision low-rank factorizations: LPLR, LPLR-SVD, quantized truncated SVD, and NQ.

LPLR (Saha, Srivastava, Pilanci, arXiv:2310.11028) for ``A`` of shape ``(n, d)``:

1. sketch the range of ``A``: ``Y = A S`` with a random ``(d, m)`` sketch ``S``
   (optionally ``q`` power iterations ``Y <- A A^T Y``);
2. ``L = Q_B1(Y)``;
3. ``W = argmin_W ||L W - A||_F``, ``R = Q_B2(W)``; return ``L R``.

Fitting ``W`` to the already quantized ``L`` is what lets the second factor absorb the
error of the first. Baselines at the same bit budget: DSVD quantizes the truncated SVD
factors ``Q_B1(U_r)``, ``Q_B2(Sigma_r V_r^T)``; LPLR-SVD runs LPLR on the rank-``r``
truncation ``U_r Sigma_r`` in place of ``A S`` (the SVD as the sketch); NQ quantizes
``A`` itself.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from mrsolve.compress._checks import as_real_tensor, check_bits, check_rank
from mrsolve.compress.base import Compressed
from mrsolve.compress.quantize import QuantizedTensor, quantize
from mrsolve.solvers.sketching import SKETCHES, SeedLike, Sketch, make_generator, make_sketch
from mrsolve.solvers.validation import check_choice, check_positive

METHODS = ("nq", "dsvd", "lplr", "lplr-svd")


@dataclass(frozen=True, eq=False)
class LowRankFactorization(Compressed):
    """``A ~ L R`` with quantized factors ``L`` ``(n, r)`` and ``R`` ``(r, d)``.

    Attributes:
        left: quantized ``L``.
        right: quantized ``R``.
        method: the algorithm that produced it (one of ``METHODS``).
    """

    left: QuantizedTensor
    right: QuantizedTensor
    method: str
    as_numpy: bool = False

    @property
    def shape(self) -> tuple[int, int]:
        return (self.left.shape[0], self.right.shape[1])

    @property
    def rank(self) -> int:
        return self.left.shape[1]

    @property
    def bits(self) -> int:
        return self.left.bits + self.right.bits

    def _dense(self) -> torch.Tensor:
        return self.left._dense() @ self.right._dense()


def rank_for_budget(
    shape: tuple[int, int], bits_per_entry: float, bits_left: int, bits_right: int
) -> int:
    """Rank ``r = floor(n d b / (n B1 + d B2))`` whose factors fit ``b`` bits per entry of ``A``.

    Counts the codes only (the per-block scales are a few extra words); capped at
    ``min(n, d)``. Raises ValueError when the budget does not allow rank 1.
    """
    try:
        n, d = (int(s) for s in shape)
    except (TypeError, ValueError) as err:
        raise TypeError(f"shape must be a pair of ints (n, d), got {shape!r}") from err
    if n < 1 or d < 1:
        raise ValueError(f"shape must have positive sizes, got {(n, d)}")
    b = check_positive("bits_per_entry", bits_per_entry)
    b1, b2 = check_bits("bits_left", bits_left), check_bits("bits_right", bits_right)
    rank = math.floor(n * d * b / (n * b1 + d * b2))
    if rank < 1:
        raise ValueError(
            f"bits_per_entry = {bits_per_entry} is too small for a rank-1 factorization of a"
            f" {n} x {d} matrix with bits_left = {b1}, bits_right = {b2}"
            f" (needs >= {(n * b1 + d * b2) / (n * d):.4g})"
        )
    return min(rank, n, d)


def naive_quantize(
    a: np.ndarray | torch.Tensor,
    bits: int,
    *,
    rounding: str = "nearest",
    block_size: int | None = None,
    seed: SeedLike = None,
    device: str | torch.device | None = None,
) -> QuantizedTensor:
    """NQ baseline: quantize every entry of the matrix ``a`` to ``bits`` bits."""
    t, as_numpy = as_real_tensor("A", a, device)
    q = quantize(t, bits, rounding=rounding, block_size=block_size, seed=seed)
    return dataclasses.replace(q, as_numpy=as_numpy)


def _fit_right(
    a: torch.Tensor,
    y: torch.Tensor,
    bits_left: int,
    bits_right: int,
    method: str,
    rounding: str,
    block_size: int | None,
    generator: torch.Generator,
    as_numpy: bool,
) -> LowRankFactorization:
    """Steps 2-3 of LPLR: ``L = Q_B1(Y)``, ``W = L^+ A``, ``R = Q_B2(W)``."""
    left = quantize(y, bits_left, rounding=rounding, block_size=block_size, seed=generator)
    # pinv (SVD based) rather than lstsq: CUDA's lstsq assumes full column rank, and a
    # coarsely quantized L can be rank deficient
    w = torch.linalg.pinv(left._dense()) @ a
    right = quantize(w, bits_right, rounding=rounding, block_size=block_size, seed=generator)
    return LowRankFactorization(left, right, method, as_numpy=as_numpy)


def _sketch(
    sketch: str | Sketch, d: int, m: int, generator: torch.Generator, like: torch.Tensor
) -> Sketch:
    if isinstance(sketch, Sketch):
        if (sketch.d, sketch.m) != (d, m):
            raise ValueError(f"sketch must be {d} x {m} here, got {sketch.d} x {sketch.m}")
        return sketch
    if not isinstance(sketch, str):
        raise TypeError(f"sketch must be one of {SKETCHES} or a Sketch, got {sketch!r}")
    check_choice("sketch", sketch, SKETCHES)
    return make_sketch(sketch, d, m, seed=generator, device=like.device, dtype=like.dtype)


def lplr(
    a: np.ndarray | torch.Tensor,
    rank: int,
    bits_left: int,
    bits_right: int,
    *,
    sketch: str | Sketch = "gaussian",
    power_iterations: int = 0,
    rounding: str = "nearest",
    block_size: int | None = None,
    seed: SeedLike = None,
    device: str | torch.device | None = None,
) -> LowRankFactorization:
    """LPLR: randomized low-rank, low-precision factorization ``A ~ L R``.

    Args:
        a: ``(n, d)`` real matrix (numpy or torch).
        rank: sketch size ``m`` = inner dimension of the factors, ``1 <= m <= min(n, d)``.
        bits_left: bits per entry of ``L`` (``B1``).
        bits_right: bits per entry of ``R`` (``B2``).
        sketch: one of ``mrsolve.solvers.sketching.SKETCHES`` or a ``(d, m)`` :class:`Sketch`.
        power_iterations: ``q`` >= 0 subspace iterations ``Y <- A A^T Y`` (re-orthonormalized).
        rounding: ``"nearest"`` or ``"stochastic"`` (unbiased, as in the paper's analysis).
        block_size: entries per quantization scale; None = one scale per factor.
        seed: int, ``torch.Generator`` or None (sketch and stochastic rounding).
        device: where to compute; None keeps the input's device ("auto" picks CUDA).

    Returns:
        :class:`LowRankFactorization` (``method="lplr"``).
    """
    t, as_numpy = as_real_tensor("A", a, device)
    n, d = t.shape
    rank = check_rank(rank, (n, d))
    b1, b2 = check_bits("bits_left", bits_left), check_bits("bits_right", bits_right)
    if isinstance(power_iterations, bool) or not isinstance(power_iterations, numbers.Integral):
        raise TypeError(f"power_iterations must be an integer, got {power_iterations!r}")
    if power_iterations < 0:
        raise ValueError(f"power_iterations must be >= 0, got {power_iterations}")
    g = make_generator(seed)
    y = _sketch(sketch, d, rank, g, t).right(t)
    for _ in range(power_iterations):
        y = t @ (t.T @ torch.linalg.qr(y).Q)
    return _fit_right(t, y, b1, b2, "lplr", rounding, block_size, g, as_numpy)


def _truncated_svd(t: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Rank-``rank`` SVD with a fixed sign convention: each column of ``U`` has its
    largest-magnitude entry positive (scikit-learn's ``svd_flip``).

    LAPACK's signs are arbitrary, and with a min-max quantizer range they change the
    error (Shepp-Logan, 1 bit: DSVD 0.23 with this convention, 0.28 with other signs).
    """
    u, s, vh = torch.linalg.svd(t, full_matrices=False)
    u, s, vh = u[:, :rank], s[:rank], vh[:rank]
    signs = torch.sign(u.gather(0, u.abs().argmax(dim=0, keepdim=True)))
    return u * signs, s, vh * signs.T


def lplr_svd(
    a: np.ndarray | torch.Tensor,
    rank: int,
    bits_left: int,
    bits_right: int,
    *,
    sketch: str | Sketch | None = "gaussian",
    rounding: str = "nearest",
    block_size: int | None = None,
    seed: SeedLike = None,
    device: str | torch.device | None = None,
) -> LowRankFactorization:
    """LPLR-SVD: LPLR with ``Y = U_r Sigma_r S`` (``S`` an ``(r, r)`` sketch) in place of ``A S``.

    ``sketch=None`` uses ``Y = U_r Sigma_r`` itself. Other arguments as in :func:`lplr`.
    """
    t, as_numpy = as_real_tensor("A", a, device)
    rank = check_rank(rank, tuple(t.shape))
    b1, b2 = check_bits("bits_left", bits_left), check_bits("bits_right", bits_right)
    g = make_generator(seed)
    u, s, _ = _truncated_svd(t, rank)
    y = u * s
    if sketch is not None:
        y = _sketch(sketch, rank, rank, g, t).right(y)
    return _fit_right(t, y, b1, b2, "lplr-svd", rounding, block_size, g, as_numpy)


def dsvd(
    a: np.ndarray | torch.Tensor,
    rank: int,
    bits_left: int,
    bits_right: int,
    *,
    rounding: str = "nearest",
    block_size: int | None = None,
    seed: SeedLike = None,
    device: str | torch.device | None = None,
) -> LowRankFactorization:
    """Quantized truncated SVD: ``L = Q_B1(U_r)``, ``R = Q_B2(Sigma_r V_r^T)``."""
    t, as_numpy = as_real_tensor("A", a, device)
    rank = check_rank(rank, tuple(t.shape))
    b1, b2 = check_bits("bits_left", bits_left), check_bits("bits_right", bits_right)
    g = make_generator(seed)
    u, s, vh = _truncated_svd(t, rank)
    left = quantize(u, b1, rounding=rounding, block_size=block_size, seed=g)
    right = quantize(s[:, None] * vh, b2, rounding=rounding, block_size=block_size, seed=g)
    return LowRankFactorization(left, right, "dsvd", as_numpy=as_numpy)


def compress_matrix(
    a: np.ndarray | torch.Tensor,
    bits_per_entry: float,
    *,
    method: str = "lplr",
    bits_left: int = 4,
    bits_right: int = 8,
    **options,
) -> Compressed:
    """Compress ``a`` to about ``bits_per_entry`` bits per entry with one of ``METHODS``.

    NQ uses ``bits_per_entry`` (an integer) bits per entry; the factorizations use the
    rank from :func:`rank_for_budget`. ``options`` go to the method (``seed``,
    ``rounding``, ``block_size``, ``device``, and ``sketch`` for LPLR / LPLR-SVD).
    """
    check_choice("method", method, METHODS)
    if method == "nq":
        b = check_positive("bits_per_entry", bits_per_entry)
        if not b.is_integer():
            raise ValueError(f"bits_per_entry must be a whole number for NQ, got {bits_per_entry}")
        return naive_quantize(a, int(b), **options)
    if not isinstance(a, np.ndarray | torch.Tensor):
        raise TypeError(f"a must be a numpy array or a torch tensor, got {type(a).__name__}")
    shape = tuple(a.shape)
    if len(shape) != 2:
        raise ValueError(f"a must be a 2-D matrix, got shape {shape}")
    rank = rank_for_budget(shape, bits_per_entry, bits_left, bits_right)
    factorize = {"dsvd": dsvd, "lplr": lplr, "lplr-svd": lplr_svd}[method]
    return factorize(a, rank, bits_left, bits_right, **options)
