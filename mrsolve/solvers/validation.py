"""Argument checks shared by the whole project.

Every message names the argument, what was expected and what was given, so the
CLI can print it as one line.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import torch


def check_shape(name: str, x: torch.Tensor, expected: Sequence[int], where: str = "") -> None:
    """Raise ValueError unless ``x.shape == expected``."""
    if tuple(x.shape) != tuple(expected):
        at = f" for {where}" if where else ""
        raise ValueError(f"{name} must have shape {tuple(expected)}{at}, got {tuple(x.shape)}")


def check_positive(name: str, value: float, allow_zero: bool = False) -> float:
    """Return ``value`` as float; raise ValueError unless it is > 0 (>= 0 with allow_zero)."""
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a number, got {value!r}") from err
    if not (v >= 0 if allow_zero else v > 0) or v != v:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound}, got {value!r}")
    return v


def check_share(name: str, value: float) -> float:
    """Return ``value`` as float; raise unless it is a share in (0, 1]."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a number in (0, 1], got {value!r}")
    v = check_positive(name, value)
    if v > 1:
        raise ValueError(f"{name} must be a share in (0, 1], got {value!r}")
    return v


def check_choice(name: str, value: str, choices: Collection[str]) -> str:
    """Return ``value``; raise ValueError unless it is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise ValueError if ``x`` is empty or holds NaN or infinity."""
    if x.numel() == 0:
        raise ValueError(f"{name} must not be empty, got shape {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise ValueError(f"{name} must be finite, got NaN or infinite values")


def resolve_device(device: str | torch.device = "cpu") -> torch.device:
    """Turn "cpu", "cuda", "cuda:1" or "auto" (CUDA when present) into a torch.device."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise ValueError(f"device must be 'cpu', 'cuda[:N]' or 'auto', got {device!r}") from err
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} was asked for but CUDA is not available here")
    return dev
