"""The GLM losses of the path solver's hot loop, in numpy, with their Fenchel conjugates.

:mod:`mrsolve.solvers.datafit` (torch) is the public datafit and validates the input;
the path solver calls value / gradient / curvature thousands of times on small arrays,
where torch's per-operation dispatch cost dominated (docs/lasso_design.md), so the same
losses are evaluated here in numpy (tests check both agree). Arrays are ``(n, k)``;
``w`` holds the observation weights divided by n, ``(n, 1)``.

Dual of ``sum_i w_i l(eta_i + o_i, y_i)``: a dual point is ``theta = w (y - m)`` for a
"dual mean" ``m`` in the family's mean domain, and ``-f*(-theta) = sum w H(m) - sum theta o``
with ``H`` the entropy-like function below (gaussian ``(y^2 - m^2) / 2``, binomial the
binary entropy, poisson ``m - m log m``, multinomial the Shannon entropy of a row).
"""

from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np
from scipy.special import expit, xlogy

#: floor on the IRLS curvature relative to w_i (as in :mod:`mrsolve.solvers.datafit`)
MIN_CURVATURE = 1e-5


class Family(ABC):
    """Loss of one family on targets ``y`` ``(n, k)``, weights ``w`` ``(n, 1)`` (sum 1)
    and offset ``o`` (``(n, k)`` or 0)."""

    #: bound on l'' (None: unbounded); sets the gap-safe screening radius
    curvature: float | None = 1.0

    def __init__(self, y: np.ndarray, w: np.ndarray, offset) -> None:
        self.y, self.w, self.o = y, w, offset
        self.saturated = float(np.sum(w * self._loss_sat()))

    @abstractmethod
    def mean(self, eta: np.ndarray) -> np.ndarray:
        """Expected target at ``eta + offset``."""

    @abstractmethod
    def loss(self, e: np.ndarray) -> np.ndarray:
        """Loss at the linear predictor ``e`` (offset included, ``(..., n, k)``), per entry
        or, where the classes of a row share one loss, per row ``(..., n, 1)``."""

    @abstractmethod
    def _loss_sat(self) -> np.ndarray:
        """Loss at the saturated model (mean = y)."""

    @abstractmethod
    def entropy(self, m: np.ndarray) -> np.ndarray:
        """``H(m)`` per entry at the dual mean ``m`` (module doc)."""

    @abstractmethod
    def curv(self, mu: np.ndarray) -> np.ndarray:
        """l'' at the mean ``mu`` (before weights)."""

    def in_domain(self, m: np.ndarray) -> bool:
        return True

    # -- shared ----------------------------------------------------------------------
    def value(self, eta: np.ndarray) -> float:
        """``sum_i w_i l(eta_i + o_i, y_i)``."""
        return float(np.sum(self.w * self.loss(eta + self.o)))

    def deviance(self, eta: np.ndarray) -> float:
        """``2 (value - value at the saturated model)``."""
        return 2.0 * (self.value(eta) - self.saturated)

    def grad_hess(self, eta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Gradient ``w (mu - y)`` and curvature ``w max(l'', 1e-5)`` in ``eta``."""
        mu = self.mean(eta)
        return self.w * (mu - self.y), self.w * np.maximum(self.curv(mu), MIN_CURVATURE)

    def dual_value(self, theta: np.ndarray) -> float:
        """``-f*(-theta)`` (``-inf`` outside the domain); ``theta = w (y - m)``."""
        wpos = self.w[:, 0] > 0
        m = self.y.copy()
        m[wpos] -= theta[wpos] / self.w[wpos]
        if not self.in_domain(m):
            return -np.inf
        return float(np.sum(self.w * self.entropy(m)) - np.sum(theta * self.o))


class Gaussian(Family):
    curvature = 1.0

    def mean(self, eta):
        return eta + self.o

    def loss(self, e):
        return 0.5 * (e - self.y) ** 2

    def _loss_sat(self):
        return np.zeros_like(self.y)

    def entropy(self, m):
        return 0.5 * (self.y**2 - m**2)

    def curv(self, mu):
        return np.ones_like(mu)

    def grad_hess(self, eta):  # no floor needed, and skip the mean allocation
        return self.w * (eta + self.o - self.y), np.broadcast_to(self.w, eta.shape)


class Binomial(Family):
    curvature = 0.25

    def mean(self, eta):
        return expit(eta + self.o)

    def loss(self, e):
        return np.logaddexp(0.0, e) - self.y * e

    def _loss_sat(self):
        return -xlogy(self.y, self.y) - xlogy(1 - self.y, 1 - self.y)

    def entropy(self, m):
        return -xlogy(m, m) - xlogy(1 - m, 1 - m)

    def curv(self, mu):
        return mu * (1 - mu)

    def in_domain(self, m):
        return bool(np.all((m >= 0) & (m <= 1)))


class Poisson(Family):
    curvature = None

    def mean(self, eta):
        return np.exp(eta + self.o)

    def loss(self, e):
        return np.exp(e) - self.y * e

    def _loss_sat(self):
        return self.y - xlogy(self.y, self.y)

    def entropy(self, m):
        return m - xlogy(m, m)

    def curv(self, mu):
        return mu

    def in_domain(self, m):
        return bool(np.all(m >= 0))


class Multinomial(Family):
    """Softmax over the k columns; ``y`` one-hot. The entropy is summed over a row."""

    curvature = 1.0  # -entropy is 1-strongly convex on the simplex

    def mean(self, eta):
        e = eta + self.o
        z = np.exp(e - e.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    def loss(self, e):
        """Per-row loss ``(..., n, 1)``: log-sum-exp over the classes minus the target's."""
        mx = e.max(-1, keepdims=True)
        lse = mx + np.log(np.exp(e - mx).sum(-1, keepdims=True))
        return lse - (self.y * e).sum(-1, keepdims=True)

    def _loss_sat(self):
        return -xlogy(self.y, self.y)

    def entropy(self, m):
        return -xlogy(m, m)

    def curv(self, mu):
        return mu * (1 - mu)

    def in_domain(self, m):
        return bool(np.all(m >= 0))


FAMILY_CLASSES: dict[str, type[Family]] = {
    "gaussian": Gaussian,
    "binomial": Binomial,
    "poisson": Poisson,
    "multinomial": Multinomial,
}
