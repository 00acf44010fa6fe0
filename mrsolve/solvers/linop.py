"""Linear operators on torch tensors (the sigpy convention).

An operator knows its input shape ``ishape`` and output shape ``oshape``, applies
with ``A(x)`` or ``A @ x``, has a cached adjoint ``A.H`` and normal operator
``A.N = A.H @ A``, and composes: ``A @ B``, ``A + B``, ``A - B``, ``c * A``.
Complex64 is the default dtype; every operator works on whichever device its
tensors live on.

Every concrete operator in the project passes :func:`dot_test`,
``<A x, y> = <x, A^H y>`` for random ``x`` and ``y``.
"""

from __future__ import annotations

import itertools
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence

import torch

from mrsolve.solvers.validation import SeedLike, check_shape, make_generator

Shape = tuple[int, ...]


def _shape(shape: Sequence[int], name: str) -> Shape:
    try:
        out = tuple(int(s) for s in shape)
    except TypeError as err:
        raise TypeError(f"{name} must be a sequence of ints, got {shape!r}") from err
    if any(s < 0 for s in out):
        raise ValueError(f"{name} must have non-negative sizes, got {out}")
    return out


class Linop(ABC):
    """Base class: subclasses implement ``_apply`` and ``_adjoint``.

    Args:
        ishape: shape of the input tensor.
        oshape: shape of the output tensor.
        dtype: dtype of the input (default complex64).
        device: device of the tensors the operator holds.
    """

    def __init__(
        self,
        ishape: Sequence[int],
        oshape: Sequence[int],
        dtype: torch.dtype = torch.complex64,
        device: torch.device | str = "cpu",
    ) -> None:
        self.ishape = _shape(ishape, "ishape")
        self.oshape = _shape(oshape, "oshape")
        self.dtype = dtype
        self.device = torch.device(device)
        self._H: Linop | None = None
        self._N: Linop | None = None

    # -- to implement -------------------------------------------------------------
    @abstractmethod
    def _apply(self, x: torch.Tensor) -> torch.Tensor:
        """A x for x of shape ``ishape``."""

    @abstractmethod
    def _adjoint(self) -> Linop:
        """The adjoint operator (called once; ``H`` caches it)."""

    def _normal(self) -> Linop:
        return Compose([self.H, self])

    # -- public -------------------------------------------------------------------
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        check_shape("x", x, self.ishape, where=repr(self))
        return self._apply(x)

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the operator to ``x`` of shape ``ishape``."""
        return self(x)

    @property
    def H(self) -> Linop:
        """Adjoint operator (cached)."""
        if self._H is None:
            self._H = self._adjoint()
            self._H._H = self
        return self._H

    @property
    def N(self) -> Linop:
        """Normal operator ``A^H A`` (cached)."""
        if self._N is None:
            self._N = self._normal()
        return self._N

    def __matmul__(self, other):
        if isinstance(other, Linop):
            return Compose([self, other])
        if isinstance(other, torch.Tensor):
            return self(other)
        return NotImplemented

    def __add__(self, other):
        if isinstance(other, Linop):
            return Add([self, other])
        return NotImplemented

    def __sub__(self, other):
        if isinstance(other, Linop):
            return Add([self, Scale(other, -1.0)])
        return NotImplemented

    def __neg__(self) -> Linop:
        return Scale(self, -1.0)

    def __mul__(self, other):
        if isinstance(other, int | float | complex):
            return Scale(self, other)
        return NotImplemented

    __rmul__ = __mul__

    def __repr__(self) -> str:
        return f"<{self.oshape}x{self.ishape}> {type(self).__name__}"


class Identity(Linop):
    """I x = x."""

    def __init__(self, shape: Sequence[int], dtype=torch.complex64, device="cpu") -> None:
        super().__init__(shape, shape, dtype, device)

    def _apply(self, x):
        return x

    def _adjoint(self):
        return self

    def _normal(self):
        return self


class Scale(Linop):
    """c * A for a scalar c."""

    def __init__(self, op: Linop, c: complex) -> None:
        super().__init__(op.ishape, op.oshape, op.dtype, op.device)
        self.op, self.c = op, c

    def _apply(self, x):
        return self.c * self.op(x)

    def _adjoint(self):
        c = self.c.conjugate() if isinstance(self.c, complex) else self.c
        return Scale(self.op.H, c)

    def _normal(self):
        return Scale(self.op.N, abs(self.c) ** 2)


class Compose(Linop):
    """A_1 @ A_2 @ ... @ A_k (applied right to left)."""

    def __init__(self, ops: Sequence[Linop]) -> None:
        ops = list(ops)
        if not ops:
            raise ValueError("ops must hold at least one operator, got an empty list")
        for left, right in itertools.pairwise(ops):
            if left.ishape != right.oshape:
                raise ValueError(
                    f"cannot compose {left!r} with {right!r}: "
                    f"input shape {left.ishape} != output shape {right.oshape}"
                )
        super().__init__(ops[-1].ishape, ops[0].oshape, ops[-1].dtype, ops[-1].device)
        self.ops = ops

    def _apply(self, x):
        for op in reversed(self.ops):
            x = op(x)
        return x

    def _adjoint(self):
        return Compose([op.H for op in reversed(self.ops)])


class Add(Linop):
    """A_1 + A_2 + ... (same shapes)."""

    def __init__(self, ops: Sequence[Linop]) -> None:
        ops = list(ops)
        if not ops:
            raise ValueError("ops must hold at least one operator, got an empty list")
        for op in ops[1:]:
            if (op.ishape, op.oshape) != (ops[0].ishape, ops[0].oshape):
                raise ValueError(f"cannot add {ops[0]!r} and {op!r}: shapes differ")
        super().__init__(ops[0].ishape, ops[0].oshape, ops[0].dtype, ops[0].device)
        self.ops = ops

    def _apply(self, x):
        out = self.ops[0](x)
        for op in self.ops[1:]:
            out = out + op(x)
        return out

    def _adjoint(self):
        return Add([op.H for op in self.ops])


class Multiply(Linop):
    """Element-wise product with ``weights`` broadcast against an input of ``ishape``."""

    def __init__(self, ishape: Sequence[int], weights: torch.Tensor, conj: bool = False) -> None:
        ishape = _shape(ishape, "ishape")
        oshape = torch.broadcast_shapes(ishape, weights.shape)
        dtype = weights.dtype if weights.is_complex() else torch.complex64
        super().__init__(ishape, oshape, dtype, weights.device)
        self.weights, self.conj = weights, conj

    def _apply(self, x):
        w = self.weights.conj() if self.conj else self.weights
        return x * w

    def _adjoint(self):
        if self.oshape != self.ishape:
            return Compose(
                [
                    SumTo(self.oshape, self.ishape),
                    Multiply(self.oshape, self.weights, not self.conj),
                ]
            )
        return Multiply(self.oshape, self.weights, not self.conj)


class SumTo(Linop):
    """Sum a broadcast tensor of ``ishape`` back down to ``oshape`` (adjoint of broadcasting)."""

    def __init__(
        self, ishape: Sequence[int], oshape: Sequence[int], dtype=torch.complex64, device="cpu"
    ):
        super().__init__(ishape, oshape, dtype, device)
        if torch.broadcast_shapes(self.ishape, self.oshape) != self.ishape:
            raise ValueError(f"oshape {self.oshape} does not broadcast to ishape {self.ishape}")

    def _apply(self, x):
        lead = len(self.ishape) - len(self.oshape)
        if lead:
            x = x.sum(dim=tuple(range(lead)))
        dims = tuple(i for i, s in enumerate(self.oshape) if s == 1 and x.shape[i] != 1)
        return x.sum(dim=dims, keepdim=True) if dims else x

    def _adjoint(self):
        return BroadcastTo(self.oshape, self.ishape, self.dtype, self.device)


class BroadcastTo(Linop):
    """Broadcast a tensor of ``ishape`` to ``oshape``."""

    def __init__(
        self, ishape: Sequence[int], oshape: Sequence[int], dtype=torch.complex64, device="cpu"
    ):
        super().__init__(ishape, oshape, dtype, device)
        if torch.broadcast_shapes(self.ishape, self.oshape) != self.oshape:
            raise ValueError(f"ishape {self.ishape} does not broadcast to oshape {self.oshape}")

    def _apply(self, x):
        return x.expand(self.oshape)

    def _adjoint(self):
        return SumTo(self.oshape, self.ishape, self.dtype, self.device)


class Sum(Linop):
    """Sum over ``axes`` of an input of ``ishape``."""

    def __init__(
        self, ishape: Sequence[int], axes: Sequence[int], dtype=torch.complex64, device="cpu"
    ):
        ishape = _shape(ishape, "ishape")
        axes = tuple(sorted(a % len(ishape) for a in axes))
        oshape = tuple(s for i, s in enumerate(ishape) if i not in axes)
        super().__init__(ishape, oshape, dtype, device)
        self.axes = axes

    def _apply(self, x):
        return x.sum(dim=self.axes)

    def _adjoint(self):
        return Tile(self.oshape, self.ishape, self.axes, self.dtype, self.device)


class Tile(Linop):
    """Repeat an input along new ``axes`` so the output has ``oshape`` (adjoint of Sum)."""

    def __init__(self, ishape, oshape, axes: Sequence[int], dtype=torch.complex64, device="cpu"):
        super().__init__(ishape, oshape, dtype, device)
        self.axes = tuple(axes)

    def _apply(self, x):
        for a in self.axes:
            x = x.unsqueeze(a)
        return x.expand(self.oshape)

    def _adjoint(self):
        return Sum(self.oshape, self.axes, self.dtype, self.device)


class Reshape(Linop):
    """Reshape ``ishape`` to ``oshape`` (same number of elements)."""

    def __init__(self, ishape, oshape, dtype=torch.complex64, device="cpu"):
        super().__init__(ishape, oshape, dtype, device)
        if math.prod(self.ishape) != math.prod(self.oshape):
            raise ValueError(f"cannot reshape {self.ishape} to {self.oshape}")

    def _apply(self, x):
        return x.reshape(self.oshape)

    def _adjoint(self):
        return Reshape(self.oshape, self.ishape, self.dtype, self.device)


class FFT(Linop):
    """Orthonormal FFT over ``axes`` (centered: DC in the middle, sigpy/BART convention)."""

    def __init__(
        self,
        shape: Sequence[int],
        axes: Sequence[int] = (-2, -1),
        center: bool = True,
        inverse: bool = False,
        dtype=torch.complex64,
        device="cpu",
    ) -> None:
        super().__init__(shape, shape, dtype, device)
        self.axes, self.center, self.inverse = tuple(axes), center, inverse

    def _apply(self, x):
        f = torch.fft.ifftn if self.inverse else torch.fft.fftn
        if self.center:
            x = torch.fft.ifftshift(x, dim=self.axes)
        x = f(x, dim=self.axes, norm="ortho")
        return torch.fft.fftshift(x, dim=self.axes) if self.center else x

    def _adjoint(self):
        return FFT(self.ishape, self.axes, self.center, not self.inverse, self.dtype, self.device)

    def _normal(self):
        return Identity(self.ishape, self.dtype, self.device)


class MatMul(Linop):
    """Left multiplication by a matrix: (m, n) @ x with x of shape (n,) or (n, k)."""

    def __init__(self, ishape: Sequence[int], matrix: torch.Tensor) -> None:
        ishape = _shape(ishape, "ishape")
        if matrix.ndim != 2 or not ishape or ishape[0] != matrix.shape[1]:
            raise ValueError(
                f"matrix must be 2-D with {ishape[0] if ishape else '?'} columns for input "
                f"shape {ishape}, got shape {tuple(matrix.shape)}"
            )
        super().__init__(ishape, (matrix.shape[0], *ishape[1:]), matrix.dtype, matrix.device)
        self.matrix = matrix

    def _apply(self, x):
        return self.matrix @ x

    def _adjoint(self):
        return MatMul(self.oshape, self.matrix.mH)


class Stack(Linop):
    """Stack operators with the same input and output shapes: y[i] = A_i x."""

    def __init__(self, ops: Sequence[Linop]) -> None:
        ops = list(ops)
        if not ops:
            raise ValueError("ops must hold at least one operator, got an empty list")
        for op in ops[1:]:
            if (op.ishape, op.oshape) != (ops[0].ishape, ops[0].oshape):
                raise ValueError(f"cannot stack {ops[0]!r} and {op!r}: shapes differ")
        super().__init__(ops[0].ishape, (len(ops), *ops[0].oshape), ops[0].dtype, ops[0].device)
        self.ops = ops

    def _apply(self, x):
        return torch.stack([op(x) for op in self.ops])

    def _adjoint(self):
        return _Unstack(self)


class _Unstack(Linop):
    """Adjoint of :class:`Stack`: sum_i A_i^H y[i]."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.oshape, stack.ishape, stack.dtype, stack.device)
        self.stack = stack

    def _apply(self, y):
        out = self.stack.ops[0].H(y[0])
        for i, op in enumerate(self.stack.ops[1:], start=1):
            out = out + op.H(y[i])
        return out

    def _adjoint(self):
        return self.stack


def inner(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Complex inner product <a, b> = sum conj(a) * b."""
    return torch.vdot(a.reshape(-1), b.reshape(-1)) if a.is_complex() else (a * b).sum()


def dot_test(op: Linop, seed: SeedLike = 0) -> float:
    """Relative mismatch |<A x, y> - <x, A^H y>| / (|A x| |y|) for random x, y.

    A correct adjoint gives a value near machine precision (about 1e-6 in float32).
    """
    g = make_generator(seed)
    x = torch.randn(op.ishape, generator=g, dtype=op.dtype).to(op.device)
    ax = op(x)
    y = torch.randn(op.oshape, generator=g, dtype=ax.dtype).to(op.device)
    aty = op.H(y)
    lhs, rhs = inner(ax, y), inner(x, aty)
    scale = (ax.norm() * y.norm()).clamp_min(torch.finfo(torch.float32).tiny)
    return float((lhs - rhs).abs() / scale)
