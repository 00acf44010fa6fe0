"""Bit packing of unsigned integer codes into a byte stream.

A code of ``bits`` bits takes exactly ``bits`` bits of the stream (least significant bit
first, codes back to back), so ``count`` codes take ``ceil(count * bits / 8)`` bytes. Torch
has no packbits for arbitrary widths (numpy's works on single bits and only on the CPU), so
the bit planes are moved with shifts here; this runs on any device.
"""

from __future__ import annotations

import math

import torch


def packed_size(count: int, bits: int) -> int:
    """Number of bytes :func:`pack_codes` uses for ``count`` codes of ``bits`` bits."""
    return math.ceil(count * bits / 8)


def pack_codes(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """Pack ``(count,)`` integer codes in ``[0, 2**bits)`` into ``(packed_size,)`` uint8."""
    count = codes.numel()
    codes = codes.reshape(-1).to(torch.int64)
    stream = torch.zeros(packed_size(count, bits) * 8, dtype=torch.uint8, device=codes.device)
    planes = stream[: count * bits].view(count, bits)
    for k in range(bits):
        planes[:, k] = ((codes >> k) & 1).to(torch.uint8)
    octets = stream.view(-1, 8)
    packed = torch.zeros(octets.shape[0], dtype=torch.uint8, device=codes.device)
    for j in range(8):
        packed |= octets[:, j] << j
    return packed


def unpack_codes(packed: torch.Tensor, bits: int, count: int) -> torch.Tensor:
    """Inverse of :func:`pack_codes`: ``(count,)`` int64 codes."""
    if packed.numel() != packed_size(count, bits):
        raise ValueError(
            f"packed must hold {packed_size(count, bits)} bytes for {count} codes of {bits} bits,"
            f" got {packed.numel()}"
        )
    octets = torch.empty(packed.numel(), 8, dtype=torch.uint8, device=packed.device)
    for j in range(8):
        octets[:, j] = (packed >> j) & 1
    planes = octets.view(-1)[: count * bits].view(count, bits)
    codes = torch.zeros(count, dtype=torch.int64, device=packed.device)
    for k in range(bits):
        codes |= planes[:, k].to(torch.int64) << k
    return codes
