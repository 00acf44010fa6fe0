"""scikit-learn estimators: lasso over wedge-product features (a sparse ReLU network)."""

from __future__ import annotations

import warnings

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mrsolve.solvers.validation import check_positive, resolve_device
from mrsolve.solvers.wedge.model import WedgeModel, fit_wedge


class _Wedge(BaseEstimator):
    """Shared logic; see :class:`WedgeRegressor` for the parameters."""

    def __init__(
        self,
        beta: float = 1e-3,
        max_features: int | None = 2000,
        max_iter: int = 50,
        tol: float = 1e-7,
        device: str = "cpu",
        random_state=None,
    ) -> None:
        self.beta = beta
        self.max_features = max_features
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    def _fit(self, X: np.ndarray, Y: np.ndarray) -> None:
        beta = check_positive("beta", self.beta)
        dev = resolve_device(self.device)
        seed = int(check_random_state(self.random_state).randint(2**31 - 1))
        Xt = torch.tensor(X, dtype=torch.float64, device=dev)
        Yt = torch.tensor(Y, dtype=torch.float64, device=dev)
        self.model_: WedgeModel = fit_wedge(
            Xt, Yt, beta, self.max_features, seed, max_iter=self.max_iter, tol=self.tol
        )
        active = self.model_.active
        self.coef_ = self.model_.fit.coef[active].cpu().numpy()
        self.intercept_ = self.model_.fit.intercept.cpu().numpy()
        self.neurons_ = (self.model_.V[active].cpu().numpy(), self.model_.b[active].cpu().numpy())
        self.n_dictionary_ = int(self.model_.V.shape[0])
        self.n_iter_ = self.model_.fit.n_iter
        self.gap_ = self.model_.fit.gap
        if not self.model_.fit.converged:
            warnings.warn(
                f"the lasso stopped at relative duality gap {self.gap_:.2g} > tol={self.tol} "
                f"after max_iter={self.max_iter} working-set iterations",
                ConvergenceWarning,
                stacklevel=3,
            )

    def _raw(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        Xt = torch.tensor(X, device=self.model_.V.device)
        return self.model_.predict(Xt).cpu().numpy()

    def network(self):
        """The fitted sparse ReLU network (``torch.nn.Module``); add ``intercept_``."""
        check_is_fitted(self)
        return self.model_.network()


class WedgeRegressor(RegressorMixin, _Wedge):
    """Squared-loss lasso over the wedge dictionary of the training samples.

    Args:
        beta: l1 weight of ``||y - Phi w - c||^2 / (2n) + beta ||w||_1``.
        max_features: dictionary cap (None: every ``d``-subset of samples, twice).
        max_iter, tol: working-set iterations and relative duality gap of the lasso.
        device: "cpu", "cuda" or "auto".
        random_state: seed of the random subsets.

    Attributes:
        coef_ ``(m, 1)`` and neurons_ ``(V (m, d), b (m,))`` of the active neurons,
        intercept_ ``(1,)``, model_ (:class:`.model.WedgeModel`), n_dictionary_,
        n_iter_ (working-set iterations), gap_ (relative duality gap reached).
    """

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True)
        self._fit(X, y)
        return self

    def predict(self, X) -> np.ndarray:
        return self._raw(X)[:, 0]


class WedgeClassifier(ClassifierMixin, _Wedge):
    """Classifier: the lasso regresses ``+-1`` class codes (one column per class beyond
    two, one versus rest); the prediction is the largest output (sign for two classes).
    Parameters as :class:`WedgeRegressor`."""

    def fit(self, X, y):
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if self.classes_.size < 2:
            raise ValueError(f"y must hold at least 2 classes, got {self.classes_.size} class")
        Y = 2.0 * np.eye(self.classes_.size)[codes] - 1
        self._fit(X, Y[:, 1:] if self.classes_.size == 2 else Y)
        return self

    def decision_function(self, X) -> np.ndarray:
        out = self._raw(X)
        return out[:, 0] if self.classes_.size == 2 else out

    def predict(self, X) -> np.ndarray:
        score = self.decision_function(X)
        if self.classes_.size == 2:
            return self.classes_[(score > 0).astype(int)]
        return self.classes_[np.argmax(score, axis=1)]
