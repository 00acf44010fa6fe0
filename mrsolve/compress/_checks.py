"""Argument checks and numpy/torch conversion shared by the compression functions."""

from __future__ import annotations

import numbers

import numpy as np
import torch

from mrsolve.solvers.validation import check_finite, resolve_device

MAX_BITS = 32


def as_real_tensor(
    name: str,
    a: np.ndarray | torch.Tensor,
    device: str | torch.device | None = None,
    matrix: bool = True,
) -> tuple[torch.Tensor, bool]:
    """``(tensor, given_as_numpy)`` for a finite real array (2-D when ``matrix``).

    Integer and half-precision inputs become float32; float32/float64 keep their dtype.
    ``device=None`` keeps a tensor where it is (numpy goes to the CPU).
    """
    was_numpy = isinstance(a, np.ndarray)
    if was_numpy:
        t = torch.from_numpy(np.ascontiguousarray(a))
    elif isinstance(a, torch.Tensor):
        t = a.detach()
    else:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(a).__name__}")
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued, got dtype {t.dtype}")
    if matrix and t.dim() != 2:
        raise ValueError(f"{name} must be a 2-D matrix, got shape {tuple(t.shape)}")
    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    if device is not None:
        t = t.to(resolve_device(device))
    check_finite(name, t)
    return t, was_numpy


def check_bits(name: str, bits: int) -> int:
    """Return ``bits`` as int; raise unless it is an integer in ``[1, MAX_BITS]``."""
    if isinstance(bits, bool) or not isinstance(bits, numbers.Integral):
        raise TypeError(f"{name} must be an integer number of bits, got {bits!r}")
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"{name} must be between 1 and {MAX_BITS} bits, got {bits}")
    return int(bits)


def check_rank(rank: int, shape: tuple[int, int]) -> int:
    """Return ``rank`` as int; raise unless ``1 <= rank <= min(shape)``."""
    if isinstance(rank, bool) or not isinstance(rank, numbers.Integral):
        raise TypeError(f"rank must be an integer, got {rank!r}")
    if not 1 <= rank <= min(shape):
        raise ValueError(f"rank must be between 1 and min{tuple(shape)} = {min(shape)}, got {rank}")
    return int(rank)
