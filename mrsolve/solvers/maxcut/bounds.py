"""Upper bounds on the dual constraint of two-layer ReLU training, hence lower bounds.

For the squared loss ``L(z) = ||z - y||^2 / (2n)`` and weight decay ``beta`` the dual of
the (infinite-width) ReLU training problem is::

    max_theta  -L*(theta)   s.t.   C(theta) = max_{||u|| <= 1} |theta^T (X u)_+| <= beta.

Any ``B >= C(theta)`` makes ``min(1, beta / B) theta`` feasible, so its dual value is a
lower bound on the training optimum. Two ways to get ``B``:

- :func:`arrangement_bound` (exact up to the solver tolerance, small rank): over every
  cell ``D`` of the hyperplane arrangement, ``max_{u in cone_D, ||u|| <= 1} -+theta^T D X u
  = min_{mu >= 0} ||X^T D theta -+ X^T (2D - I) mu||``; any ``mu`` gives an upper bound.
- :func:`maxcut_bound` (any rank): ``+-theta^T (X u)_+ <= ||X^T D_u theta_{+-}||`` with
  ``theta_{+-}`` the positive / negative parts, and ``max_D ||X^T D a||^2 = max_{z in
  {0,1}^m} (a o z)^T X X^T (a o z)`` is a Max-Cut-like binary quadratic. Written with
  ``v in {+-1}^(m+1)`` (``z_i = (1 + v_0 v_i) / 2``) it is ``max v^T Q v`` and its
  Goemans-Williamson SDP ``max <Q, V>, diag V = 1, V >= 0`` bounds it from above.
  The SDP is solved by CVXPY (small ``m``) or Burer-Monteiro (low rank, any ``m``); the
  bound is then made rigorous from the dual: for any ``w``,
  ``v^T Q v <= sum(w) + (m + 1) max(0, lambda_max(Q - diag w))`` on ``{+-1}^(m+1)``.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mrsolve.solvers.convex_nn.certificate import min_cone_norms
from mrsolve.solvers.convex_nn.patterns import enumerate_gates
from mrsolve.solvers.validation import SeedLike, make_generator

SDP_METHODS = ("cvxpy", "burer_monteiro")


def orthogonal_bound(X: torch.Tensor, y: torch.Tensor, theta: torch.Tensor) -> float:
    """``B >= C(theta)`` in closed form for orthogonally separable ``(X, sign(y))``.

    For ``a >= 0`` (either sign part of ``theta``) and any 0/1 ``z``, the cross-class
    products are ``<= 0`` and the within-class ones ``>= 0``, so
    ``||X^T (a o z)||^2 <= ||X_+^T a_+||^2 + ||X_-^T a_-||^2`` (``a_c``: ``a`` on class
    ``c``). Equality (``B = C``) when each sign part lives in one class, i.e. when the
    residual has the sign of ``y``: then the two class patterns are optimal.
    """
    theta = theta.reshape(-1)
    total = 0.0
    for a in (theta.clamp_min(0), (-theta).clamp_min(0)):
        sq = sum(float(torch.linalg.vector_norm(X.T @ (a * mask)) ** 2) for mask in (y > 0, y < 0))
        total = max(total, sq)
    return total**0.5


def arrangement_bound(
    X: torch.Tensor, theta: torch.Tensor, gates: torch.Tensor | None = None, n_iter: int = 500
) -> float:
    """``B >= C(theta)`` from every cell of the arrangement of ``X`` ``(n, d)``.

    Args:
        X: data (bias column included when the network has one).
        theta: ``(n,)`` dual point.
        gates: gates of every cell (default :func:`enumerate_gates`; raises for large
            rank).
        n_iter: projected-gradient iterations on the cone multipliers.
    """
    g = enumerate_gates(X) if gates is None else gates
    D = (X @ g.T >= 0).to(X.dtype)
    norms, _ = min_cone_norms(X, D, 2 * D - 1, theta.reshape(-1, 1), None, n_iter)
    return float(norms.max())


def _homogenized(a: np.ndarray, K: np.ndarray) -> np.ndarray:
    """``Q = M^T diag(a) K diag(a) M`` with ``M = [1, I] / 2`` (``(m + 1)`` square)."""
    m = a.size
    M = np.hstack([np.ones((m, 1)), np.eye(m)]) / 2
    return M.T @ (a[:, None] * K * a[None, :]) @ M


def _dual_value(Q: np.ndarray, w: np.ndarray) -> float:
    """Rigorous ``max_{v in {+-1}^m} v^T Q v <= sum w + m max(0, lambda_max(Q - diag w))``."""
    lam = float(np.linalg.eigvalsh(Q - np.diag(w))[-1])
    return float(w.sum() + Q.shape[0] * max(0.0, lam))


def _sdp_cvxpy(Q: np.ndarray, solver: str = "CLARABEL") -> tuple[np.ndarray, np.ndarray]:
    """Primal ``V`` and dual ``w`` of the Max-Cut SDP by CVXPY."""
    import cvxpy as cp

    m = Q.shape[0]
    V = cp.Variable((m, m), PSD=True)
    con = cp.diag(V) == 1
    prob = cp.Problem(cp.Maximize(cp.trace(Q @ V)), [con])
    prob.solve(solver=solver)
    if prob.status not in ("optimal", "optimal_inaccurate"):
        raise RuntimeError(f"CVXPY ({solver}) returned status {prob.status} on the SDP")
    return np.asarray(V.value), np.abs(np.asarray(con.dual_value)).reshape(-1)


def _factor(V: np.ndarray) -> np.ndarray:
    """Rows ``f_i`` with ``f_i^T f_j ~= V_ij`` (eigen-factor, negative part dropped)."""
    lam, U = np.linalg.eigh((V + V.T) / 2)
    return U * np.sqrt(np.clip(lam, 0, None))


def _sdp_burer_monteiro(
    Q: np.ndarray, rng: np.random.Generator, n_iter: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank factor ``F`` (unit rows) and dual ``w`` of the Max-Cut SDP.

    Rank ``ceil(sqrt(2 m)) + 1`` (enough for a global optimum of the SDP, Boumal et al.
    2016). Own code: the update ``F <- rownormalize(Q F)`` is the generalized power
    method, monotone for PSD ``Q`` and a few lines; ``w_i = (Q F F^T)_ii``."""
    m = Q.shape[0]
    k = min(m, math.ceil(math.sqrt(2 * m)) + 1)
    F = rng.standard_normal((m, k))
    F /= np.linalg.norm(F, axis=1, keepdims=True)
    for _ in range(n_iter):
        G = Q @ F
        norms = np.linalg.norm(G, axis=1, keepdims=True)
        F = np.where(norms > 0, G / np.where(norms > 0, norms, 1), F)
    w = np.einsum("ik,ik->i", Q @ F, F)
    return F, w


def maxcut_bound(
    X: torch.Tensor,
    a: torch.Tensor,
    method: str = "burer_monteiro",
    n_cuts: int = 0,
    seed: SeedLike = 0,
) -> tuple[float, np.ndarray]:
    """Upper bound on ``max_{z in {0,1}^n} ||X^T (a o z)||`` for ``a >= 0``, and GW cuts.

    Args:
        X: ``(n, d)`` data.
        a: ``(n,)`` non-negative weights.
        method: ``"cvxpy"`` (SDP by Clarabel) or ``"burer_monteiro"``.
        n_cuts: random-hyperplane roundings of the SDP factor to return.
        seed: seed of the factor start and of the rounding.

    Returns:
        ``(B, Z)``: the bound and ``(n_cuts, n)`` 0/1 cuts (rows of zeros when ``a == 0``).
    """
    if method not in SDP_METHODS:
        raise ValueError(f"method must be one of {list(SDP_METHODS)}, got {method!r}")
    rng = make_generator(seed, "numpy")
    a_np = a.detach().cpu().double().numpy()
    if np.any(a_np < 0):
        raise ValueError("a must be non-negative, got negative entries")
    support = np.flatnonzero(a_np > 0)
    Z = np.zeros((n_cuts, a_np.size))
    if support.size == 0:
        return 0.0, Z
    Xs = X.detach().cpu().double().numpy()[support]
    Q = _homogenized(a_np[support], Xs @ Xs.T)
    if method == "cvxpy":
        V, w = _sdp_cvxpy(Q)
        F = _factor(V)
    else:
        F, w = _sdp_burer_monteiro(Q, rng)
    bound = math.sqrt(max(_dual_value(Q, w), 0.0))
    if n_cuts:
        v = np.sign(F @ rng.standard_normal((F.shape[1], n_cuts)))  # (m + 1, n_cuts)
        Z[:, support] = (v[1:] * v[:1] > 0).T
    return bound, Z


def relaxation_bound(
    X: torch.Tensor,
    theta: torch.Tensor,
    method: str = "burer_monteiro",
    n_cuts: int = 0,
    seed: SeedLike = 0,
) -> tuple[float, np.ndarray]:
    """``B >= C(theta)`` as the larger of the Max-Cut bounds of ``theta``'s positive and
    negative parts, with ``n_cuts`` GW cuts of each (``(2 n_cuts, n)``)."""
    rng = make_generator(seed, "numpy")
    theta = theta.reshape(-1)
    out = [
        maxcut_bound(X, part, method, n_cuts, rng)
        for part in (theta.clamp_min(0), (-theta).clamp_min(0))
    ]
    return max(b for b, _ in out), np.concatenate([Z for _, Z in out])
