"""Datafits of generalized linear models, as functions of the linear predictor.

A datafit holds the targets ``y``, observation weights ``w`` (normalized to mean 1)
and an offset ``o``; it evaluates the weighted mean loss of ``eta + o`` where ``eta``
is the linear predictor (shape ``(n,)`` or ``(n, k)``, like ``y``)::

    value(eta) = (1/n) * sum_i w_i * l(eta_i + o_i, y_i)

``grad``, ``hessian_diag`` and ``lipschitz`` all refer to this same ``1/n``-scaled
function of ``eta``. For a design ``X`` and ``eta = X @ beta`` the gradient in beta is
``X.T @ grad(eta)`` and ``lipschitz * ||X||_2^2`` bounds the curvature in beta.

``working(eta)`` gives the IRLS quadratic model used by coordinate descent:
``value(eta') ~= const + 1/2 * sum h * (eta' - z)^2`` with ``h = hessian_diag(eta)``.

Losses (per observation, offset included in ``eta``):

- Quadratic: ``l = (eta - y)^2 / 2`` (summed over columns when 2-D);
- Logistic: ``l = log(1 + exp(eta)) - y * eta`` with ``y`` in [0, 1] (columns independent);
- Multinomial: ``l = logsumexp_k(eta_k) - sum_k y_k * eta_k`` with ``y`` one-hot
  (or class probabilities) of shape ``(n, k)``; integer labels ``(n,)`` are one-hot encoded;
- Poisson: ``l = exp(eta) - y * eta`` (log link, the ``log(y!)`` constant dropped).

``deviance(eta)`` is ``2 * (value(eta) - value(saturated))``: the weighted mean squared
error for Quadratic, the usual GLM deviance divided by ``n`` otherwise.
"""

from __future__ import annotations

import torch

from mrsolve.solvers.validation import check_finite, check_shape

# Floor on the IRLS weights (relative to w_i / n) so working responses stay finite
# when a logistic or multinomial probability saturates (glmnet uses the same guard).
_MIN_CURVATURE = 1e-5


def _xlogx(x: torch.Tensor) -> torch.Tensor:
    """x * log(x) with the convention 0 * log(0) = 0."""
    return torch.where(x > 0, x * torch.log(torch.where(x > 0, x, torch.ones_like(x))), 0.0 * x)


def _softmax(e: torch.Tensor) -> torch.Tensor:
    """Softmax over the last axis, written out: ``torch.softmax`` spins up its thread pool
    even for a (60, 3) tensor and is ~100x slower there on a busy CPU."""
    z = torch.exp(e - e.amax(-1, keepdim=True))
    return z / z.sum(-1, keepdim=True)


class Datafit:
    """Base class: subclasses define ``_loss``, ``_grad``, ``_curvature`` and ``mean``.

    Args:
        y: targets, tensor of shape ``(n,)`` or ``(n, k)``.
        weights: non-negative observation weights ``(n,)``; normalized to mean 1.
            None means all ones.
        offset: added to ``eta`` before the loss; shape of ``y``, or ``(n,)`` for a
            2-D ``y`` (then broadcast over columns). None means zero.
    """

    #: bound on the second derivative of ``l`` in ``eta`` (None: unbounded)
    curvature_bound: float | None = 1.0

    def __init__(
        self,
        y: torch.Tensor,
        weights: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
    ) -> None:
        y = torch.as_tensor(y)
        if not y.is_floating_point():
            y = y.to(torch.get_default_dtype())
        if y.ndim not in (1, 2):
            raise ValueError(f"y must have shape (n,) or (n, k), got {tuple(y.shape)}")
        check_finite("y", y)
        self._check_y(y)
        self.y = y
        n = y.shape[0]
        if weights is None:
            w = torch.ones(n, dtype=y.dtype, device=y.device)
        else:
            w = torch.as_tensor(weights, dtype=y.dtype, device=y.device)
            check_shape("weights", w, (n,), "one weight per observation")
            check_finite("weights", w)
            if bool((w < 0).any()) or float(w.sum()) <= 0:
                raise ValueError("weights must be >= 0 with a positive sum, got negative or all 0")
            w = w / w.mean()
        self.weights = w
        if offset is None:
            self.offset = torch.zeros((), dtype=y.dtype, device=y.device)
        else:
            o = torch.as_tensor(offset, dtype=y.dtype, device=y.device)
            if tuple(o.shape) not in (tuple(y.shape), (n,)):
                raise ValueError(
                    f"offset must have shape {tuple(y.shape)} or ({n},), got {tuple(o.shape)}"
                )
            check_finite("offset", o)
            self.offset = o[:, None] if (o.ndim == 1 and y.ndim == 2) else o

    @property
    def n(self) -> int:
        """Number of observations."""
        return self.y.shape[0]

    def _check_y(self, y: torch.Tensor) -> None:
        """Raise ValueError when ``y`` is outside the family's support."""

    def _w(self, t: torch.Tensor) -> torch.Tensor:
        """Observation weights shaped to broadcast against ``t`` and divided by n."""
        w = self.weights / self.n
        return w[:, None] if t.ndim == 2 else w

    def _eta(self, eta: torch.Tensor) -> torch.Tensor:
        check_shape("eta", eta, self.y.shape, "the linear predictor (shape of y)")
        return eta + self.offset

    def value(self, eta: torch.Tensor) -> torch.Tensor:
        """Weighted mean loss at ``eta + offset`` (a 0-d tensor)."""
        return self.value_by_output(eta).sum()

    def value_by_output(self, eta: torch.Tensor) -> torch.Tensor:
        """:meth:`value` split over the columns of ``(n, k)`` targets: ``(k,)`` (0-d for
        ``(n,)`` targets); for the families whose loss is a sum over entries (all but
        :class:`Multinomial`)."""
        e = self._eta(eta)
        return (self._w(e) * self._loss(e)).sum(0)

    def grad(self, eta: torch.Tensor) -> torch.Tensor:
        """Gradient of :meth:`value` in ``eta`` (shape of ``eta``)."""
        e = self._eta(eta)
        return self._w(e) * self._grad(e)

    def hessian_diag(self, eta: torch.Tensor) -> torch.Tensor:
        """Diagonal of the Hessian of :meth:`value` in ``eta`` (per class for Multinomial),
        floored at ``1e-5 * w_i / n``."""
        e = self._eta(eta)
        return self._w(e) * self._curvature(e).clamp_min(_MIN_CURVATURE)

    def working(self, eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """IRLS weights ``h`` (= :meth:`hessian_diag`) and working response
        ``z = eta - grad / h``, both of the shape of ``eta``."""
        h = self.hessian_diag(eta)
        step = self.grad(eta) / torch.where(h > 0, h, 1.0)  # zero-weight rows: z = eta
        return h, eta - step

    @property
    def lipschitz(self) -> float | None:
        """Bound on the curvature of :meth:`value` in ``eta``: ``c * max_i w_i / n`` with
        ``c`` = 1 (Quadratic), 1/4 (Logistic), 1/2 (Multinomial); None for Poisson
        (unbounded: use backtracking)."""
        if self.curvature_bound is None:
            return None
        return self.curvature_bound * float(self.weights.max()) / self.n

    def deviance(self, eta: torch.Tensor) -> torch.Tensor:
        """``2 * (value(eta) - value at the saturated model)`` (a 0-d tensor)."""
        e = self._eta(eta)
        return 2 * (self._w(e) * (self._loss(e) - self._saturated_loss())).sum()

    def mean(self, eta: torch.Tensor) -> torch.Tensor:
        """Inverse link: the expected target at linear predictor ``eta`` (offset NOT added)."""
        raise TypeError(f"{type(self).__name__} does not define an inverse link")

    def _loss(self, e: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} does not define a loss")

    def _grad(self, e: torch.Tensor) -> torch.Tensor:
        return self.mean(e) - self.y

    def _curvature(self, e: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} does not define a curvature")

    def _saturated_loss(self) -> torch.Tensor:
        raise TypeError(f"{type(self).__name__} does not define a saturated loss")


class Quadratic(Datafit):
    """Least squares: ``value = (1/2n) sum_i w_i ||eta_i + o_i - y_i||^2``."""

    curvature_bound = 1.0

    def mean(self, eta: torch.Tensor) -> torch.Tensor:
        return eta

    def _loss(self, e: torch.Tensor) -> torch.Tensor:
        return 0.5 * (e - self.y) ** 2

    def _curvature(self, e: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(e)

    def _saturated_loss(self) -> torch.Tensor:
        return torch.zeros_like(self.y)


class Logistic(Datafit):
    """Binomial log-likelihood with logit link; ``y`` in [0, 1] (labels or proportions)."""

    curvature_bound = 0.25

    def _check_y(self, y: torch.Tensor) -> None:
        if bool((y < 0).any() or (y > 1).any()):
            raise ValueError("y must lie in [0, 1] for the logistic datafit, got values outside")

    def mean(self, eta: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(eta)

    def _loss(self, e: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.softplus(e) - self.y * e

    def _curvature(self, e: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(e)
        return p * (1 - p)

    def _saturated_loss(self) -> torch.Tensor:
        # softplus(logit y) - y logit(y) = -y log y - (1 - y) log(1 - y): the entropy
        return -(_xlogx(self.y) + _xlogx(1 - self.y))


class Multinomial(Datafit):
    """Multinomial log-likelihood with softmax link; ``y`` of shape ``(n, k)`` (one-hot or
    probabilities) or integer class labels ``(n,)`` in ``0..k-1`` (one-hot encoded)."""

    curvature_bound = 0.5

    def __init__(
        self,
        y: torch.Tensor,
        weights: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
        n_classes: int | None = None,
    ) -> None:
        y = torch.as_tensor(y)
        if y.ndim == 1:
            if y.is_floating_point() or y.is_complex():
                raise TypeError(f"1-D y must hold integer class labels, got dtype {y.dtype}")
            if bool((y < 0).any()):
                raise ValueError("class labels in y must be >= 0, got negative labels")
            k = int(y.max()) + 1 if n_classes is None else int(n_classes)
            if k <= int(y.max()):
                raise ValueError(f"n_classes must exceed the largest label {int(y.max())}, got {k}")
            y = torch.nn.functional.one_hot(y.long(), k).to(torch.get_default_dtype())
        super().__init__(y, weights, offset)
        if self.y.ndim != 2:
            raise ValueError(f"y must have shape (n, k) for Multinomial, got {tuple(y.shape)}")

    def _check_y(self, y: torch.Tensor) -> None:
        if y.ndim == 2 and (
            bool((y < 0).any()) or not torch.allclose(y.sum(1), torch.ones_like(y[:, 0]))
        ):
            raise ValueError("rows of y must be class probabilities (>= 0, summing to 1)")

    def _w(self, t: torch.Tensor) -> torch.Tensor:
        return (self.weights / self.n)[:, None]

    def value(self, eta: torch.Tensor) -> torch.Tensor:
        e = self._eta(eta)
        loss = torch.logsumexp(e, dim=1) - (self.y * e).sum(1)
        return (self.weights / self.n * loss).sum()

    def deviance(self, eta: torch.Tensor) -> torch.Tensor:
        e = self._eta(eta)
        loss = torch.logsumexp(e, dim=1) - (self.y * e).sum(1) + _xlogx(self.y).sum(1)
        return 2 * (self.weights / self.n * loss).sum()

    def mean(self, eta: torch.Tensor) -> torch.Tensor:
        return _softmax(eta)

    def _curvature(self, e: torch.Tensor) -> torch.Tensor:
        p = _softmax(e)
        return p * (1 - p)


class Poisson(Datafit):
    """Poisson log-likelihood with log link; ``y >= 0`` (counts or rates)."""

    curvature_bound = None

    def _check_y(self, y: torch.Tensor) -> None:
        if bool((y < 0).any()):
            raise ValueError("y must be >= 0 for the Poisson datafit, got negative values")

    def mean(self, eta: torch.Tensor) -> torch.Tensor:
        return torch.exp(eta)

    def _loss(self, e: torch.Tensor) -> torch.Tensor:
        return torch.exp(e) - self.y * e

    def _curvature(self, e: torch.Tensor) -> torch.Tensor:
        return torch.exp(e)

    def _saturated_loss(self) -> torch.Tensor:
        return self.y - _xlogx(self.y)


#: family name -> datafit class
FAMILIES: dict[str, type[Datafit]] = {
    "gaussian": Quadratic,
    "binomial": Logistic,
    "multinomial": Multinomial,
    "poisson": Poisson,
}
