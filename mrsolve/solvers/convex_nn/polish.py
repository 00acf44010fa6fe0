"""Polishing of an approximate ReLU (cone-constrained) solution to high accuracy.

ADMM identifies the support (the non-zero groups) and the nearly active cone
constraints long before it reaches a small violation (it converges sublinearly). Like
OSQP's solution polishing we then solve the program restricted to that guess exactly, here
with Clarabel (an interior-point conic solver, a core dependency; called directly, without
CVXPY's modelling layer, on a formulation whose factorization stays cheap), and verify
the guess:

1. keep the groups ADMM left non-zero plus the zero groups failing the dual check of 4,
   and per group the rows whose cone slack is small;
2. solve that program (a relaxation in the rows, a restriction in the groups), one
   solve per output (the squared loss separates over outputs);
3. cutting planes: add the rows it violates (and its nearly active ones) and re-solve
   until every row holds;
4. a zero group is optimal when ``min_{mu >= 0} ||F_g^T theta - G_g^T mu|| <= beta``
   (``theta`` the datafit gradient; the projected-gradient bound of
   :func:`.certificate.min_cone_norms`); groups failing it are added, with the rows
   guessed from their descent direction, and 2-4 repeat.

At termination every cone holds (to Clarabel's tolerance) and the groups left out pass
the dual check, so the result solves the full program. Squared loss only.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from mrsolve.solvers.convex_nn.certificate import min_cone_norms
from mrsolve.solvers.convex_nn.problem import ConvexProgram, SolverResult
from mrsolve.solvers.datafit import Quadratic
from mrsolve.solvers.validation import deprecated_names

#: Clarabel settings of every restricted solve (faer: a supernodal factorization, faster
#: than the default QDLDL on these systems)
CLARABEL_SETTINGS = {
    "verbose": False,
    "direct_solve_method": "faer",
    "tol_gap_abs": 1e-9,
    "tol_gap_rel": 1e-9,
    "tol_feas": 1e-9,
}


@dataclass(frozen=True)
class PolishResult:
    """What :func:`polish` did: rounds of cutting planes, final sizes, success."""

    rounds: int = 0
    n_groups: int = 0
    n_rows: int = 0
    converged: bool = False
    status: str = ""


def _solve_restricted(
    p: ConvexProgram, groups: np.ndarray, rows: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray], str]:
    """Clarabel on the program with only ``groups`` (flat indices into ``(2, k, P)``) and,
    for group ``groups[i]``, only the cone rows ``rows[i]``; one solve per output (the
    squared loss separates over outputs, and each group belongs to one).

    Returns ``u`` ``(G, d)``, the row multipliers and the worst solver status.
    """
    X = p.X.detach().cpu().double().numpy()
    W = p.weight.cpu().double().numpy()
    S = p.sign.cpu().double().numpy()
    df = p.datafit
    y = (df.y - df.offset).cpu().double().numpy()
    y = np.broadcast_to(y, df.y.shape)
    w = (df.weights / df.n).cpu().double().numpy()
    k = y.shape[1]
    j_idx, c_idx, p_idx = np.unravel_index(groups, (2, k, p.gates.shape[0]))
    u = np.zeros((len(groups), X.shape[1]))
    mus: list[np.ndarray] = [np.zeros(0)] * len(groups)
    statuses = []
    for c in np.unique(c_idx):
        idx = np.nonzero(c_idx == c)[0]
        sign = np.where(j_idx[idx] == 0, 1.0, -1.0)
        uc, mc, st = _solve_output(
            X, W, S, y[:, c], w, p.beta, p_idx[idx], sign, [rows[i] for i in idx]
        )
        u[idx] = uc
        for i, m in zip(idx, mc, strict=True):
            mus[i] = m
        statuses.append(st)
    bad = [st for st in statuses if st not in ("Solved", "AlmostSolved")]
    status = bad[0] if bad else ("AlmostSolved" if "AlmostSolved" in statuses else "Solved")
    return u, mus, status


def _solve_output(
    X: np.ndarray,
    W: np.ndarray,
    S: np.ndarray,
    y: np.ndarray,
    w: np.ndarray,
    beta: float,
    patterns: np.ndarray,
    signs: np.ndarray,
    rows: list[np.ndarray],
) -> tuple[np.ndarray, list[np.ndarray], str]:
    """One output's restricted program in Clarabel. Variables ``[u_g] (G d), t (G),
    [a_p] (Q d), r (n)`` (``Q`` distinct patterns)::

        min 1/2 r' diag(w) r - (w y)' r + beta sum t
        s.t. r = sum_p M_p X a_p,  a_p = sum_{g of pattern p} s_g u_g,
             (t_g, u_g) in SOC,  S_p(g) X u_g >= 0 on the kept rows.

    The per-pattern ``a_p`` halves the dense coupling of the fit (both signs of a pattern
    share it), which sets the cost of Clarabel's factorization.
    """
    import clarabel

    n, d = X.shape
    G = len(patterns)
    pats, slot = np.unique(patterns, return_inverse=True)
    Q = len(pats)
    n_u, a0 = G * d, G * d + G
    r0 = a0 + Q * d
    n_var = r0 + n
    # r - sum_p M_p X a_p = 0
    bi, bj, bv = [np.arange(n)], [r0 + np.arange(n)], [np.ones(n)]
    for q_, pat in enumerate(pats):
        on = np.nonzero(W[:, pat])[0]
        bi.append(np.repeat(on, d))
        bj.append(np.tile(a0 + q_ * d + np.arange(d), len(on)))
        bv.append((-W[on, pat][:, None] * X[on]).ravel())
    # a_p - sum_g s_g u_g = 0
    ad = np.arange(d)
    bi += [n + np.arange(Q * d)] + [n + slot[g] * d + ad for g in range(G)]
    bj += [a0 + np.arange(Q * d)] + [g * d + ad for g in range(G)]
    bv += [np.ones(Q * d)] + [np.full(d, -signs[g]) for g in range(G)]
    A_eq = sp.csc_matrix(
        (np.concatenate(bv), (np.concatenate(bi), np.concatenate(bj))),
        shape=(n + Q * d, n_var),
    )
    ci, cj, cv, m = [], [], [], 0
    for g in range(G):
        rr = rows[g]
        ci.append(np.repeat(m + np.arange(len(rr)), d))
        cj.append(np.tile(g * d + ad, len(rr)))
        cv.append((-S[rr, patterns[g]][:, None] * X[rr]).ravel())
        m += len(rr)
    A_cone = sp.csc_matrix(
        (np.concatenate(cv), (np.concatenate(ci), np.concatenate(cj))), shape=(m, n_var)
    )
    si = np.arange(G * (d + 1))
    sj = np.concatenate([np.r_[n_u + g, g * d + ad] for g in range(G)])
    A_soc = sp.csc_matrix((-np.ones(len(si)), (si, sj)), shape=(G * (d + 1), n_var))
    A = sp.vstack([A_eq, A_cone, A_soc]).tocsc()
    P = sp.diags(np.r_[np.zeros(r0), w]).tocsc()
    q = np.r_[np.zeros(n_u), np.full(G, beta), np.zeros(Q * d), -w * y]
    cones = [clarabel.ZeroConeT(n + Q * d), clarabel.NonnegativeConeT(m)] + [
        clarabel.SecondOrderConeT(d + 1) for _ in range(G)
    ]
    settings = clarabel.DefaultSettings()
    settings.max_threads = torch.get_num_threads()
    for key, value in CLARABEL_SETTINGS.items():
        setattr(settings, key, value)
    sol = clarabel.DefaultSolver(P, q, A, np.zeros(A.shape[0]), cones, settings).solve()
    u = np.asarray(sol.x)[:n_u].reshape(G, d)
    z = np.asarray(sol.z)[n + Q * d : n + Q * d + m]
    return u, np.split(z, np.cumsum([len(r) for r in rows])[:-1]), str(sol.status)


def polish(
    p: ConvexProgram,
    u: torch.Tensor,
    first_margin: float = 0.02,
    rel_margin: float = 0.01,
    feas_tol: float = 1e-9,
    zero_tol: float = 1e-7,
    max_rounds: int = 30,
) -> SolverResult:
    """Solve the ReLU program exactly from the approximate solution ``u`` ``(2, k, P, d)``.

    Args:
        p: a cone-constrained program with the squared loss.
        u: approximate solution (its zero groups and small slacks give the first guess).
        first_margin: a row is kept at first when its slack ``(2 D - I) X u_g`` at ``u``
            is below ``first_margin`` times the group's largest slack.
        rel_margin: the same at the solution of every relaxation that violates some row
            (added with the violated rows), and for groups added by the dual check.
        feas_tol: rows violated by more than this (relative to ``||x_i|| ||u_g||``) are
            added in the next round.
        zero_tol: groups below this fraction of the largest group norm are set to 0 (the
            interior-point solver leaves them at ~1e-9).
        max_rounds: cutting-plane rounds.

    Returns:
        :class:`~.problem.SolverResult`: the polished weights, cone multipliers
        ``(n, 2, k, P)`` and :class:`PolishResult` as ``info``; ``info.converged`` is False
        (and the weights the last iterate) when the rounds ran out, Clarabel failed or
        reached only its reduced accuracy.
    """
    if not p.constrained or not isinstance(p.datafit, Quadratic):
        raise ValueError("polish handles the cone-constrained programs with the squared loss")
    if max_rounds < 1:
        raise ValueError(f"max_rounds must be >= 1, got {max_rounds!r}")
    shape, n = p.shape, p.X.shape[0]
    d = shape[-1]
    X = p.X.detach().cpu().double()
    xnorm = torch.linalg.vector_norm(X, dim=1).numpy()
    u_flat = u.detach().cpu().double().reshape(-1, d)
    norms = torch.linalg.vector_norm(u_flat, dim=1).numpy()
    groups = [int(g) for g in np.nonzero(norms > 0)[0]]
    directions = u_flat.clone()
    rows = {}
    for g, direction in _failing_zero_groups(p, u.detach(), set(groups)):
        groups.append(g)
        directions[g] = direction
    slack = p.cone(directions.reshape(shape).to(p.X)).cpu().double().reshape(n, -1).numpy()
    for g in groups:
        s = slack[:, g]
        rows[g] = np.nonzero(s <= first_margin * max(float(s.max()), 0.0))[0]
    rounds, status, converged = 0, "", False
    S = p.sign.cpu().double().numpy()
    P_ = shape[2]
    out = torch.zeros_like(u_flat)
    while rounds < max_rounds:
        rounds += 1
        g_arr = np.array(groups, dtype=np.int64)
        solved_rows = [rows[g] for g in groups]
        ug, mus, status = _solve_restricted(p, g_arr, solved_rows)
        if status not in ("Solved", "AlmostSolved"):
            break
        norms_g = np.linalg.norm(ug, axis=1)
        ug[norms_g <= zero_tol * norms_g.max(initial=0.0)] = 0.0  # interior-point zeros
        out.zero_()
        out[g_arr] = torch.from_numpy(ug)
        # cutting planes: rows of the kept groups that the relaxation violates
        s_all = S[:, g_arr % P_] * (X.numpy() @ ug.T)  # (n, G)
        tol = feas_tol * xnorm[:, None] * np.linalg.norm(ug, axis=1)[None, :]
        kept = np.zeros_like(s_all, dtype=bool)
        for i, g in enumerate(groups):
            kept[rows[g], i] = True
        violated = (s_all < -tol) & ~kept  # kept rows hold to Clarabel's tolerance
        if violated.any():
            # add the violated rows and those now near the cone's boundary
            near = violated | (s_all <= rel_margin * s_all.max(0)[None, :])
            near[:, ~ug.any(1)] = False  # zero groups: no direction to guess rows from
            for i, g in enumerate(groups):
                rows[g] = np.union1d(rows[g], np.nonzero(near[:, i])[0])
            continue
        # dual check of the dropped groups
        added_groups = _failing_zero_groups(p, out.reshape(shape).to(p.X), set(groups))
        if not added_groups:
            # Clarabel's "AlmostSolved" can sit ~1e-4 above the optimum: usable, not converged
            converged = status == "Solved"
            break
        for g, direction in added_groups:
            groups.append(g)
            s = S[:, g % P_] * (X.numpy() @ direction.numpy())
            rows[g] = np.nonzero(s <= rel_margin * max(float(s.max()), 0.0))[0]
    mu = torch.zeros(n, int(np.prod(shape[:-1])), dtype=X.dtype)
    if status in ("Solved", "AlmostSolved"):
        for i, g in enumerate(g_arr):
            mu[solved_rows[i], g] = torch.from_numpy(np.maximum(mus[i], 0.0))
    info = PolishResult(
        rounds=rounds,
        n_groups=len(groups),
        n_rows=sum(len(rows[g]) for g in groups),
        converged=converged,
        status=status,
    )
    dev, dt = u.device, u.dtype
    return SolverResult(
        weights=out.reshape(shape).to(dev, dt),
        info=info,
        multipliers=mu.reshape(n, *shape[:-1]).to(dev, dt),
    )


def restricted_nnz(p: ConvexProgram, u: torch.Tensor) -> int:
    """Non-zeros of the fit matrix of the restricted program on ``u``'s non-zero groups
    (the dominant size of what :func:`polish` hands to Clarabel)."""
    nz = (p.group_norms(u) > 0).reshape(-1, p.gates.shape[0]).sum(0).to(p.X.dtype)  # (P,)
    per_pattern = (p.weight != 0).sum(0).to(p.X.dtype)  # rows touched by each pattern
    return int((nz * per_pattern).sum()) * p.X.shape[1]


def _failing_zero_groups(
    p: ConvexProgram, u: torch.Tensor, kept: set[int]
) -> list[tuple[int, torch.Tensor]]:
    """Groups outside ``kept`` whose dual bound ``min_mu ||F_g^T theta - G_g^T mu||``
    exceeds ``beta`` (so adding them could lower the objective), each with the descent
    direction ``-(F_g^T theta - G_g^T mu)`` ``(d,)`` that guesses its kept rows. Groups
    passing with ``mu = 0`` are not handed to the projected-gradient bound."""
    theta = p.datafit.grad(p.forward(u))
    k, P = p.n_outputs, p.gates.shape[0]
    g0 = torch.einsum("nk,np,nd->kpd", theta, p.weight, p.X)
    over = (torch.linalg.vector_norm(g0, dim=-1) > p.beta).expand(2, k, P).reshape(-1)
    cand = [g for g in np.nonzero(over.cpu().numpy())[0] if int(g) not in kept]
    if not cand:
        return []
    pats = np.unique(np.asarray(cand) % P)
    idx = torch.as_tensor(pats, device=p.X.device)
    weight, sign = p.weight[:, idx], p.sign[:, idx]
    norms, mu = min_cone_norms(p.X, weight, sign, theta)  # (2, k, Q)
    g_ = torch.einsum("nk,np,nd->kpd", theta, weight, p.X)
    res = torch.stack([g_, -g_]) - torch.einsum("njkp,np,nd->jkpd", mu, sign, p.X)
    res = res.detach().cpu().double()
    slot = {int(q): i for i, q in enumerate(pats)}
    out = []
    for g in cand:
        j, c, q = np.unravel_index(int(g), (2, k, P))
        if float(norms[j, c, slot[int(q)]]) > p.beta * (1 + 1e-6):
            out.append((int(g), -res[j, c, slot[int(q)]]))
    return out


__getattr__ = deprecated_names(__name__, {"PolishInfo": PolishResult})
