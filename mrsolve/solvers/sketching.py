"""Random sketches: Gaussian, sparse JL, SRHT, block SRHT, Haar; the fast Walsh-Hadamard transform.

Convention: a sketch is a random ``(d, m)`` matrix ``S`` with ``E[S S^T] = I_d``. A tall
matrix ``X`` of shape ``(d, n)`` is compressed to ``S^T X`` of shape ``(m, n)``; a wide
matrix ``Y`` of shape ``(n, d)`` to ``Y S`` of shape ``(n, m)``. The :class:`Sketch`
objects apply ``S^T`` without forming ``S`` where a fast transform exists (SRHT costs
``O(d log d)`` per column instead of ``O(d m)``); ``matrix()`` forms ``S`` explicitly.

Randomness: every constructor takes ``seed`` (an int, a ``torch.Generator`` or None).
Random numbers are drawn on the CPU and moved to ``device``, so a seed gives the same
sketch on every device.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import torch

from mrsolve.solvers.validation import (
    SeedLike,
    check_choice,
    check_int,
    make_generator,
    resolve_device,
)


def next_pow2(n: int) -> int:
    """Smallest power of two >= n (n >= 1)."""
    return 1 << (int(n) - 1).bit_length()


def fwht(x: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Unnormalized fast Walsh-Hadamard transform along ``dim`` (Sylvester ordering).

    Equals ``scipy.linalg.hadamard(n) @ x`` for ``dim=0``; ``n = x.shape[dim]`` must be a
    power of two. Cost ``O(n log n)`` per column. Written here (not taken from a library)
    because neither torch nor scipy ships a fast Hadamard transform for tensors.
    """
    n = x.shape[dim]
    if n < 1 or n & (n - 1):
        raise ValueError(f"x.shape[{dim}] must be a power of two, got {n}")
    y = x.movedim(dim, 0)
    rest = y.shape[1:]
    y = y.reshape(n, -1)
    h = 1
    while h < n:
        # pairs (a, b) at distance h inside blocks of 2h: (a, b) -> (a + b, a - b)
        y = y.reshape(n // (2 * h), 2, h, -1)
        a, b = y[:, 0], y[:, 1]
        y = torch.stack((a + b, a - b), dim=1)
        h *= 2
    return y.reshape(n, *rest).movedim(0, dim)


def randomized_hadamard(
    x: torch.Tensor, signs: torch.Tensor, perm: torch.Tensor | None = None
) -> torch.Tensor:
    """Orthonormal randomized Hadamard transform ``(1/sqrt(n)) H D P x`` along dim 0.

    Args:
        x: ``(d, ...)`` with ``d <= n``; zero-padded to ``n = len(signs)`` (a power of two).
        signs: ``(n,)`` diagonal of ``D`` (entries +-1).
        perm: optional ``(n,)`` row permutation ``P`` applied first (``(P x)_i = x_{perm_i}``).

    Returns:
        ``(n, ...)`` tensor.
    """
    n, d = signs.shape[0], x.shape[0]
    if d > n:
        raise ValueError(f"x.shape[0] must be <= len(signs) = {n}, got {d}")
    if d < n:
        x = torch.cat([x, x.new_zeros((n - d, *x.shape[1:]))], dim=0)
    if perm is not None:
        x = x[perm]
    shape = (n,) + (1,) * (x.dim() - 1)
    return fwht(x * signs.reshape(shape).to(x.dtype), dim=0) / math.sqrt(n)


def random_signs(n: int, generator: torch.Generator) -> torch.Tensor:
    """``(n,)`` float tensor of independent +-1 (Rademacher) entries."""
    return torch.randint(0, 2, (n,), generator=generator).mul_(2).sub_(1).to(torch.float32)


def random_orthogonal(
    n: int, seed: SeedLike = None, device="cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Haar-distributed ``(n, n)`` orthogonal matrix (QR of a Gaussian with sign fix)."""
    check_int("n", n)
    g = make_generator(seed)
    z = torch.randn(n, n, generator=g, dtype=torch.float64)
    q, r = torch.linalg.qr(z)
    # multiplying by sign(diag(R)) makes the distribution exactly Haar (Mezzadri 2007)
    q = q * torch.sign(torch.diagonal(r)).unsqueeze(0)
    return q.to(dtype=dtype, device=resolve_device(device))


class Sketch(ABC):
    """A random ``(d, m)`` sketch ``S`` with ``E[S S^T] = I_d``.

    Subclasses implement ``_apply_t(x)`` = ``S^T x`` for ``x`` of shape ``(d, n)``.
    """

    def __init__(self, d: int, m: int, device="cpu", dtype: torch.dtype = torch.float32) -> None:
        self.d = check_int("d", d)
        self.m = check_int("m", m)
        self.device = resolve_device(device)
        self.dtype = dtype

    @abstractmethod
    def _apply_t(self, x: torch.Tensor) -> torch.Tensor:
        """``S^T x`` for ``x`` of shape ``(d, n)``."""

    def apply_t(self, x: torch.Tensor) -> torch.Tensor:
        """``S^T x``: ``(d,)`` or ``(d, n)`` -> ``(m,)`` or ``(m, n)``."""
        if x.dim() not in (1, 2) or x.shape[0] != self.d:
            raise ValueError(
                f"x must have shape ({self.d},) or ({self.d}, n), got {tuple(x.shape)}"
            )
        vec = x.dim() == 1
        out = self._apply_t(x.reshape(self.d, -1))
        return out.reshape(self.m) if vec else out

    def right(self, y: torch.Tensor) -> torch.Tensor:
        """``y S``: ``(n, d)`` -> ``(n, m)``."""
        if y.dim() != 2 or y.shape[1] != self.d:
            raise ValueError(f"y must have shape (n, {self.d}), got {tuple(y.shape)}")
        return self._apply_t(y.T).T

    def matrix(self) -> torch.Tensor:
        """The explicit ``(d, m)`` matrix ``S``."""
        eye = torch.eye(self.d, dtype=self.dtype, device=self.device)
        return self._apply_t(eye).T.contiguous()


class DenseSketch(Sketch):
    """A sketch stored as an explicit ``(d, m)`` matrix."""

    def __init__(self, s: torch.Tensor) -> None:
        super().__init__(s.shape[0], s.shape[1], s.device, s.dtype)
        self.s = s

    def _apply_t(self, x):
        return self.s.T @ x.to(self.s.dtype)

    def matrix(self) -> torch.Tensor:
        return self.s


class GaussianSketch(DenseSketch):
    """i.i.d. ``N(0, 1/m)`` entries."""

    def __init__(self, d: int, m: int, seed: SeedLike = None, device="cpu", dtype=torch.float32):
        check_int("d", d)
        check_int("m", m)
        g = make_generator(seed)
        s = torch.randn(d, m, generator=g, dtype=torch.float64) / math.sqrt(m)
        super().__init__(s.to(dtype=dtype, device=resolve_device(device)))


class SparseJLSketch(DenseSketch):
    """Sparse JL / CountSketch family: each row has ``nnz_per_row`` entries +-1/sqrt(nnz_per_row).

    The nonzero columns of a row are distinct and uniformly random; ``E[S S^T] = I_d``
    (the diagonal of ``S S^T`` is exactly one). ``nnz_per_row=1`` is CountSketch.
    """

    def __init__(
        self,
        d: int,
        m: int,
        nnz_per_row: int = 4,
        seed: SeedLike = None,
        device="cpu",
        dtype=torch.float32,
    ):
        check_int("d", d)
        check_int("m", m)
        s_nnz = check_int("nnz_per_row", nnz_per_row)
        if s_nnz > m:
            raise ValueError(f"nnz_per_row must be <= m = {m}, got {s_nnz}")
        g = make_generator(seed)
        cols = torch.rand(d, m, generator=g).argsort(dim=1)[:, :s_nnz]
        vals = (torch.randint(0, 2, (d, s_nnz), generator=g) * 2 - 1).double() / math.sqrt(s_nnz)
        s = torch.zeros(d, m, dtype=torch.float64).scatter_(1, cols, vals)
        super().__init__(s.to(dtype=dtype, device=resolve_device(device)))


class HaarSketch(DenseSketch):
    """``sqrt(d/m)`` times the first ``m`` columns of a Haar orthogonal matrix (``m <= d``)."""

    def __init__(self, d: int, m: int, seed: SeedLike = None, device="cpu", dtype=torch.float32):
        check_int("d", d)
        check_int("m", m)
        if m > d:
            raise ValueError(f"m must be <= d = {d} for a Haar sketch, got {m}")
        q = random_orthogonal(d, seed, dtype=torch.float64)[:, :m] * math.sqrt(d / m)
        super().__init__(q.to(dtype=dtype, device=resolve_device(device)))


class BlockSRHTSketch(Sketch):
    """Block SRHT: keep ``blocks_kept`` of ``num_blocks`` contiguous row blocks of ``H D x / sqrt(n)``.

    ``n = next_pow2(d)`` (the input is zero-padded), block size ``n / num_blocks``,
    ``m = blocks_kept * n / num_blocks``, scaling ``sqrt(num_blocks / blocks_kept)``.
    ``num_blocks = n`` gives the ordinary SRHT (single rows sampled without replacement).
    """

    def __init__(
        self,
        d: int,
        num_blocks: int,
        blocks_kept: int,
        seed: SeedLike = None,
        device="cpu",
        dtype=torch.float32,
    ):
        n = next_pow2(check_int("d", d))
        check_int("num_blocks", num_blocks)
        if n % num_blocks:
            raise ValueError(f"num_blocks must divide the padded size {n}, got {num_blocks}")
        check_int("blocks_kept", blocks_kept)
        if blocks_kept > num_blocks:
            raise ValueError(f"blocks_kept must be <= num_blocks = {num_blocks}, got {blocks_kept}")
        self.n, self.num_blocks, self.blocks_kept = n, num_blocks, blocks_kept
        self.block = n // num_blocks
        super().__init__(d, blocks_kept * self.block, device, dtype)
        g = make_generator(seed)
        self.signs = random_signs(n, g).to(self.device)
        self.kept = torch.randperm(num_blocks, generator=g)[:blocks_kept].sort().values
        rows = self.kept.unsqueeze(1) * self.block + torch.arange(self.block)
        self.rows = rows.reshape(-1).to(self.device)

    def _apply_t(self, x):
        y = randomized_hadamard(x.to(self.dtype), self.signs)
        return y[self.rows] * math.sqrt(self.num_blocks / self.blocks_kept)


class SRHTSketch(BlockSRHTSketch):
    """Subsampled randomized Hadamard transform: ``m`` rows of ``H D x / sqrt(n)``, rescaled."""

    def __init__(self, d: int, m: int, seed: SeedLike = None, device="cpu", dtype=torch.float32):
        n = next_pow2(check_int("d", d))
        if check_int("m", m) > n:
            raise ValueError(f"m must be <= next_pow2(d) = {n}, got {m}")
        super().__init__(d, n, m, seed, device, dtype)


SKETCHES = ("gaussian", "sparse-jl", "srht", "haar")


def make_sketch(
    kind: str, d: int, m: int, seed: SeedLike = None, device="cpu", dtype=torch.float32
):
    """Build a :class:`Sketch` by name: one of ``SKETCHES``."""
    check_choice("kind", kind, SKETCHES)
    cls = {
        "gaussian": GaussianSketch,
        "sparse-jl": SparseJLSketch,
        "srht": SRHTSketch,
        "haar": HaarSketch,
    }[kind]
    return cls(d, m, seed=seed, device=device, dtype=dtype)


def gaussian_sketch(
    d: int, m: int, seed: SeedLike = None, device="cpu", dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """``(d, m)`` matrix with i.i.d. ``N(0, 1/m)`` entries, so ``E[S S^T] = I_d``."""
    return GaussianSketch(d, m, seed, device, dtype).matrix()


def sparse_jl_sketch(
    d: int,
    m: int,
    nnz_per_row: int = 4,
    seed: SeedLike = None,
    device="cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """``(d, m)`` sparse JL matrix (dense storage): ``nnz_per_row`` entries +-1/sqrt(nnz) a row."""
    return SparseJLSketch(d, m, nnz_per_row, seed, device, dtype).matrix()
