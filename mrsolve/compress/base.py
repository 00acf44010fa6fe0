"""The interface every compressed object shares: ``dense()``, ``bits``, ``relative_error(A)``."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod

import numpy as np
import torch


class Compressed(ABC):
    """Base class of compressed matrices, images and tensors.

    Subclasses define ``shape`` (a tuple attribute), ``bits`` (exact storage size in bits: packed codes plus
    scales) and ``_dense()`` (the reconstruction as a torch tensor). ``as_numpy`` is True
    when the user gave numpy, and then ``dense()`` returns numpy.
    """

    as_numpy: bool = False
    shape: tuple[int, ...]

    @property
    @abstractmethod
    def bits(self) -> int:
        """Exact storage size in bits (packed codes plus scales)."""

    @abstractmethod
    def _dense(self) -> torch.Tensor:
        """The reconstruction as a torch tensor of shape ``self.shape``."""

    def dense(self) -> np.ndarray | torch.Tensor:
        """The reconstruction, shape ``self.shape`` (numpy when the input was numpy)."""
        out = self._dense()
        return out.cpu().numpy() if self.as_numpy else out

    @property
    def bits_per_entry(self) -> float:
        """Storage bits divided by the number of entries of the original array."""
        return self.bits / math.prod(self.shape)

    def relative_error(self, a: np.ndarray | torch.Tensor) -> float:
        """Relative Frobenius error ``||a - dense()||_F / ||a||_F`` against the original ``a``."""
        approx = self._dense()
        if isinstance(a, np.ndarray):
            a = torch.from_numpy(np.ascontiguousarray(a))
        if not isinstance(a, torch.Tensor):
            raise TypeError(f"a must be a numpy array or a torch tensor, got {type(a).__name__}")
        if tuple(a.shape) != tuple(self.shape):
            raise ValueError(f"a must have shape {tuple(self.shape)}, got {tuple(a.shape)}")
        a = a.to(device=approx.device, dtype=torch.float64)
        norm = torch.linalg.vector_norm(a)
        if norm == 0:
            raise ValueError("a must not be all zeros: its relative error is undefined")
        return float(torch.linalg.vector_norm(a - approx.double()) / norm)
