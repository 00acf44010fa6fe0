"""``solve``: train a convex two-layer network on explicit gates; warm-started paths.

The solvers live in a registry, :data:`SOLVERS` (name -> :class:`Solver`): each says which
programs it handles and is called with one signature (skglm's pattern), so ``solve`` needs
no per-solver branches.
"""

from __future__ import annotations

import inspect
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
from mrsolve.solvers.convex_nn.problem import ConvexProgram, SolverResult, negative_slope
from mrsolve.solvers.datafit import Datafit, Logistic, Multinomial, Quadratic
from mrsolve.solvers.validation import (
    SeedLike,
    check_choice,
    check_finite,
    check_int,
    check_positive,
    deprecated_names,
    renamed_kwargs,
    resolve_device,
    seed_to_int,
)

LOSSES = ("squared", "logistic", "multinomial")
#: "auto" uses the interior-point method when its arrays hold at most this many floats
#: (1e8: 800 MB; digits with 10 outputs and 50 gates needs ~7.8e7)
IPM_MAX_ENTRIES = 1e8


@dataclass(frozen=True)
class Solver:
    """A registered solver and what it needs of the program.

    Attributes:
        run: ``run(program, *, init, max_iter, tol, callback, **options) ->``
            :class:`~.problem.SolverResult`.
        cones: True for the cone-constrained activations only, False for gated ReLU only.
        squared_loss_only: handles ``loss="squared"`` only.
        takes_options: accepts solver options (keywords beyond the common ones).
    """

    run: Callable[..., SolverResult]
    cones: bool | None = None
    squared_loss_only: bool = False
    takes_options: bool = True

    def check(self, name: str, program: ConvexProgram, activation: str, loss: str) -> None:
        """Raise ValueError when this solver cannot solve ``program``."""
        if self.cones is False and program.constrained:
            raise ValueError(
                f"solver {name!r} handles activation='gated_relu' only, got "
                f"activation={activation!r}; use 'admm' or 'ipm'"
            )
        if (self.cones and not program.constrained) or (
            self.squared_loss_only and not isinstance(program.datafit, Quadratic)
        ):
            need = " with loss='squared'" if self.squared_loss_only else ""
            raise ValueError(
                f"solver {name!r} handles the cone-constrained activations{need}, got "
                f"activation={activation!r}, loss={loss!r}"
            )


def _run_fista(program, *, init, max_iter, tol, callback, **options) -> SolverResult:
    return solve_fista(program, init, max_iter, tol, callback)


def _run_ipm(program, *, init, max_iter, tol, callback, **options) -> SolverResult:
    """The IPM (its own interior start: ``init`` is not used), ADMM when it cannot start."""
    res = solve_ipm_exact(program, min(max_iter, 100), tol, callback)
    if res.info.status == "no interior":  # beta = 0 or a row orthogonal to a gate
        return solve_admm(program, init, max_iter, tol, callback=callback)
    return res


def _run_admm(program, *, init, max_iter, tol, callback, **options) -> SolverResult:
    return solve_admm(program, init, max_iter, tol, callback=callback, **options)


def _run_cvxpy(program, *, init, max_iter, tol, callback, **options) -> SolverResult:
    return solve_cvxpy(program, **options)


#: name -> solver; ``solve(..., solver=name)`` runs it, "auto" picks one (see :func:`solve`)
SOLVERS: dict[str, Solver] = {
    "fista": Solver(_run_fista, cones=False, takes_options=False),
    "ipm": Solver(_run_ipm, cones=True, squared_loss_only=True, takes_options=False),
    "admm": Solver(_run_admm, cones=True),
    "cvxpy": Solver(_run_cvxpy),
}


def _auto_solver(program: ConvexProgram, has_options: bool) -> str:
    """FISTA without cones; with cones the IPM for the squared loss when its arrays fit in
    ``IPM_MAX_ENTRIES`` floats and no (ADMM) options were given, ADMM otherwise."""
    if not program.constrained:
        return "fista"
    if (
        isinstance(program.datafit, Quadratic)
        and not has_options
        and ipm_entries(program) <= IPM_MAX_ENTRIES
    ):
        return "ipm"
    return "admm"


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


@dataclass(frozen=True)
class ConvexNNResult:
    """A solved convex program.

    Attributes:
        weights: group weights, ``(k, P, d)`` (gated ReLU) or ``(2, k, P, d)``.
        gates: ``(P, d)`` gates (``d`` includes the bias column when ``bias``).
        activation, kappa, bias, beta, loss: the program.
        objective: ``datafit + beta * sum ||u_g||`` at ``weights``.
        certificate: see :func:`mrsolve.solvers.convex_nn.certificate.certificate`.
        info: the solver's result (iterations, convergence).
        multipliers: cone multipliers ``(n, 2, k, P)`` when the program has cones.
        solver: the name of the solver that produced ``weights``.
        n_iter, converged: those of ``info``.
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

    @property
    def n_iter(self) -> int:
        return int(getattr(self.info, "n_iter", 0))

    @property
    def converged(self) -> bool:
        return bool(self.info.converged)

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


@dataclass(frozen=True)
class _Inputs:
    """How the caller's data came in: numpy (outputs go back as numpy), 1-D targets."""

    numpy: bool
    y_1d: bool


def _program(
    X: Any,
    y: Any,
    gates: Any,
    beta: float,
    activation: str,
    loss: str,
    bias: bool,
    leaky_slope: float | None,
    device: str | torch.device,
) -> tuple[ConvexProgram, _Inputs]:
    """Validate the inputs of :func:`solve` and build its program."""
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
    kappa = negative_slope(activation, leaky_slope)
    if bias:
        Xt = add_bias(Xt)
    g = _check_gates(gates, Xt.shape[1], dtype, dev)
    datafit = make_datafit(loss, yt, dtype)
    program = ConvexProgram(Xt, g, kappa, datafit.y.shape[1], datafit, beta)
    return program, _Inputs(numpy=given_numpy, y_1d=yt.ndim == 1)


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
    seed: SeedLike = 0,
    device: str | torch.device = "cpu",
    callback: Callable | None = None,
    **solver_options: Any,
) -> ConvexNNResult:
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
        solver: a name in :data:`SOLVERS`: ``"fista"`` (gated ReLU), ``"ipm"`` (cones,
            squared loss: interior point, :mod:`.ipm_solver`), ``"admm"`` (cones, any
            loss), ``"cvxpy"`` (reference); or ``"auto"`` (FISTA without cones; with cones
            the IPM for the squared loss when its arrays fit in ``IPM_MAX_ENTRIES``
            floats, ADMM otherwise).
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
            ``n_fresh`` fresh Gaussian gates drawn with ``seed + 1``; a generator
            ``seed`` gives an int drawn from it).
        device: "cpu", "cuda" or "auto".
        callback: passed to the iterative solver.
        solver_options: passed to CVXPY's ``solve`` (solver="cvxpy") or to ADMM (``rho``,
            ``cone_scale``, ``polish``, ``polish_after``, ``polish_max_nnz``: see
            :func:`~mrsolve.solvers.convex_nn.admm_solver.solve_admm`; ``"auto"`` picks
            ADMM when any is given).
    """
    beta = check_positive("beta", beta, allow_zero=True)
    check_choice("solver", solver, ("auto", *SOLVERS))
    program, data = _program(X, y, gates, beta, activation, loss, bias, leaky_slope, device)
    dtype, dev = program.X.dtype, program.X.device
    if solver == "auto":
        solver = _auto_solver(program, bool(solver_options))  # ADMM's options ask for ADMM
    spec = SOLVERS[solver]
    spec.check(solver, program, activation, loss)
    if solver_options and not spec.takes_options:
        raise TypeError(f"solver {solver!r} takes no solver options, got {sorted(solver_options)}")
    if init is not None:
        init = _as_tensor("init", init, dtype, dev)
        if tuple(init.shape) != program.shape:
            raise ValueError(f"init must have shape {program.shape}, got {tuple(init.shape)}")
    res = spec.run(
        program, init=init, max_iter=max_iter, tol=tol, callback=callback, **solver_options
    )
    cert = {}
    if certify:
        # seed + 1: fresh gates differ from gates the caller drew with the same seed
        fresh_seed = seed_to_int(seed) + 1
        fresh = sample_gates(program.X, n_fresh, seed=fresh_seed) if n_fresh > 0 else None
        cert = certificate(program, res.weights, res.multipliers, fresh, dual_bound=res.dual_bound)
    return ConvexNNResult(
        weights=res.weights,
        gates=program.gates,
        activation=activation,
        kappa=program.kappa,
        bias=bias,
        beta=beta,
        loss=loss,
        objective=program.objective(res.weights),
        certificate=cert,
        info=res.info,
        multipliers=res.multipliers,
        squeeze=data.y_1d and loss != "multinomial",
        numpy=data.numpy,
    )


def penalty_max(program: ConvexProgram) -> float:
    """A ``beta`` above which the zero weights are optimal: ``max_g ||F_g^T grad L(0)||``
    (the dual norm at zero cone multipliers, so an upper bound with cones too)."""
    eta0 = torch.zeros_like(program.datafit.y)
    return float(program.group_norms(program.adjoint(program.datafit.grad(eta0))).max())


@renamed_kwargs(betas="penalties")
def regularization_path(
    X: Any,
    y: Any,
    gates: Any,
    *,
    penalties: Sequence[float] | None = None,
    n_penalties: int = 20,
    penalty_min_ratio: float = 1e-2,
    **kwargs: Any,
) -> list[ConvexNNResult]:
    """:func:`solve` for every ``beta`` in ``penalties`` from the largest to the smallest,
    each warm-started at the previous solution; returns the solutions in that order.

    ``penalties`` defaults to ``n_penalties`` values log-spaced from :func:`penalty_max`
    down to ``penalty_min_ratio`` times it. ``kwargs`` go to :func:`solve`. The old
    keyword ``betas`` still works for one release (DeprecationWarning).
    """
    if penalties is None:
        check_int("n_penalties", n_penalties)
        ratio = check_positive("penalty_min_ratio", penalty_min_ratio)
        defaults = inspect.signature(solve).parameters
        program, _ = _program(
            X,
            y,
            gates,
            0.0,
            **{
                k: kwargs.get(k, defaults[k].default)
                for k in ("activation", "loss", "bias", "leaky_slope", "device")
            },
        )
        top = penalty_max(program)
        penalties = (top * np.logspace(0, np.log10(ratio), n_penalties)).tolist()
    if len(penalties) == 0:
        raise ValueError("penalties must hold at least one value, got an empty sequence")
    sols: list[ConvexNNResult] = []
    for beta in sorted((float(b) for b in penalties), reverse=True):
        init = sols[-1].weights if sols else None
        sols.append(solve(X, y, gates, beta, init=init, **kwargs))
    return sols


__getattr__ = deprecated_names(__name__, {"ConvexNNSolution": ConvexNNResult})

__all__ = [
    "SOLVERS",
    "ConvexNNResult",
    "Solver",
    "TwoLayerNet",
    "add_bias",
    "penalty_max",
    "regularization_path",
    "solve",
]
