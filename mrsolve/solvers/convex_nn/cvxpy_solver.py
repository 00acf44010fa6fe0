"""CVXPY (Clarabel / SCS) reference solver for small programs."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mrsolve.solvers.convex_nn.problem import ConvexProgram, SolverResult
from mrsolve.solvers.datafit import Logistic, Multinomial, Quadratic


@dataclass(frozen=True)
class CvxpyResult:
    """What CVXPY reported: its status, the conic solver used and the optimal value;
    ``converged`` unless the status is "optimal_inaccurate"."""

    status: str
    solver: str
    objective: float
    converged: bool


def solve_cvxpy(p: ConvexProgram, solver: str = "CLARABEL", **solver_options) -> SolverResult:
    """The same program in CVXPY (reference for small problems; float64 on the CPU)."""
    import cvxpy as cp

    X = p.X.detach().cpu().double().numpy()
    W = p.weight.cpu().double().numpy()
    S = p.sign.cpu().double().numpy()
    y = p.datafit.y.cpu().double().numpy()
    w = (p.datafit.weights / p.datafit.n).cpu().double().numpy()
    d = X.shape[1]
    k, P = p.n_outputs, p.gates.shape[0]
    n_sign = 2 if p.constrained else 1
    V = [[cp.Variable((d, P)) for _ in range(k)] for _ in range(n_sign)]
    cols = []
    for c in range(k):
        U = V[0][c] - V[1][c] if p.constrained else V[0][c]
        cols.append(cp.sum(cp.multiply(W, X @ U), axis=1))
    if isinstance(p.datafit, Quadratic):
        loss = sum(w @ cp.square(cols[c] - y[:, c]) for c in range(k)) / 2
    elif isinstance(p.datafit, Multinomial):
        E = cp.vstack(cols).T
        loss = w @ (cp.log_sum_exp(E, axis=1) - cp.sum(cp.multiply(y, E), axis=1))
    elif isinstance(p.datafit, Logistic):
        loss = sum(w @ (cp.logistic(cols[c]) - cp.multiply(y[:, c], cols[c])) for c in range(k))
    else:
        raise TypeError(f"datafit {type(p.datafit).__name__} has no CVXPY form here")
    penalty = sum(cp.sum(cp.norm(Vjc, 2, axis=0)) for row in V for Vjc in row)
    cones = [cp.multiply(S, X @ Vjc) >= 0 for row in V for Vjc in row] if p.constrained else []
    prob = cp.Problem(cp.Minimize(loss + p.beta * penalty), cones)
    prob.solve(solver=solver, **solver_options)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"CVXPY ({solver}) returned status {prob.status}")
    u = np.stack([np.stack([Vjc.value.T for Vjc in row]) for row in V])
    u = torch.from_numpy(u if p.constrained else u[0]).to(p.X.device, p.X.dtype)
    mu = None
    if p.constrained:
        duals = np.stack(
            [np.stack([con.dual_value for con in cones[j * k : (j + 1) * k]]) for j in range(2)]
        )
        mu = torch.from_numpy(duals).permute(2, 0, 1, 3).to(p.X.device, p.X.dtype)
    info = CvxpyResult(
        status=prob.status,
        solver=solver,
        objective=float(prob.value),
        converged=prob.status == "optimal",
    )
    return SolverResult(weights=u, info=info, multipliers=mu)
