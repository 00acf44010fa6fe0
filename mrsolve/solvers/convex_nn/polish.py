"""Polishing of an approximate ReLU (cone-constrained) solution to high accuracy.

ADMM identifies the support (the non-zero groups) and the nearly active cone
constraints long before it reaches a small violation. Like OSQP's solution polishing we
then solve the program restricted to that guess exactly, here with Clarabel (an
interior-point conic solver: a well-kept library, called directly because CVXPY's
canonicalization costs more than the solve), and verify the guess:

1. keep the groups ADMM left non-zero and, per group, the rows whose cone slack is small;
2. solve that program (a relaxation in the rows, a restriction in the groups);
3. cutting planes: add every row it violates and re-solve until all rows hold;
4. a zero group is optimal when ``min_{mu >= 0} ||F_g^T theta - G_g^T mu|| <= beta``
   (``theta`` the datafit gradient); groups failing that bound are added with all rows.

At termination the solution is feasible for every cone and the dropped groups pass the
dual check, so it solves the full program. Squared loss only (a quadratic objective).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch

from mrsolve.solvers.convex_nn.certificate import min_cone_norms
from mrsolve.solvers.convex_nn.problem import ConvexProgram
from mrsolve.solvers.datafit import Quadratic


@dataclass
class PolishInfo:
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
    for group ``groups[i]``, only the cone rows ``rows[i]``.

    Variables ``[u_g for g in groups] (G d), t (G), r (n k)``:
    ``min 1/2 r' W r - (W y)' r + beta sum t  s.t.  r = F u, (t_g, u_g) in SOC,
    S_g X u_g >= 0 on the kept rows``. Returns ``u`` ``(G, d)``, the row multipliers and the
    solver status.
    """
    import clarabel

    X = p.X.detach().cpu().double().numpy()
    W = p.weight.cpu().double().numpy()
    S = p.sign.cpu().double().numpy()
    df = p.datafit
    y = (df.y - df.offset).cpu().double().numpy()
    w = (df.weights / df.n).cpu().double().numpy()
    n, d = X.shape
    k = y.shape[1]
    G = len(groups)
    j_idx, c_idx, p_idx = np.unravel_index(groups, (2, k, p.gates.shape[0]))
    n_u, n_var = G * d, G * d + G + n * k
    r0 = G * d + G  # first residual variable

    # r = F u  ->  rows (i, c): r_ic - sum_g sign_j W_ip x_i' u_g = 0
    bi, bj, bv = [np.arange(n * k)], [r0 + np.arange(n * k)], [np.ones(n * k)]
    for g in range(G):
        on = np.nonzero(W[:, p_idx[g]])[0]
        coef = -(1.0 if j_idx[g] == 0 else -1.0) * W[on, p_idx[g]][:, None] * X[on]
        bi.append(np.repeat(on * k + c_idx[g], d))
        bj.append(np.tile(g * d + np.arange(d), len(on)))
        bv.append(coef.ravel())
    A_eq = sp.csc_matrix(
        (np.concatenate(bv), (np.concatenate(bi), np.concatenate(bj))), shape=(n * k, n_var)
    )
    # cones: -S_ip x_i' u_g <= 0 on the kept rows
    ci, cj, cv, m = [], [], [], 0
    for g in range(G):
        rr = rows[g]
        ci.append(np.repeat(m + np.arange(len(rr)), d))
        cj.append(np.tile(g * d + np.arange(d), len(rr)))
        cv.append((-S[rr, p_idx[g]][:, None] * X[rr]).ravel())
        m += len(rr)
    A_cone = sp.csc_matrix(
        (np.concatenate(cv), (np.concatenate(ci), np.concatenate(cj))), shape=(m, n_var)
    )
    # second-order cones: (t_g, u_g) -> rows [-t_g; -u_g]
    si = np.concatenate([g * (d + 1) + np.arange(d + 1) for g in range(G)])
    sj = np.concatenate([np.r_[n_u + g, g * d + np.arange(d)] for g in range(G)])
    A_soc = sp.csc_matrix((-np.ones(len(si)), (si, sj)), shape=(G * (d + 1), n_var))
    A = sp.vstack([A_eq, A_cone, A_soc]).tocsc()
    b = np.zeros(A.shape[0])
    wk = np.repeat(w, k)
    P = sp.diags(np.r_[np.zeros(r0), wk]).tocsc()
    q = np.r_[np.zeros(n_u), np.full(G, p.beta), -wk * y.ravel()]
    cones = [clarabel.ZeroConeT(n * k), clarabel.NonnegativeConeT(m)] + [
        clarabel.SecondOrderConeT(d + 1) for _ in range(G)
    ]
    settings = clarabel.DefaultSettings()
    settings.verbose = False
    settings.direct_solve_method = "faer"  # supernodal: about 2x QDLDL here
    settings.max_threads = torch.get_num_threads()
    settings.tol_gap_abs = settings.tol_gap_rel = settings.tol_feas = 1e-9
    sol = clarabel.DefaultSolver(P, q, A, b, cones, settings).solve()
    u = np.asarray(sol.x)[:n_u].reshape(G, d)
    z = np.asarray(sol.z)[n * k : n * k + m]
    mus = np.split(z, np.cumsum([len(r) for r in rows])[:-1])
    return u, mus, str(sol.status)


def polish(
    p: ConvexProgram,
    u: torch.Tensor,
    rel_margin: float = 0.01,
    feas_tol: float = 1e-9,
    max_rounds: int = 30,
) -> tuple[torch.Tensor, torch.Tensor, PolishInfo]:
    """Solve the ReLU program exactly from the approximate solution ``u`` ``(2, k, P, d)``.

    Args:
        p: a cone-constrained program with the squared loss.
        u: approximate solution (its zero groups and small slacks give the first guess).
        rel_margin: a row is kept at first when its slack ``(2 D - I) X u_g`` is below
            ``rel_margin`` times the group's largest slack.
        feas_tol: rows violated by more than this (relative to ``||x_i|| ||u_g||``) are
            added in the next round.
        max_rounds: cutting-plane rounds.

    Returns:
        ``(u, mu, info)``: the polished weights, cone multipliers ``(n, 2, k, P)`` and
        :class:`PolishInfo`; ``info.converged`` is False (and ``u`` the last iterate) when
        the rounds ran out or Clarabel failed.
    """
    if not p.constrained or not isinstance(p.datafit, Quadratic):
        raise ValueError("polish handles the cone-constrained programs with the squared loss")
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
        rows[g] = np.nonzero(s <= rel_margin * max(float(s.max()), 0.0))[0]
    info = PolishInfo()
    S = p.sign.cpu().double().numpy()
    P_ = shape[2]
    out = torch.zeros_like(u_flat)
    while info.rounds < max_rounds:
        info.rounds += 1
        g_arr = np.array(groups, dtype=np.int64)
        solved_rows = [rows[g] for g in groups]
        ug, mus, info.status = _solve_restricted(p, g_arr, solved_rows)
        if info.status not in ("Solved", "AlmostSolved"):
            break
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
            near = violated | (s_all <= rel_margin * np.maximum(s_all.max(0), 0.0)[None, :])
            for i, g in enumerate(groups):
                rows[g] = np.union1d(rows[g], np.nonzero(near[:, i])[0])
            continue
        # dual check of the dropped groups
        added_groups = _failing_zero_groups(p, out.reshape(shape).to(p.X), set(groups))
        if not added_groups:
            info.converged = True
            break
        for g, direction in added_groups:
            groups.append(g)
            s = S[:, g % P_] * (X.numpy() @ direction.numpy())
            rows[g] = np.nonzero(s <= rel_margin * max(float(s.max()), 0.0))[0]
    mu = torch.zeros(n, int(np.prod(shape[:-1])), dtype=X.dtype)
    if info.status in ("Solved", "AlmostSolved"):
        for i, g in enumerate(g_arr):
            mu[solved_rows[i], g] = torch.from_numpy(np.maximum(mus[i], 0.0))
    info.n_groups = len(groups)
    info.n_rows = sum(len(rows[g]) for g in groups)
    dev, dt = u.device, u.dtype
    return (
        out.reshape(shape).to(dev, dt),
        mu.reshape(n, *shape[:-1]).to(dev, dt),
        info,
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
    direction ``-(F_g^T theta - G_g^T mu)`` ``(d,)`` that guesses its kept rows."""
    theta = p.datafit.grad(p.forward(u))
    norms, mu = min_cone_norms(p.X, p.weight, p.sign, theta)
    bad = [g for g in np.nonzero(norms.reshape(-1).cpu().numpy() > p.beta * (1 + 1e-6))[0]]
    bad = [int(g) for g in bad if int(g) not in kept]
    if not bad:
        return []
    g_ = torch.einsum("nk,np,nd->kpd", theta, p.weight, p.X)
    res = torch.stack([g_, -g_]) - torch.einsum("njkp,np,nd->jkpd", mu, p.sign, p.X)
    res = res.reshape(-1, p.X.shape[1]).detach().cpu().double()
    return [(g, -res[g]) for g in bad]
