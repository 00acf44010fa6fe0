"""scikit-learn estimators: globally optimal two-layer networks by convex training."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from mrsolve.solvers.convex_nn.api import ConvexNNResult, add_bias, solve
from mrsolve.solvers.convex_nn.network import TwoLayerNet
from mrsolve.solvers.convex_nn.patterns import sample_gates


def default_tol(activation: str, loss: str) -> float:
    """The estimators' ``tol`` when none is given: a certified relative duality gap of
    1e-2 for gated ReLU (FISTA; its gap closes like the square root of the
    suboptimality, so its objectives sit ~1e-5-1e-4 above the optimum there) and 1e-3 for
    the cone-constrained activations with the squared loss (the IPM); 1e-5 for ADMM's
    relative residuals (cones with the logistic / multinomial losses). Chosen on the
    development sets of ``benchmarks/convex_nn_unseen.py`` (docs/convex_nn.md)."""
    if activation == "gated_relu":
        return 1e-2
    return 1e-3 if loss == "squared" else 1e-5


class _ConvexNN(BaseEstimator):
    """Shared fit logic; see :class:`ConvexNNRegressor` for the parameters."""

    def __init__(
        self,
        activation: str = "relu",
        n_gates: int = 64,
        gates=None,
        beta: float = 1e-3,
        solver: str = "auto",
        bias: bool = True,
        max_iter: int = 5000,
        tol: float | None = None,
        device: str = "cpu",
        random_state=None,
    ) -> None:
        self.activation = activation
        self.n_gates = n_gates
        self.gates = gates
        self.beta = beta
        self.solver = solver
        self.bias = bias
        self.max_iter = max_iter
        self.tol = tol
        self.device = device
        self.random_state = random_state

    def _fit(self, X: np.ndarray, y: np.ndarray, loss: str) -> None:
        Xt = torch.tensor(X, dtype=torch.float64)
        Xa = add_bias(Xt) if self.bias else Xt
        if self.gates is None:
            seed = int(check_random_state(self.random_state).randint(2**31 - 1))
            gates = sample_gates(Xa, int(self.n_gates), seed=seed, bias_quantiles=self.bias)
            if gates.shape[0] == 0:
                gates = torch.ones(1, Xa.shape[1], dtype=torch.float64)
        else:
            gates = self.gates
        sol = solve(
            X,
            y,
            gates,
            self.beta,
            activation=self.activation,
            loss=loss,
            solver=self.solver,
            bias=self.bias,
            max_iter=self.max_iter,
            tol=default_tol(self.activation, loss) if self.tol is None else self.tol,
            device=self.device,
            n_fresh=64,
        )
        self.solution_: ConvexNNResult = sol
        self.gates_ = sol.gates.cpu().numpy()
        self.objective_ = sol.objective
        self.certificate_ = sol.certificate
        self.n_iter_ = sol.n_iter

    def _raw(self, X) -> np.ndarray:
        check_is_fitted(self)
        X = validate_data(self, X, reset=False, dtype=np.float64)
        out = self.solution_.decision_function(X)
        return np.asarray(out)

    def to_torch(self) -> TwoLayerNet:
        """The fitted non-convex network as a ``torch.nn.Module``."""
        check_is_fitted(self)
        return self.solution_.to_torch()


class ConvexNNRegressor(RegressorMixin, _ConvexNN):
    """Two-layer network regression (squared loss), trained to global optimality on the
    activation patterns of ``gates`` (or ``n_gates`` Gaussian gates).

    Args:
        activation: "relu", "gated_relu", "leaky_relu" or "abs".
        n_gates: number of Gaussian gates drawn when ``gates`` is None.
        gates: ``(P, d + bias)`` gate vectors.
        beta: weight decay of ``1/(2n) ||f(X) - y||^2 + beta/2 (||W||^2 + ||b||^2 + ||a||^2)``.
        solver: "auto", "fista", "ipm", "admm" or "cvxpy".
        bias: fit biases (a column of ones; decayed like the weights).
        max_iter, tol: solver budget and tolerance (FISTA and IPM: certified relative
            duality gap; ADMM: relative residuals; see
            :func:`~mrsolve.solvers.convex_nn.api.solve`); ``tol=None`` takes
            :func:`default_tol` of the activation and loss.
        device: "cpu", "cuda" or "auto".
        random_state: seed of the gate sampling.

    Attributes:
        objective_, certificate_ (``duality_gap``, ``constraint_violation``,
        ``pattern_gap``), gates_, solution_, n_iter_.
    """

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def fit(self, X, y) -> ConvexNNRegressor:
        X, y = validate_data(self, X, y, dtype=np.float64, multi_output=True, y_numeric=True)
        self._fit(X, np.asarray(y, dtype=np.float64), "squared")
        return self

    def predict(self, X) -> np.ndarray:
        return self._raw(X)


class ConvexNNClassifier(ClassifierMixin, _ConvexNN):
    """Two-layer network classifier: logistic loss for two classes, multinomial otherwise
    (same parameters as :class:`ConvexNNRegressor`)."""

    def fit(self, X, y) -> ConvexNNClassifier:
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        self.classes_, codes = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"y must hold at least 2 classes, got {len(self.classes_)} (one class)"
            )
        loss = "logistic" if len(self.classes_) == 2 else "multinomial"
        self._fit(X, codes.astype(np.int64), loss)
        return self

    def decision_function(self, X) -> np.ndarray:
        """Logits: ``(n,)`` for two classes, ``(n, n_classes)`` otherwise."""
        return self._raw(X)

    def predict_proba(self, X) -> np.ndarray:
        z = self.decision_function(X)
        if z.ndim == 1:
            p1 = 1 / (1 + np.exp(-z))
            return np.stack([1 - p1, p1], axis=1)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def predict(self, X) -> np.ndarray:
        z = self.decision_function(X)
        idx = (z > 0).astype(int) if z.ndim == 1 else z.argmax(axis=1)
        return self.classes_[idx]
