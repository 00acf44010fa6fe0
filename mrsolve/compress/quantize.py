"""Uniform scalar quantization with per-matrix or per-block scales and packed codes.

A block of values with range ``[lo, hi]`` is mapped to ``M = 2**bits`` evenly spaced levels
``lo + k * step``, ``step = (hi - lo) / (M - 1)``, ``k = 0 .. M-1``. ``rounding="nearest"``
picks the closest level (error at most ``step / 2``); ``rounding="stochastic"`` rounds up
with probability equal to the fractional position between the two neighbouring levels, so
the reconstruction is unbiased (``E[Q(x)] = x``) with variance at most ``step**2 / 4``.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch

from mrsolve.compress._checks import as_real_tensor, check_bits
from mrsolve.compress.base import Compressed
from mrsolve.compress.packing import pack_codes, unpack_codes
from mrsolve.solvers.sketching import SeedLike, make_generator
from mrsolve.solvers.validation import check_choice

ROUNDINGS = ("nearest", "stochastic")


@dataclass(frozen=True, eq=False)
class QuantizedTensor(Compressed):
    """A real tensor stored as packed ``code_bits``-bit codes plus one ``(offset, step)`` per block.

    Attributes:
        codes: ``(ceil(numel * code_bits / 8),)`` uint8, the packed codes (row-major order).
        offset: ``(num_blocks,)`` lowest level of each block (dtype of the reconstruction).
        step: ``(num_blocks,)`` level spacing of each block.
        shape: shape of the original tensor.
        code_bits: bits per code.
        block_size: entries per block (consecutive in row-major order; the last may be short).
    """

    codes: torch.Tensor
    offset: torch.Tensor
    step: torch.Tensor
    shape: tuple[int, ...]
    code_bits: int
    block_size: int
    as_numpy: bool = False

    @property
    def bits(self) -> int:
        """Exact storage: 8 bits per packed byte plus the offsets and steps at their dtype."""
        scale_bits = (self.offset.numel() + self.step.numel()) * self.offset.element_size() * 8
        return self.codes.numel() * 8 + scale_bits

    def integer_codes(self) -> torch.Tensor:
        """The unpacked codes, int64, shape ``self.shape``."""
        return unpack_codes(self.codes, self.code_bits, math.prod(self.shape)).reshape(self.shape)

    def _dense(self) -> torch.Tensor:
        numel = math.prod(self.shape)
        codes = unpack_codes(self.codes, self.code_bits, numel)
        blocks = _split_blocks(codes, self.block_size).to(self.offset.dtype)
        values = self.offset[:, None] + blocks * self.step[:, None]
        return values.reshape(-1)[:numel].reshape(self.shape)


def _split_blocks(flat: torch.Tensor, block_size: int) -> torch.Tensor:
    """``(num_blocks, block_size)`` view of ``flat``, the last block padded with its last value.

    Repeating a real value keeps every block's min and max unchanged.
    """
    pad = -flat.numel() % block_size
    if pad:
        flat = torch.cat([flat, flat[-1:].expand(pad)])
    return flat.reshape(-1, block_size)


def quantize(
    x: np.ndarray | torch.Tensor,
    bits: int,
    *,
    rounding: str = "nearest",
    block_size: int | None = None,
    seed: SeedLike = None,
    device: str | torch.device | None = None,
) -> QuantizedTensor:
    """Uniformly quantize a real tensor to ``bits`` bits per entry.

    Args:
        x: real tensor or numpy array of any shape (integers become float32).
        bits: bits per entry, 1..32.
        rounding: ``"nearest"`` (deterministic) or ``"stochastic"`` (unbiased).
        block_size: entries sharing one scale (consecutive in row-major order); None = one
            scale for the whole tensor.
        seed: int, ``torch.Generator`` or None; used by stochastic rounding.
        device: where to compute; None keeps the tensor's device.

    Returns:
        :class:`QuantizedTensor`; its ``dense()`` has the shape and float dtype of ``x``.
    """
    bits = check_bits("bits", bits)
    check_choice("rounding", rounding, ROUNDINGS)
    t, as_numpy = as_real_tensor("x", x, device, matrix=False)
    numel = t.numel()
    if block_size is None:
        block_size = numel
    elif isinstance(block_size, bool) or not isinstance(block_size, numbers.Integral):
        raise TypeError(f"block_size must be a positive integer or None, got {block_size!r}")
    elif block_size < 1:
        raise ValueError(f"block_size must be >= 1, got {block_size}")
    block_size = min(int(block_size), numel)

    # float32 cannot resolve more than ~2**24 levels, so wide codes are computed in float64
    work = torch.float64 if bits > 16 or t.dtype == torch.float64 else torch.float32
    blocks = _split_blocks(t.reshape(-1).to(work), block_size)
    lo = blocks.amin(dim=1)
    levels = 2**bits - 1
    step = (blocks.amax(dim=1) - lo) / levels
    position = (blocks - lo[:, None]) / torch.where(step > 0, step, 1.0)[:, None]
    if rounding == "nearest":
        codes = torch.round(position)
    else:
        u = torch.rand(position.shape, generator=make_generator(seed), dtype=work)
        codes = torch.floor(position + u.to(position.device))
    codes = codes.clamp_(0, levels).to(torch.int64).reshape(-1)[:numel]
    return QuantizedTensor(
        codes=pack_codes(codes, bits),
        offset=lo.to(t.dtype),
        step=step.to(t.dtype),
        shape=tuple(t.shape),
        code_bits=bits,
        block_size=block_size,
        as_numpy=as_numpy,
    )
