"""``solve``: train a convex two-layer network on explicit gates; warm-started paths."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mrsolve.solvers.convex_nn.admm_solver import solve_admm
from mrsolve.solvers.convex_nn.certificate import certificate
from mrsolve.solvers.convex_nn.cvxpy_solver import solve_cvxpy
from mrsolve.solvers.convex_nn.fista_solver import solve_fista
from mrsolve.solvers.convex_nn.ipm_solver import ipm_entries, solve_ipm_exact
from mrsolve.solvers.convex_nn.network import TwoLayerNet, network_from_groups
from mrsolve.solvers.convex_nn.patterns import sample_gates
from mrsolve.solvers.convex_nn.problem import ConvexProgram, negative_slope
from mrsolve.solvers.datafit import Datafit, Logistic, Multinomial, Quadratic
from mrsolve.solvers.validation import check_choice, check_finite, check_positive, resolve_device

LOSSES = ("squared", "logistic", "multinomial")
SOLVERS = ("auto", "fista", "ipm", "admm", "cvxpy")
#: "auto" uses the interior-point method when its arrays hold at most this many floats
#: (1e8: 800 MB; digits with 10 outputs and 50 gates needs ~7.8e7)
IPM_MAX_ENTRIES = 1e8


def _as_tensor(name: str, a: Any, dtype: torch.dtype | None, device: torch.device) -> torch.Tensor:
    if isinstance(a, torch.Tensor):
        t = a
    else:
        try:
            t = torch.from_numpy(np.array(a))  # a copy: the caller's array is never shared
        except (TypeError, ValueError) as err:
            raise TypeError(f"{name} must be an array or tensor, got {type(a).__name__}") from err
    if t.is_complex():
        raise TypeError(f"{name} must be real, got dtype {t.dtype}")
    if dtype is not None:
        t = t.to(dtype)
    return t.to(device)


def add_bias(X: torch.Tensor) -> torch.Tensor:
    """Append a column of ones (the bias input)."""
    return torch.cat([X, torch.ones_like(X[:, :1])], 1)


def make_datafit(loss: str, y: torch.Tensor, dtype: torch.dtype) -> Datafit:
    """Datafit on ``(n, k)`` predictions for ``loss``; ``y`` as given to :func:`solve`."""
    check_choice("loss", loss, LOSSES)
    if loss == "squared":
        y2 = y[:, None] if y.ndim == 1 else y
        return Quadratic(y2.to(dtype))
    if loss == "logistic":
        y2 = y[:, None] if y.ndim == 1 else y
        if y2.shape[1] != 1 or not bool(((y2 == 0) | (y2 == 1)).all()):
            raise ValueError("y must hold 0/1 labels of shape (n,) for loss='logistic'")
        return Logistic(y2.to(dtype))
    if y.ndim == 1:
        if y.is_floating_point() and not bool((y == y.round()).all()):
            raise ValueError("y must hold integer class labels for loss='multinomial'")
        y = y.long()
        return Multinomial(torch.nn.functional.one_hot(y, int(y.max()) + 1).to(dtype))
    return Multinomial(y.to(dtype))


@dataclass
class ConvexNNSolution:
    """A solved convex program.

    Attributes:
        weights: group weights, ``(k, P, d)`` (gated ReLU) or ``(2, k, P, d)``.
        gates: ``(P, d)`` gates (``d`` includes the bias column when ``bias``).
        activation, kappa, bias, beta, loss: the program.
        objective: ``datafit + beta * sum ||u_g||`` at ``weights``.
        certificate: see :func:`mrsolve.solvers.convex_nn.certificate.certificate`.
        info: the solver's info (iterations, convergence).
        multipliers: cone multipliers ``(n, 2, k, P)`` when the program has cones.
    """

    weights: torch.Tensor
    gates: torch.Tensor
    activation: str
    kappa: float | None
    bias: bool
    beta: float
    loss: str
    objective: float
    certificate: dict[str, float] = field(default_factory=dict)
    info: Any = None
    multipliers: torch.Tensor | None = None
    squeeze: bool = False
    numpy: bool = False

    def decision_function(self, X: Any) -> torch.Tensor | np.ndarray:
        """Network output on new data ``(n, k)`` (``(n,)`` when ``y`` was 1-D for the squared
        or logistic loss): ``sigma(X v) - sigma(X w)`` summed over neurons, or the gated
        network; on the training data it equals the convex model's prediction."""
        Xt = _as_tensor("X", X, self.weights.dtype, self.weights.device)
        if Xt.ndim != 2 or Xt.shape[1] + self.bias != self.gates.shape[1]:
            raise ValueError(
                f"X must have shape (n, {self.gates.shape[1] - self.bias}), got {tuple(Xt.shape)}"
            )
        with torch.no_grad():
            out = self.to_torch()(Xt)
        out = out[:, 0] if self.squeeze else out
        return out.cpu().numpy() if self.numpy else out

    def to_torch(self) -> TwoLayerNet:
        """The non-convex network (``torch.nn.Module``) with the same predictions and
        weight-decay objective."""
        return network_from_groups(self.weights, self.kappa, self.bias, self.gates)


def _check_gates(gates: Any, d: int, dtype, device) -> torch.Tensor:
    g = _as_tensor("gates", gates, dtype, device)
    if g.ndim != 2 or g.shape[1] != d or g.shape[0] == 0:
        raise ValueError(
            f"gates must have shape (P, {d}) with P >= 1 (d includes the bias column), "
            f"got {tuple(g.shape)}"
        )
    check_finite("gates", g)
    return g


def solve(
    X: Any,
    y: Any,
    gates: Any,
    beta: float,
    activation: str = "relu",
    loss: str = "squared",
    solver: str = "auto",
    bias: bool = False,
    leaky_slope: float | None = None,
    max_iter: int = 10000,
    tol: float = 1e-6,
    init: torch.Tensor | None = None,
    certify: bool = True,
    n_fresh: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
    callback: Callable | None = None,
    **solver_options: Any,
) -> ConvexNNSolution:
    """Globally optimal two-layer network on the patterns of ``gates``.

    Args:
        X: ``(n, d)`` data (numpy or torch; numpy computes in float64).
        y: ``(n,)`` or ``(n, k)`` targets (squared); 0/1 labels (logistic); integer
            labels ``(n,)`` or class probabilities ``(n, k)`` (multinomial).
        gates: ``(P, d + bias)`` gate vectors (see :mod:`.patterns`).
        beta: weight decay ``>= 0``.
        activation: ``"relu"``, ``"gated_relu"``, ``"leaky_relu"`` or ``"abs"``.
        loss: ``"squared"`` (``1/(2n) ||yhat - y||^2``), ``"logistic"`` or ``"multinomial"``
            (mean negative log-likelihood).
        solver: ``"fista"`` (gated ReLU), ``"ipm"`` (cones, squared loss: interior point,
            :mod:`.ipm_solver`), ``"admm"`` (cones, any loss), ``"cvxpy"`` (reference) or
            ``"auto"`` (FISTA without cones; with cones the IPM for the squared loss when
            its arrays fit in ``IPM_MAX_ENTRIES`` floats, ADMM otherwise).
        bias: append a column of ones to ``X``.
        leaky_slope: negative slope for ``"leaky_relu"`` (default 0.01).
        max_iter, tol: iteration budget and tolerance of the iterative solvers: FISTA and
            the IPM stop at a certified relative duality gap <= ``tol`` (a bound on the
            relative suboptimality; the IPM's points are exactly feasible, and below the
            ~1e-8 it reaches in float64 it finishes with the exact polish), ADMM at
            relative primal / dual residuals <= ``tol``. The IPM runs at most
            ``min(max_iter, 100)`` Newton iterations.
        init: warm start (group weights of the same program shape; FISTA and ADMM: the
            IPM starts from its own interior point).
        certify: compute the certificate (duality gap, violation, pattern gap on
            ``n_fresh`` fresh Gaussian gates drawn with ``seed + 1``).
        device: "cpu", "cuda" or "auto".
        callback: passed to the iterative solver.
        solver_options: passed to CVXPY's ``solve`` (solver="cvxpy") or to ADMM (``rho``,
            ``cone_scale``, ``polish``, ``polish_after``, ``polish_max_nnz``: see
            :func:`~mrsolve.solvers.convex_nn.admm_solver.solve_admm`; ``"auto"`` picks
            ADMM when any is given).
    """
    dev = resolve_device(device)
    given_numpy = not isinstance(X, torch.Tensor)
    Xt = _as_tensor("X", X, None, dev)
    if Xt.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(Xt.shape)}")
    dtype = Xt.dtype if Xt.is_floating_point() and not given_numpy else torch.float64
    Xt = Xt.to(dtype)
    check_finite("X", Xt)
    yt = _as_tensor("y", y, None, dev)
    if yt.ndim not in (1, 2) or yt.shape[0] != Xt.shape[0]:
        raise ValueError(
            f"y must have shape ({Xt.shape[0]},) or ({Xt.shape[0]}, k), got {tuple(yt.shape)}"
        )
    check_finite("y", yt.to(dtype))
    beta = check_positive("beta", beta, allow_zero=True)
    kappa = negative_slope(activation, leaky_slope)
    check_choice("solver", solver, SOLVERS)
    if bias:
        Xt = add_bias(Xt)
    g = _check_gates(gates, Xt.shape[1], dtype, dev)
    datafit = make_datafit(loss, yt, dtype)
    program = ConvexProgram(Xt, g, kappa, datafit.y.shape[1], datafit, beta)
    if solver == "auto":
        if kappa is None:
            solver = "fista"
        elif (
            isinstance(datafit, Quadratic)
            and not solver_options  # ADMM's options ask for ADMM
            and ipm_entries(program) <= IPM_MAX_ENTRIES
        ):
            solver = "ipm"
        else:
            solver = "admm"
    if solver == "ipm" and (kappa is None or not isinstance(datafit, Quadratic)):
        raise ValueError(
            "solver 'ipm' handles the cone-constrained activations with loss='squared', got "
            f"activation={activation!r}, loss={loss!r}"
        )
    if solver == "ipm" and solver_options:
        raise TypeError(f"solver 'ipm' takes no solver options, got {sorted(solver_options)}")
    if init is not None:
        init = _as_tensor("init", init, dtype, dev)
        if tuple(init.shape) != program.shape:
            raise ValueError(f"init must have shape {program.shape}, got {tuple(init.shape)}")
    if solver == "cvxpy":
        u, info, mu = solve_cvxpy(program, **solver_options)
    elif solver == "fista":
        u, info, mu = solve_fista(program, init, max_iter, tol, callback)
    elif solver == "ipm":
        u, info, mu = solve_ipm_exact(program, min(max_iter, 100), tol, callback)
        if info.status == "no interior":  # beta = 0 or a row orthogonal to a gate
            solver = "admm"
            u, info, mu = solve_admm(program, init, max_iter, tol, callback=callback)
    else:
        u, info, mu = solve_admm(program, init, max_iter, tol, callback=callback, **solver_options)
    cert = {}
    if certify:
        fresh = sample_gates(Xt, n_fresh, seed=seed + 1) if n_fresh > 0 else None
        # FISTA and the IPM keep the best dual value they certified
        bound = info.dual if solver in ("fista", "ipm") else None
        cert = certificate(program, u, mu, fresh, dual_bound=bound)
    return ConvexNNSolution(
        weights=u,
        gates=g,
        activation=activation,
        kappa=kappa,
        bias=bias,
        beta=beta,
        loss=loss,
        objective=program.objective(u),
        certificate=cert,
        info=info,
        multipliers=mu,
        squeeze=yt.ndim == 1 and loss != "multinomial",
        numpy=given_numpy,
    )


def regularization_path(
    X: Any, y: Any, gates: Any, betas: Sequence[float], **kwargs: Any
) -> list[ConvexNNSolution]:
    """:func:`solve` for every ``beta`` from the largest to the smallest, each warm-started
    at the previous solution. Returns the solutions in that (decreasing) order."""
    if len(betas) == 0:
        raise ValueError("betas must hold at least one value, got an empty sequence")
    sols: list[ConvexNNSolution] = []
    for beta in sorted((float(b) for b in betas), reverse=True):
        init = sols[-1].weights if sols else None
        sols.append(solve(X, y, gates, beta, init=init, **kwargs))
    return sols


__all__ = ["ConvexNNSolution", "TwoLayerNet", "add_bias", "regularization_path", "solve"]
