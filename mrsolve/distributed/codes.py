"""Linear erasure codes over the reals for coded computation, and the non-polar baselines.

A code maps ``k`` data blocks to ``n`` coded blocks, one per worker: ``encode`` takes a
tensor ``(k, *block)`` and returns ``(n, *block)``; because every worker applies the same
linear map to its block, decoding the workers' outputs ``(n, *out_block)`` returns the
map applied to the data blocks. ``known`` is a boolean numpy mask ``(n,)`` of the workers
that answered. :class:`~mrsolve.distributed.polar.PolarCode` lives in its own module.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch

from mrsolve.solvers.sketching import SeedLike, make_generator
from mrsolve.solvers.validation import check_choice, check_int


def check_known(known, n: int) -> np.ndarray:
    """``known`` as a boolean numpy array of shape ``(n,)``."""
    k = np.asarray(known)
    if k.shape != (n,) or k.dtype != bool:
        raise ValueError(f"known must be a boolean mask of shape ({n},), got {k.dtype} {k.shape}")
    return k


def _check_blocks(name: str, x: torch.Tensor, count: int) -> None:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < 1 or x.shape[0] != count:
        raise ValueError(f"{name} must have {count} blocks along dim 0, got {tuple(x.shape)}")


class Code(ABC):
    """A real linear erasure code with ``n`` coded blocks and ``k`` data blocks."""

    name = "code"

    def __init__(self, n: int, k: int) -> None:
        check_int("n", n)
        check_int("k", k)
        if k > n:
            raise ValueError(f"k must be <= n = {n}, got {k}")
        self.n, self.k = n, k

    def encode(self, u: torch.Tensor) -> torch.Tensor:
        """``(k, *block)`` data blocks -> ``(n, *block)`` coded blocks."""
        _check_blocks("u", u, self.k)
        return self._encode(u)

    def recoverable(self, known) -> np.ndarray:
        """Boolean ``(k,)``: which data blocks ``decode`` recovers from the workers in ``known``."""
        return self._recoverable(check_known(known, self.n))

    def decodable(self, known) -> bool:
        """True when every data block can be recovered."""
        return bool(self.recoverable(known).all())

    def decode(self, y: torch.Tensor, known) -> tuple[torch.Tensor, np.ndarray]:
        """Worker outputs ``(n, *block)`` (entries of unknown workers ignored) ->
        ``(k, *block)`` data-block outputs (zero where not recovered) and the recovered mask."""
        _check_blocks("y", y, self.n)
        known = check_known(known, self.n)
        mask = torch.from_numpy(known).to(y.device).reshape((-1,) + (1,) * (y.dim() - 1))
        return self._decode(torch.where(mask, y, torch.zeros_like(y)), known)

    # -- to implement ------------------------------------------------------------------------
    @abstractmethod
    def _encode(self, u: torch.Tensor) -> torch.Tensor: ...

    @abstractmethod
    def _recoverable(self, known: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def _decode(self, y: torch.Tensor, known: np.ndarray) -> tuple[torch.Tensor, np.ndarray]: ...

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n={self.n}, k={self.k})"


class UncodedCode(Code):
    """Worker ``j`` computes data block ``j``; every worker is needed."""

    name = "uncoded"

    def __init__(self, n: int) -> None:
        super().__init__(n, n)

    def _encode(self, u):
        return u.clone()

    def _recoverable(self, known):
        return known.copy()

    def _decode(self, y, known):
        return y, known.copy()


class ReplicationCode(Code):
    """Each of ``k`` data blocks goes to ``n / k`` workers (worker ``j`` holds block ``j % k``)."""

    name = "replication"

    def __init__(self, n: int, k: int) -> None:
        super().__init__(n, k)
        if n % k:
            raise ValueError(f"k must divide n = {n} for replication, got {k}")

    def _encode(self, u):
        return u.repeat((self.n // self.k,) + (1,) * (u.dim() - 1))

    def _recoverable(self, known):
        return known.reshape(-1, self.k).any(axis=0)

    def _decode(self, y, known):
        grid = known.reshape(-1, self.k)
        first = grid.argmax(axis=0)  # first replica that answered (any if none did)
        out = y[torch.from_numpy(first * self.k + np.arange(self.k))]
        rec = grid.any(axis=0)
        out[torch.from_numpy(~rec)] = 0
        return out, rec


class MDSCode(Code):
    """Maximum-distance-separable real code: any ``k`` of the ``n`` outputs decode.

    ``kind="gaussian"``: i.i.d. N(0, 1) generator (any ``k`` columns are invertible with
    probability one, moderately conditioned). ``kind="vandermonde"``: ``G[i, j] = x_j^i`` at
    Chebyshev nodes ``x_j`` (exactly MDS, but the condition number grows exponentially in
    ``k``). Decoding solves a ``k x k`` (least-squares with more answers) system:
    ``O(k^3 + k^2 * block)`` against the polar code's ``O(n log n * block)``.
    """

    name = "mds"

    def __init__(self, n: int, k: int, kind: str = "gaussian", seed: SeedLike = 0) -> None:
        super().__init__(n, k)
        self.kind = check_choice("kind", kind, ("gaussian", "vandermonde"))
        if kind == "gaussian":
            g = torch.randn(k, n, generator=make_generator(seed), dtype=torch.float64)
        else:
            nodes = torch.cos(math.pi * (2 * torch.arange(n, dtype=torch.float64) + 1) / (2 * n))
            g = nodes.unsqueeze(0) ** torch.arange(k, dtype=torch.float64).unsqueeze(1)
        self.generator = g  # (k, n)

    def _encode(self, u):
        g = self.generator.to(dtype=u.dtype, device=u.device)
        return torch.tensordot(g.T, u, dims=1)

    def _recoverable(self, known):
        return np.full(self.k, known.sum() >= self.k)

    def _decode(self, y, known):
        if known.sum() < self.k:
            return torch.zeros((self.k, *y.shape[1:]), dtype=y.dtype, device=y.device), np.zeros(
                self.k, dtype=bool
            )
        idx = torch.from_numpy(np.flatnonzero(known))
        g = self.generator[:, idx].T.to(dtype=y.dtype, device=y.device)  # (answered, k)
        sol = torch.linalg.lstsq(g, y[idx].reshape(len(idx), -1)).solution
        return sol.reshape((self.k, *y.shape[1:])), np.ones(self.k, dtype=bool)

    def condition(self, known) -> float:
        """Condition number of the decoding system for the workers in ``known``."""
        idx = np.flatnonzero(check_known(known, self.n))
        return float(torch.linalg.cond(self.generator[:, torch.from_numpy(idx)]))
