"""The centered, standardized design of a path fit, dense or scipy.sparse.

Columns are permuted so that feature groups are contiguous (``order``), centered with
the weighted mean (when an intercept is fitted) and divided by the weighted sd (when
standardizing). A sparse ``X`` is never densified: centering is applied implicitly in
products, and only the working-set columns are materialized. A dense design given with
its Gram matrix (cross-validation folds: the full Gram minus the held-out rows') is not
copied either: the gaussian covariance solve needs only the Gram and ``Xs^T W r0``.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp


class Design:
    """``Xs = (X[:, order] - xbar) / scale`` with products and column gathers.

    Args:
        X: ``(n, p)`` dense array or scipy.sparse matrix (float64).
        w: observation weights summing to 1 ``(n,)``.
        order: column permutation ``(p,)``.
        center: subtract the weighted column means; standardize: divide by the weighted sd.
        gram: ``sum_i w_i (x_i - xbar)(x_i - xbar)^T`` of the dense ``X`` in its own
            column order ``(p, p)`` (``xbar = 0`` without centering), or None.
    """

    def __init__(
        self,
        X,
        w: np.ndarray,
        order: np.ndarray,
        center: bool,
        standardize: bool,
        gram: np.ndarray | None = None,
    ):
        self.sparse = sp.issparse(X)
        n, p = X.shape
        self.shape = (n, p)
        #: ``Xs^T W Xs`` ``(p, p)`` when given (else the solver forms what it needs)
        self.gram = None
        if gram is not None:
            Xo = np.asarray(X, dtype=np.float64)
            if not np.array_equal(order, np.arange(p)):
                Xo, gram = Xo[:, order], gram[np.ix_(order, order)]
            self.xbar = w @ Xo if center else np.zeros(p)
            sq = np.diag(gram).copy()
        elif self.sparse:
            Xo = sp.csc_matrix(X, dtype=np.float64)[:, order]
            Xo.sort_indices()
            self.xbar = np.asarray(Xo.T @ w).ravel() if center else np.zeros(p)
            sq = np.asarray(Xo.multiply(Xo).T @ w).ravel() - self.xbar**2
        else:
            Xo = np.asarray(X, dtype=np.float64)
            if not np.array_equal(order, np.arange(p)):
                Xo = Xo[:, order]
            self.xbar = w @ Xo if center else np.zeros(p)
            # one pass into a Fortran-order copy (columns are gathered contiguously);
            # the n x p copies were a third of a gaussian 5000 x 2000 path's time
            Xc = np.empty((n, p), order="F")
            np.subtract(Xo, self.xbar, out=Xc)
            Xo = Xc
            sq = np.einsum("i,ij,ij->j", w, Xo, Xo)
        sd = np.sqrt(np.maximum(sq, 0.0))
        self.scale = np.where(sd > 0, sd, 1.0) if standardize else np.ones(p)
        if gram is not None:  # X kept as given: centered and scaled inside the products
            self.X = Xo
            self.gram = gram / np.outer(self.scale, self.scale) if standardize else gram
        elif self.sparse:
            self.X = Xo @ sp.diags(1.0 / self.scale)
            self.X = sp.csc_matrix(self.X)
            self.shift = self.xbar / self.scale  # Xs = X - 1 shift^T
        else:
            if standardize:
                Xo /= self.scale
            self.X = Xo
        #: sum_i w_i Xs_ij^2 (p,)
        self.sqnorm = sq / self.scale**2

    def rmatmat(self, U: np.ndarray) -> np.ndarray:
        """``Xs^T U`` for ``U`` ``(n, r)``: ``(p, r)``."""
        if self.sparse:
            return np.asarray(self.X.T @ U) - np.outer(self.shift, U.sum(0))
        if self.gram is not None:
            return (self.X.T @ U - np.outer(self.xbar, U.sum(0))) / self.scale[:, None]
        return self.X.T @ U

    def columns(self, idx: np.ndarray) -> np.ndarray:
        """Dense copy of the columns ``idx``: ``(n, len(idx))``, Fortran order."""
        if self.sparse:
            return np.asfortranarray(self.X[:, idx].toarray() - self.shift[idx])
        if self.gram is not None:
            return np.asfortranarray((self.X[:, idx] - self.xbar[idx]) / self.scale[idx])
        return np.asfortranarray(self.X[:, idx])

    def gram_columns(self, idx: np.ndarray, w: np.ndarray) -> np.ndarray:
        """``Xs^T W Xs[:, idx]``: ``(p, len(idx))``."""
        return self.rmatmat(w[:, None] * self.columns(idx))
