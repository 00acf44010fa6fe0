"""Encodings: learnable tensors that produce a complex field on a grid.

- :class:`DenseGrid`: one complex value per grid point (shape (..., ny, nx)).
- :class:`FactorizedPlanes`: K-Planes-style factorization of a (T, F, ny, nx) field:
  complex R-channel planes over every pair of axes (xy, xf, yf, and xt, yt, ft when
  T > 1), features multiplied across planes, a linear decoder to one complex value.
- :class:`HashGrid`: multi-resolution hash grid.

All are ``torch.nn.Module``s whose ``forward()`` returns the complex field.
"""

from mrsolve.recon.spectral.encodings.dense import DenseGrid
from mrsolve.recon.spectral.encodings.hash_grid import HashGrid
from mrsolve.recon.spectral.encodings.planes import FactorizedPlanes

__all__ = ["DenseGrid", "FactorizedPlanes", "HashGrid"]
