"""Polar codes over the reals for straggler-resilient linear computation (arXiv 2309.00682).

Encoding: ``x = u F^{(x)n}`` with ``F = [[1, 0], [1, 1]]`` (natural index order, no bit
reversal): ``N = 2^n`` blocks ``u``, of which the ``N - K`` *frozen* ones are zero and the
``K`` *information* ones carry data. One level of the recursion is
``x = [(u_a + u_b) G', u_b G']`` with ``G' = F^{(x)(n-1)}`` and ``u = [u_a, u_b]`` halves.

Erasure decoding (successive cancellation, real arithmetic): ``u_a G' = x_a - x_b`` is
seen where both halves are known (the "minus" channel, erasure probability
``2z - z^2``); once ``u_a`` and its re-encoding are known, ``u_b G'`` is seen where
either half is (the "plus" channel, ``z^2``). Returning the re-encoding from each
recursive call keeps the cost at ``O(N log N)`` block additions. Only additions and
subtractions are used, so a rounding error grows at most by a factor two per level
(``N`` in all), unlike the ill-conditioned solves of real MDS codes.
"""

from __future__ import annotations

import numpy as np
import torch

from mrsolve.distributed.codes import Code
from mrsolve.solvers.validation import check_positive


def _log2(n: int, name: str = "n") -> int:
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n & (n - 1):
        raise ValueError(f"{name} must be a power of two, got {n!r}")
    return n.bit_length() - 1


def bec_reliability(n: int, z: float) -> np.ndarray:
    """Erasure probabilities ``(n,)`` of the synthetic channels of index ``0..n-1``.

    Recursion on the erasure probability ``z`` of one worker:
    ``Z_N(z) = [Z_{N/2}(2z - z^2), Z_{N/2}(z^2)]`` (first half decoded from the minus channel).
    """
    _log2(n)
    if not 0.0 <= float(z) <= 1.0:
        raise ValueError(f"z must be an erasure probability in [0, 1], got {z!r}")
    zs = np.array([float(z)])
    while len(zs) < n:
        zs = np.stack([2 * zs - zs**2, zs**2], axis=1).reshape(-1)
    return zs


def info_set(n: int, k: int, z: float) -> np.ndarray:
    """Sorted indices of the ``k`` most reliable channels (smallest erasure probability)."""
    zs = bec_reliability(n, z)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in [1, {n}], got {k!r}")
    return np.sort(np.argsort(zs, kind="stable")[:k])


def polar_transform(u: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """``x = u F^{(x)n}`` along dim 0 (length a power of two): ``O(N log N)`` block additions.

    ``inverse=True`` applies ``(F^{-1})^{(x)n}``, ``F^{-1} = [[1, 0], [-1, 1]]``.
    """
    n = u.shape[0]
    _log2(n, "u.shape[0]")
    x = u.clone()
    h = 1
    while h < n:
        v = x.view(n // (2 * h), 2, h, *x.shape[1:])
        if inverse:
            v[:, 0] -= v[:, 1]
        else:
            v[:, 0] += v[:, 1]  # the butterfly (y1, y2) = (u1 + u2, u2)
        h *= 2
    return x


def _known_after_encoding(uk: np.ndarray) -> np.ndarray:
    """Which ``x = u G`` are known from the known ``u``: the butterfly with AND for ``+``."""
    xk = uk.copy()
    h = 1
    while h < len(xk):
        v = xk.reshape(-1, 2, h)
        v[:, 0] &= v[:, 1]
        h *= 2
    return xk


def _sc(y: torch.Tensor | None, known: np.ndarray, frozen: np.ndarray):
    """Successive-cancellation erasure decoding of one subtree.

    Returns ``(u, u_known, x, x_known)`` with ``x`` the re-encoding of ``u``; with ``y=None``
    only the masks are propagated (a decodability check without data).
    """
    n = len(known)
    # shortcuts (as in fast-SSC decoders) that skip whole subtrees; the recursion below
    # would return the same values and masks
    if frozen.all():  # nothing to decode: u = 0 and its encoding x = 0
        z = None if y is None else torch.zeros_like(y)
        return z, np.ones(n, bool), z, np.ones(n, bool)
    if known.all():  # no erasure: invert the transform directly
        u = None if y is None else polar_transform(y, inverse=True)
        return u, np.ones(n, bool), y, np.ones(n, bool)
    if not known.any():  # everything erased: only the frozen blocks are known
        z = None if y is None else torch.zeros_like(y)
        return z, frozen.copy(), z, _known_after_encoding(frozen)
    h = n // 2  # here n >= 2: a single block is frozen, known or erased
    ka, kb = known[:h], known[h:]
    kd = ka & kb
    d = None if y is None else _where(kd, y[:h] - y[h:], None)
    ua, uak, xa, xak = _sc(d, kd, frozen[:h])
    from_a = ka & xak & ~kb
    kw = kb | from_a
    w = None if y is None else _where(kb, y[h:], _where(from_a, y[:h] - xa, None))
    ub, ubk, xb, xbk = _sc(w, kw, frozen[h:])
    uk = np.concatenate([uak, ubk])
    xk = np.concatenate([xak & xbk, xbk])
    if y is None:
        return None, uk, None, xk
    return torch.cat([ua, ub]), uk, torch.cat([xa + xb, xb]), xk


def _where(mask: np.ndarray, a: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    m = torch.from_numpy(mask).to(a.device).reshape((-1,) + (1,) * (a.dim() - 1))
    return torch.where(m, a, torch.zeros_like(a) if b is None else b)


class PolarCode(Code):
    """Polar code with ``n = 2^m`` workers and ``k`` data blocks.

    Args:
        n: number of workers (a power of two).
        k: number of data blocks (information positions).
        design_erasure: straggler probability the frozen set is designed for.
    """

    name = "polar"

    def __init__(self, n: int, k: int, design_erasure: float = 0.25) -> None:
        _log2(n)
        super().__init__(n, k)
        self.design_erasure = check_positive("design_erasure", design_erasure)
        self.info = info_set(n, k, self.design_erasure)
        self.frozen = np.ones(n, dtype=bool)
        self.frozen[self.info] = False

    def _encode(self, u):
        full = u.new_zeros((self.n, *u.shape[1:]))
        full[torch.from_numpy(self.info)] = u
        return polar_transform(full)

    def _recoverable(self, known):
        return _sc(None, known, self.frozen)[1][self.info]

    def _decode(self, y, known):
        u, uk, _, _ = _sc(y, known, self.frozen)
        return u[torch.from_numpy(self.info)], uk[self.info]

    def predicted_failure(self, z: float) -> float:
        """BEC prediction of the decoding-failure probability at straggler probability ``z``:
        ``1 - prod_{i in info} (1 - Z_i(z))``."""
        return float(1.0 - np.prod(1.0 - bec_reliability(self.n, z)[self.info]))
