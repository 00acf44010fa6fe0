"""The convex programs of two-layer networks as linear operators on group weights.

Data ``X`` ``(n, d)`` (bias column already appended when wanted), gates ``(P, d)`` giving
patterns ``D_p = diag(1[X g_p >= 0])``, ``k`` outputs. Group weights:

- gated ReLU: ``u`` of shape ``(k, P, d)``; prediction
  ``yhat[:, c] = sum_p D_p X u[c, p]``;
- ReLU / leaky ReLU / absolute value (``sigma(t) = max(t, kappa t)``, kappa 0 / in (0,1) /
  -1): ``u`` of shape ``(2, k, P, d)`` with ``u[0]`` the neurons of positive and ``u[1]``
  of negative output weight; prediction ``sum_p M_p X (u[0, c, p] - u[1, c, p])`` with
  ``M_p = D_p + kappa (I - D_p)``, subject to the cones ``(2 D_p - I) X u[j, c, p] >= 0``.

One group per (sign, output, neuron); the objective is
``datafit(yhat) + beta * sum_groups ||u_g||_2``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from mrsolve.solvers.datafit import Datafit
from mrsolve.solvers.validation import check_choice

#: activation name -> slope kappa on the negative side (None: gated ReLU, no cones)
ACTIVATIONS: dict[str, float | None] = {
    "gated_relu": None,
    "relu": 0.0,
    "leaky_relu": 0.01,
    "abs": -1.0,
}


def negative_slope(activation: str, leaky_slope: float | None = None) -> float | None:
    """kappa of ``activation`` (``leaky_slope`` overrides 0.01 for ``"leaky_relu"``)."""
    check_choice("activation", activation, ACTIVATIONS)
    if activation == "leaky_relu" and leaky_slope is not None:
        if not 0 < leaky_slope < 1:
            raise ValueError(f"leaky_slope must lie in (0, 1), got {leaky_slope!r}")
        return float(leaky_slope)
    return ACTIVATIONS[activation]


#: programs with at least this many outputs sum over the patterns first in
#: :meth:`ConvexProgram.forward` and :meth:`ConvexProgram.adjoint`
_PATTERNS_FIRST_MIN_OUTPUTS = 3


@dataclass(frozen=True)
class SolverResult:
    """What every convex-NN solver returns.

    Attributes:
        weights: group weights of the program's shape.
        info: the solver's own frozen ``...Result`` (iterations, convergence, status).
        multipliers: cone multipliers ``(n, 2, k, P)``, None for programs without cones.
        dual_bound: the best dual value the solver certified (a lower bound on the
            optimum, for :func:`.certificate.certificate`), None when it keeps none.
    """

    weights: torch.Tensor
    info: Any
    multipliers: torch.Tensor | None = None
    dual_bound: float | None = None


@dataclass
class ConvexProgram:
    """Operators of one convex program.

    Attributes:
        X: ``(n, d)`` data (bias column included).
        gates: ``(P, d)`` gate vectors.
        kappa: negative slope, or None for gated ReLU (unconstrained).
        n_outputs: ``k``.
        datafit: a :class:`mrsolve.solvers.datafit.Datafit` on ``(n, k)`` predictions.
        beta: group-lasso weight.
    """

    X: torch.Tensor
    gates: torch.Tensor
    kappa: float | None
    n_outputs: int
    datafit: Datafit
    beta: float

    def __post_init__(self) -> None:
        D = (self.X @ self.gates.T >= 0).to(self.X.dtype)
        self.sign = 2 * D - 1  # (n, P)
        self.weight = D if self.kappa is None else D + self.kappa * (1 - D)  # (n, P)
        # X^T R as a plain GEMM on a contiguous X^T is faster on the CPU than R^T X
        self._Xt = self.X.T.contiguous()
        # with several outputs, summing over the patterns first (a GEMM with inner size P
        # and (n, k, d) intermediates) beats projecting first ((n, k, P) intermediates) in
        # masked / masked_adjoint: 1.2-2x per product at k >= 3, slower at k = 1
        # (docs/convex_nn_design.md, session 12)
        self._patterns_first = self.n_outputs >= _PATTERNS_FIRST_MIN_OUTPUTS
        self._weight_t = self.weight.T.contiguous() if self._patterns_first else None

    @property
    def constrained(self) -> bool:
        return self.kappa is not None

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the group weights ``u``."""
        k, P, d = self.n_outputs, self.gates.shape[0], self.X.shape[1]
        return (2, k, P, d) if self.constrained else (k, P, d)

    def zeros(self) -> torch.Tensor:
        return torch.zeros(self.shape, dtype=self.X.dtype, device=self.X.device)

    def project(self, u: torch.Tensor) -> torch.Tensor:
        """``X u_g`` for every group: ``(n, *u.shape[:-1])``."""
        d = self.X.shape[1]
        ut = u.reshape(-1, d).T.contiguous()  # a contiguous right factor: a faster GEMM
        return (self.X @ ut).reshape(self.X.shape[0], *u.shape[:-1])

    def masked(self, v: torch.Tensor) -> torch.Tensor:
        """``sum_p M_p X v[c, p]`` for ``v`` ``(k, P, d)``: ``(n, k)``."""
        k, P, d = v.shape
        if self._patterns_first:
            m = self.weight @ v.transpose(0, 1).reshape(P, k * d)  # sum_p w_ip v_cpj
            return (m.reshape(-1, k, d) * self.X[:, None, :]).sum(-1)
        xv = self.X @ v.reshape(-1, d).T.contiguous()  # a contiguous right factor: faster
        return (xv.reshape(-1, k, P) * self.weight[:, None, :]).sum(-1)

    def masked_adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`masked`: ``r`` ``(n, k)`` to ``(k, P, d)``."""
        n, k = r.shape
        d = self.X.shape[1]
        if self._patterns_first:
            R = (r[:, :, None] * self.X[:, None, :]).reshape(n, -1)  # (n, k d)
            return (self._weight_t @ R).reshape(-1, k, d).transpose(0, 1)
        R = (r[:, :, None] * self.weight[:, None, :]).reshape(n, -1)
        return (self._Xt @ R).T.reshape(k, -1, d)

    def forward(self, u: torch.Tensor, xu: torch.Tensor | None = None) -> torch.Tensor:
        """Predictions ``(n, k)``; pass ``xu = project(u)`` to reuse it."""
        if xu is None:
            return self.masked(u[0] - u[1] if self.constrained else u)
        if self.constrained:
            xu = xu[:, 0] - xu[:, 1]
        return (xu * self.weight[:, None, :]).sum(-1)

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`forward`: ``r`` ``(n, k)`` to the shape of ``u``."""
        g = self.masked_adjoint(r)
        return torch.stack([g, -g]) if self.constrained else g

    def cone(self, u: torch.Tensor, xu: torch.Tensor | None = None) -> torch.Tensor:
        """``(2 D_p - I) X u_g`` for every group: ``(n, 2, k, P)`` (>= 0 when feasible)."""
        xu = self.project(u) if xu is None else xu
        return xu * self.sign[:, None, None, :]

    def cone_adjoint(self, s: torch.Tensor) -> torch.Tensor:
        """Adjoint of :meth:`cone`: ``(n, 2, k, P)`` to the shape of ``u``."""
        n = s.shape[0]
        S = (s * self.sign[:, None, None, :]).reshape(n, -1)
        return (self._Xt @ S).T.reshape(self.shape)

    def group_norms(self, u: torch.Tensor) -> torch.Tensor:
        return torch.linalg.vector_norm(u, dim=-1)

    def objective(self, u: torch.Tensor) -> float:
        """``datafit(forward(u)) + beta * sum ||u_g||`` (cones not checked)."""
        return float(self.datafit.value(self.forward(u))) + self.beta * float(
            self.group_norms(u).sum()
        )

    def violation(self, u: torch.Tensor) -> float:
        """Largest cone violation ``max(0, -(2 D_p - I) X u_g)`` (0 for gated ReLU)."""
        if not self.constrained:
            return 0.0
        return max(0.0, float((-self.cone(u)).max()))
