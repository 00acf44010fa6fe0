"""Two-layer ReLU training with a certified approximation ratio (after arXiv 2311.10972).

Provenance: the paper's abstract announces a randomized algorithm that mirrors
Goemans-Williamson rounding, exact polynomial-time training on orthogonally separable
data, a relative error of at most ``sqrt(pi/2) - 1`` on negatively correlated classes and a
factor-dependent guarantee on general data. The paper's own algorithm, proofs and bounds
are in its body, which was not obtainable here; everything below is OUR construction (the
one of the project's method notes), checked against exhaustive enumeration and against
the abstract's ``sqrt(pi/2)`` figure, not against the paper's pseudo-code.

Our Goemans-Williamson analogue: random hyperplanes ``h ~ N(0, I)`` through the data
round to activation patterns ``D = diag(1[X h >= 0])``; the convex ReLU program on those
patterns gives a feasible network with weight-decay objective ``U >= p*``. The dual point
``theta = grad L(yhat)``, scaled into the dual feasible set with an upper bound on its
constraint (:mod:`.bounds`: the exact arrangement and/or the Max-Cut SDP relaxation),
gives ``L <= p*``; the certified ratio is ``U / L >= U / p*``. Random-hyperplane cuts of
the SDP factor suggest further neurons ``u = X^T (theta_{+-} o z)``; their patterns are
added and the program re-solved for ``n_rounds`` rounds.

For orthogonally separable data the two class patterns ``1[y > 0]`` and ``1[y < 0]``
(gates ``+-X^T sign(y)``) are optimal whenever the residual of their program has the sign
of ``y`` (a closed-form dual certificate, :func:`.bounds.orthogonal_bound`):
:func:`solve_orthogonal` is then exact in polynomial time. We found that condition -- and
exactness -- to fail for small ``beta``, where the network overshoots labels; the
certificate then reports a ratio above 1.

Loss and penalty are those of :func:`mrsolve.solvers.convex_nn.solve`:
``||f(X) - y||^2 / (2n) + beta/2 (||W||^2 + ||b||^2 + ||a||^2)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mrsolve.solvers import convex_nn as cnn
from mrsolve.solvers.convex_nn.certificate import dual_objective
from mrsolve.solvers.convex_nn.network import TwoLayerNet, network_objective
from mrsolve.solvers.convex_nn.patterns import unique_patterns
from mrsolve.solvers.maxcut.bounds import arrangement_bound, orthogonal_bound, relaxation_bound
from mrsolve.solvers.maxcut.datasets import is_orthogonally_separable
from mrsolve.solvers.validation import (
    check_choice,
    check_finite,
    check_int,
    check_positive,
    deprecated_names,
    resolve_device,
)

BOUNDS = ("auto", "arrangement", "relaxation", "both")
SDPS = ("auto", "cvxpy", "burer_monteiro")
#: largest C(n, r - 1) 2^r for which "auto" evaluates the exact arrangement bound
_ARRANGEMENT_LIMIT = 4000
#: largest n for which "auto" solves the SDP with CVXPY
_CVXPY_SDP_LIMIT = 40


@dataclass(frozen=True)
class MaxCutResult:
    """A trained network with its certificate.

    Attributes:
        network: the convex solution (:class:`mrsolve.solvers.convex_nn.ConvexNNResult`).
        objective: weight-decay objective of the recovered ReLU network (``>= p*``).
        lower_bound: the best certified lower bound on ``p*`` (max over ``bounds``).
        ratio: ``objective / lower_bound`` (``>= 1``; inf when no positive bound).
        bounds: lower bound per method (``"arrangement"``, ``"relaxation"``), best round.
        n_patterns: patterns in the final program.
        n_rounds: programs solved.
        exact: the closed-form certificate of orthogonally separable data proves the
            network globally optimal (the residual ``y - f(X)`` has the sign of ``y``);
            False when the data are not orthogonally separable or the test fails.
    """

    network: cnn.ConvexNNResult
    objective: float
    lower_bound: float
    ratio: float
    bounds: dict[str, float] = field(default_factory=dict)
    n_patterns: int = 0
    n_rounds: int = 1
    exact: bool = False
    numpy: bool = False

    def decision_function(self, X: Any) -> torch.Tensor | np.ndarray:
        """Network output ``(n,)`` on new data ``(n, d)``."""
        out = self.network.decision_function(X)
        out = torch.as_tensor(out)
        return out.cpu().numpy() if self.numpy else out

    def to_torch(self) -> TwoLayerNet:
        """The ReLU network as a ``torch.nn.Module``."""
        return self.network.to_torch()


def _prepare(X: Any, y: Any, beta: float, device: str | torch.device):
    dev = resolve_device(device)
    given_numpy = not isinstance(X, torch.Tensor)
    try:
        Xt = torch.as_tensor(X if isinstance(X, torch.Tensor) else np.asarray(X, dtype=float))
        yt = torch.as_tensor(y if isinstance(y, torch.Tensor) else np.asarray(y, dtype=float))
    except (TypeError, ValueError) as err:
        raise TypeError(f"X and y must be real arrays or tensors, got {type(X).__name__}") from err
    Xt, yt = Xt.to(dev, torch.float64), yt.to(dev, torch.float64)
    if Xt.ndim != 2:
        raise ValueError(f"X must have shape (n, d), got {tuple(Xt.shape)}")
    if yt.shape != (Xt.shape[0],):
        raise ValueError(f"y must have shape ({Xt.shape[0]},), got {tuple(yt.shape)}")
    check_finite("X", Xt)
    check_finite("y", yt)
    beta = check_positive("beta", beta)
    return Xt, yt, beta, given_numpy


def _rank(X: torch.Tensor) -> int:
    s = torch.linalg.svdvals(X)
    return int((s > 1e-9 * s[0]).sum())


def _lower_bounds(
    Xa: torch.Tensor,
    y: torch.Tensor,
    orthogonal: bool,
    eta: torch.Tensor,
    datafit,
    beta: float,
    bound: str,
    sdp: str,
    n_cuts: int,
    seed: int,
) -> tuple[dict[str, float], np.ndarray]:
    """Lower bound per method at the dual point ``grad L(eta)``, and the GW cuts."""
    theta = datafit.grad(eta)[:, 0]
    n = Xa.shape[0]
    r = _rank(Xa)
    small = math.comb(n, max(r - 1, 0)) * 2**r <= _ARRANGEMENT_LIMIT
    use_arr = bound in ("arrangement", "both") or (bound == "auto" and small)
    use_rel = bound in ("relaxation", "both") or (bound == "auto" and not small) or n_cuts > 0
    out: dict[str, float] = {}
    cuts = np.zeros((0, n))
    constraint: dict[str, float] = {}
    if orthogonal:
        constraint["orthogonal"] = orthogonal_bound(Xa, y, theta)
    if use_arr:
        constraint["arrangement"] = arrangement_bound(Xa, theta)
    if use_rel:
        method = sdp if sdp != "auto" else ("cvxpy" if n <= _CVXPY_SDP_LIMIT else "burer_monteiro")
        constraint["relaxation"], cuts = relaxation_bound(Xa, theta, method, n_cuts, seed)
    for name, B in constraint.items():
        t = 1.0 if B <= beta else beta / B
        out[name] = dual_objective(datafit, eta, t)
    return out, cuts


def _cut_gates(Xa: torch.Tensor, theta: torch.Tensor, cuts: np.ndarray) -> torch.Tensor:
    """Neurons ``+-X^T (theta_{+-} o z)`` of the cuts (first half: positive part)."""
    Z = torch.as_tensor(cuts, dtype=Xa.dtype, device=Xa.device)
    half = Z.shape[0] // 2
    parts = torch.stack([theta.clamp_min(0), (-theta).clamp_min(0)])
    A = Z * torch.cat([parts[0].expand(half, -1), parts[1].expand(Z.shape[0] - half, -1)])
    U = A @ Xa
    U = U[torch.linalg.vector_norm(U, dim=1) > 0]
    return torch.cat([U, -U])


def _orthogonal(Xa: torch.Tensor, y: torch.Tensor) -> bool:
    yn = y.cpu().numpy()
    return bool(np.all(yn != 0)) and is_orthogonally_separable(Xa.cpu().numpy(), yn)


def _certified(
    Xt: torch.Tensor,
    yt: torch.Tensor,
    beta: float,
    gates: torch.Tensor,
    bias: bool,
    solver: str,
    bound: str,
    sdp: str,
    n_cuts: int,
    seed: int,
    solve_kwargs: dict,
):
    """Solve on ``gates``; return the solution, its network objective, bounds and cuts."""
    sol = cnn.solve(
        Xt,
        yt,
        gates,
        beta,
        activation="relu",
        solver=solver,
        bias=bias,
        certify=False,
        device=Xt.device,
        **solve_kwargs,
    )
    datafit = cnn.make_datafit("squared", yt, Xt.dtype)
    net = sol.to_torch()
    with torch.no_grad():
        eta = net(Xt)
        U = float(network_objective(net, Xt, datafit, beta))
    Xa = cnn.add_bias(Xt) if bias else Xt
    orthogonal = _orthogonal(Xa, yt)
    bounds, cuts = _lower_bounds(Xa, yt, orthogonal, eta, datafit, beta, bound, sdp, n_cuts, seed)
    theta = datafit.grad(eta)[:, 0]
    # residual y - f(X) = -n theta with the sign of y: the class patterns are optimal
    exact = orthogonal and bool((-theta * yt >= -1e-9 * float(yt.abs().max()) / yt.numel()).all())
    return sol, U, bounds, cuts, theta, Xa, exact


def _finish(sol, U, bounds, n_rounds, exact, given_numpy) -> MaxCutResult:
    L = max(bounds.values()) if bounds else -math.inf
    return MaxCutResult(
        network=sol,
        objective=U,
        lower_bound=L,
        ratio=U / L if L > 0 else math.inf,
        bounds=bounds,
        n_patterns=int(sol.gates.shape[0]),
        n_rounds=n_rounds,
        exact=exact,
        numpy=given_numpy,
    )


def solve(
    X: Any,
    y: Any,
    beta: float,
    n_hyperplanes: int = 64,
    n_rounds: int = 2,
    n_cuts: int = 16,
    bound: str = "auto",
    sdp: str = "auto",
    bias: bool = False,
    solver: str = "auto",
    seed: int = 0,
    device: str | torch.device = "cpu",
    **solve_kwargs: Any,
) -> MaxCutResult:
    """Weight-decay ReLU network by random-hyperplane rounding, with a certified ratio.

    Args:
        X: ``(n, d)`` data; y: ``(n,)`` targets (labels ``+-1`` or real); beta: > 0.
        n_hyperplanes: Gaussian hyperplanes ``h`` drawn for the first patterns.
        n_rounds: extra rounds that add the patterns of GW cuts of the SDP factor.
        n_cuts: cuts per sign part and round.
        bound: ``"arrangement"`` (exact cells; small rank only), ``"relaxation"`` (SDP),
            ``"both"`` or ``"auto"`` (arrangement when the cells are few, else relaxation).
        sdp: ``"cvxpy"``, ``"burer_monteiro"`` or ``"auto"`` (CVXPY for n <= 40).
        bias: append a column of ones to ``X`` (biased neurons).
        solver: convex solver, as in :func:`mrsolve.solvers.convex_nn.solve`.
        seed: seed of the hyperplanes and cuts.
        device: "cpu", "cuda" or "auto" (the bounds run on the CPU).
        solve_kwargs: passed to :func:`mrsolve.solvers.convex_nn.solve` (``max_iter``...).

    Returns:
        :class:`MaxCutResult` with ``objective``, ``lower_bound`` and ``ratio``.
    """
    Xt, yt, beta, given_numpy = _prepare(X, y, beta, device)
    check_choice("bound", bound, BOUNDS)
    check_choice("sdp", sdp, SDPS)
    check_int("n_hyperplanes", n_hyperplanes)
    check_int("n_rounds", n_rounds, 0)
    check_int("n_cuts", n_cuts, 0)
    Xa = cnn.add_bias(Xt) if bias else Xt
    gates = cnn.sample_gates(Xa, n_hyperplanes, seed=seed)
    if _orthogonal(Xa, yt):
        gates = unique_patterns(Xa, torch.cat([orthogonal_gates(Xa, yt), gates]))
    if gates.shape[0] == 0:
        raise ValueError("X has no non-zero activation pattern (all rows zero?)")
    best = None
    bounds_best: dict[str, float] = {}
    for k in range(n_rounds + 1):
        cuts_wanted = n_cuts if k < n_rounds else 0
        sol, U, bounds, cuts, theta, Xa, exact = _certified(
            Xt, yt, beta, gates, bias, solver, bound, sdp, cuts_wanted, seed + k, solve_kwargs
        )
        if best is None or U < best[1]:
            best = (sol, U, exact)
        for name, L in bounds.items():  # every round's bound is valid: keep the best
            bounds_best[name] = max(L, bounds_best.get(name, -math.inf))
        if cuts_wanted == 0:
            break
        new = _cut_gates(Xa, theta, cuts)
        before = gates.shape[0]
        gates = unique_patterns(Xa, torch.cat([gates, new]))
        if gates.shape[0] == before:
            break
    return _finish(*best[:2], bounds_best, k + 1, best[2], given_numpy)


def orthogonal_gates(X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Gates ``+-X^T sign(y)`` whose patterns are ``1[y > 0]`` and ``1[y < 0]`` on
    orthogonally separable data (``x_j^T X^T sign(y)`` has the sign of ``y_j``)."""
    g = X.T @ torch.sign(y)
    return torch.stack([g, -g])


def solve_orthogonal(
    X: Any,
    y: Any,
    beta: float,
    bias: bool = False,
    solver: str = "auto",
    bound: str = "auto",
    sdp: str = "auto",
    device: str | torch.device = "cpu",
    **solve_kwargs: Any,
) -> MaxCutResult:
    """Training on orthogonally separable data on the two class patterns (polynomial
    time), with the closed-form certificate of :func:`.bounds.orthogonal_bound`.

    The result is globally optimal (``exact`` True, ``ratio`` 1 up to the solver
    tolerance) when the residual has the sign of ``y`` -- for labels ``+-1`` whenever
    ``beta`` is large enough that the network does not overshoot a label. Otherwise the
    ratio says how far it may be (small ``beta``: use :func:`solve`). Raises ValueError if
    ``(X [, 1], sign(y))`` is not orthogonally separable. Arguments as in :func:`solve`."""
    Xt, yt, beta, given_numpy = _prepare(X, y, beta, device)
    check_choice("bound", bound, BOUNDS)
    check_choice("sdp", sdp, SDPS)
    Xa = cnn.add_bias(Xt) if bias else Xt
    if not _orthogonal(Xa, yt):
        raise ValueError(
            "X, y must be orthogonally separable (x_i^T x_j > 0 within and <= 0 across the "
            "classes of sign(y), y non-zero), got data that are not"
        )
    gates = orthogonal_gates(Xa, yt)
    sol, U, bounds, _, _, _, exact = _certified(
        Xt, yt, beta, gates, bias, solver, bound, sdp, 0, 0, solve_kwargs
    )
    return _finish(sol, U, bounds, 1, exact, given_numpy)


__getattr__ = deprecated_names(__name__, {"MaxCutSolution": MaxCutResult})
