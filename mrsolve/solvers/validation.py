"""Argument checks shared by the whole project.

Every message names the argument, what was expected and what was given, so the
CLI can print it as one line.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable, Collection, Sequence
from typing import ClassVar

import numpy as np
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


def check_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value``; raise TypeError unless it is an int (not a bool), ValueError if < ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


SeedLike = int | np.random.Generator | torch.Generator | None


def make_generator(seed: SeedLike = None, kind: str = "torch"):
    """A random generator of ``kind`` ("torch": a CPU ``torch.Generator``; "numpy": a
    ``numpy.random.Generator``) from ``seed``.

    ``seed`` is an int >= 0 (a seeded generator), None (fresh entropy), a generator of
    ``kind`` (returned as is, so its stream is shared with the caller) or a generator of
    the other kind (an int seed is drawn from it). Nothing touches global RNG state.
    """
    check_choice("kind", kind, ("torch", "numpy"))
    if isinstance(seed, np.random.Generator if kind == "numpy" else torch.Generator):
        return seed
    if seed is not None:
        seed = seed_to_int(seed)
    if kind == "numpy":
        return np.random.default_rng(seed)
    g = torch.Generator()
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def seed_to_int(seed: int | np.random.Generator | torch.Generator) -> int:
    """An int seed >= 0: ``seed`` itself, or one drawn from a numpy or torch generator."""
    if isinstance(seed, np.random.Generator):
        return int(seed.integers(2**62))
    if isinstance(seed, torch.Generator):
        return int(torch.randint(2**62, (1,), generator=seed))
    if isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0:
        return int(seed)
    raise TypeError(f"seed must be an int >= 0, a numpy or torch Generator, or None, got {seed!r}")


def renamed_kwargs(**renames: str) -> Callable:
    """Decorator: accept the old keyword names ``renames`` (old -> new) for one release,
    with a DeprecationWarning, passing them on under their new names."""

    def wrap(func: Callable) -> Callable:
        @functools.wraps(func)
        def inner(*args, **kwargs):
            for old, new in renames.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{func.__qualname__} got both {old!r} and {new!r}")
                    warnings.warn(
                        f"{func.__qualname__}: {old!r} is deprecated, use {new!r}",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        return inner

    return wrap


def deprecated_names(module: str, aliases: dict[str, object]) -> Callable:
    """A module ``__getattr__`` that serves the old names ``aliases`` (old name -> new
    object) with a DeprecationWarning."""

    def __getattr__(name: str):
        if name in aliases:
            new = aliases[name]
            warnings.warn(
                f"{module}.{name} is deprecated, use {getattr(new, '__name__', new)}",
                DeprecationWarning,
                stacklevel=2,
            )
            return new
        raise AttributeError(f"module {module!r} has no attribute {name!r}")

    return __getattr__


class RenamedAttributes:
    """Mixin: the old attribute names in ``_renamed`` (old -> new) read the new ones for
    one release, with a DeprecationWarning."""

    _renamed: ClassVar[dict[str, str]] = {}

    def __getattr__(self, name: str):
        new = type(self)._renamed.get(name)
        if new is None:
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        warnings.warn(
            f"{type(self).__name__}.{name} is deprecated, use {new!r}",
            DeprecationWarning,
            stacklevel=2,
        )
        return getattr(self, new)
