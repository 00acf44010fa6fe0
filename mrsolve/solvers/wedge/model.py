"""The lasso over the wedge dictionary and the ReLU network it defines."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from mrsolve.solvers.convex_nn.network import TwoLayerNet
from mrsolve.solvers.validation import SeedLike, renamed_kwargs
from mrsolve.solvers.wedge.features import wedge_features, wedge_neurons
from mrsolve.solvers.wedge.lasso import PATH_RENAMES, LassoResult, lasso, lasso_path


@dataclass
class WedgeModel:
    """``f(x) = relu(x V^T + b) W + intercept`` with ``W`` sparse.

    Attributes:
        V, b, subsets: the dictionary (:func:`.features.wedge_neurons`).
        fit: the lasso solution (``coef`` ``(p, k)``, ``intercept`` ``(k,)``, ``beta``).
    """

    V: torch.Tensor
    b: torch.Tensor
    subsets: torch.Tensor
    fit: LassoResult

    @property
    def active(self) -> torch.Tensor:
        """Indices of the neurons with a non-zero output weight."""
        return torch.nonzero(self.fit.coef.abs().sum(1) > 0)[:, 0]

    def predict(self, X: torch.Tensor) -> torch.Tensor:
        """The lasso model ``Phi(X) W + intercept``: ``(n, k)``."""
        return wedge_features(X, self.V, self.b) @ self.fit.coef + self.fit.intercept

    def network(self) -> TwoLayerNet:
        """The two-layer ReLU network of the active neurons, balanced so each neuron's
        input and output weights have equal norm: ``s = sqrt(||W_j||)``, input weights
        ``s v_j``, bias ``s b_j``, output ``W_j / s``. Add :attr:`fit.intercept`."""
        j = self.active
        s = torch.linalg.vector_norm(self.fit.coef[j], dim=1).sqrt()
        return TwoLayerNet(
            self.V[j] * s[:, None], self.b[j] * s, (self.fit.coef[j] / s[:, None]).T, 0.0
        )


def _targets(Y: torch.Tensor) -> torch.Tensor:
    return Y[:, None] if Y.ndim == 1 else Y


def fit_wedge(
    X: torch.Tensor,
    Y: torch.Tensor,
    beta: float,
    max_features: int | None = None,
    seed: SeedLike = 0,
    **lasso_kwargs,
) -> WedgeModel:
    """Wedge dictionary of ``X`` ``(n, d)`` and its lasso fit to ``Y`` ``(n,)``/``(n, k)``."""
    V, b, subsets = wedge_neurons(X, max_features, seed)
    fit = lasso(wedge_features(X, V, b), _targets(Y), beta, **lasso_kwargs)
    return WedgeModel(V, b, subsets, fit)


@renamed_kwargs(**PATH_RENAMES)
def wedge_path(
    X: torch.Tensor,
    Y: torch.Tensor,
    *,
    penalties=None,
    n_penalties: int = 20,
    penalty_min_ratio: float = 1e-3,
    max_features: int | None = None,
    seed: SeedLike = 0,
    **lasso_kwargs,
) -> list[WedgeModel]:
    """:func:`fit_wedge` along a regularization path (largest ``beta`` first); the path
    arguments are those of :func:`.lasso.lasso_path` (old names deprecated)."""
    V, b, subsets = wedge_neurons(X, max_features, seed)
    fits = lasso_path(
        wedge_features(X, V, b),
        _targets(Y),
        penalties=penalties,
        n_penalties=n_penalties,
        penalty_min_ratio=penalty_min_ratio,
        **lasso_kwargs,
    )
    return [WedgeModel(V, b, subsets, f) for f in fits]
