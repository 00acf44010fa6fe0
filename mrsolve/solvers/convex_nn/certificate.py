"""Optimality certificates of the convex programs: duality gap, cone violation, pattern gap.

Dual of ``min_u L(F u) + beta sum_g ||u_g||  s.t.  G_g u_g >= 0`` (``F`` :meth:`forward`,
``G`` :meth:`cone`, ``L`` the datafit)::

    max_{theta, mu >= 0}  -L*(theta)   s.t.  ||F_g^T theta - G_g^T mu_g||_2 <= beta  for all g

Any ``theta`` and ``mu >= 0`` scaled by ``t = min(1, beta / max_g ||...||)`` is feasible,
so ``-L*(t theta)`` is a lower bound on the optimum and the gap to the primal objective
bounds the suboptimality. We take ``theta = grad L(yhat)`` (exact at the optimum) and
improve ``mu`` by projected gradient on ``min_{mu >= 0} ||F_g^T theta - G_g^T mu_g||``.
For a datafit ``(1/n) sum w_i l(eta_i, y_i)`` with mean function ``m``, ``theta = (w/n)
(m(eta) - y)`` and, with ``p = y + t (m(eta) - y)``, ``-L*(t theta) = (1/n) sum w_i phi(p_i,
y_i)``: ``phi = (y^2 - p^2)/2`` (squared), binary entropy (logistic), entropy (multinomial).
"""

from __future__ import annotations

import math

import torch

from mrsolve.solvers.alg import fista
from mrsolve.solvers.convex_nn.problem import ConvexProgram
from mrsolve.solvers.datafit import Datafit, Logistic, Multinomial, Quadratic
from mrsolve.solvers.prox import project_nonneg


def _entropy(p: torch.Tensor) -> torch.Tensor:
    """-p log p with 0 log 0 = 0."""
    return -torch.where(p > 0, p * torch.log(torch.where(p > 0, p, torch.ones_like(p))), 0 * p)


def dual_objective(datafit: Datafit, eta: torch.Tensor, t: float) -> float:
    """``-L*(t grad L(eta))``, a lower bound on the optimum when ``t grad L(eta)`` is dual
    feasible (offsets are not supported: the programs here use none)."""
    return float(dual_by_output(datafit, eta, t).sum())


def dual_by_output(datafit: Datafit, eta: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """:func:`dual_objective` split over the columns of ``(n, k)`` targets: ``(k,)``.
    For the squared and logistic losses, which separate by column, ``t`` may be one factor
    per column ``(k,)`` (each column's dual term is then a bound for its own program)."""
    y = datafit.y
    p = y + t * (datafit.mean(eta + datafit.offset) - y)
    w = (datafit.weights / datafit.n)[:, None] if y.ndim == 2 else datafit.weights / datafit.n
    if isinstance(datafit, Quadratic):
        phi = (y**2 - p**2) / 2
    elif isinstance(datafit, Multinomial):
        phi = _entropy(p)
    elif isinstance(datafit, Logistic):
        phi = _entropy(p) + _entropy(1 - p)
    else:
        raise TypeError(
            f"datafit must be Quadratic, Logistic or Multinomial, got {type(datafit).__name__}"
        )
    return (w * phi).sum(0)


def scaled_dual(datafit: Datafit, eta: torch.Tensor, norms: torch.Tensor, beta: float) -> float:
    """The sum of :func:`dual_bounds`: a lower bound on the optimum of the program."""
    return float(dual_bounds(datafit, eta, norms, beta).sum())


def dual_bounds(
    datafit: Datafit, eta: torch.Tensor, norms: torch.Tensor, beta: float
) -> torch.Tensor:
    """Dual values of ``theta = grad L(eta)`` scaled into the dual feasible set: ``-L*(t
    theta)`` for ``t`` in ``[0, min(1, beta / max(norms))]``, ``norms`` ``(..., k, P)`` the
    group norms of ``F^T theta - G^T mu`` (of the gradient ``F^T theta`` for programs
    without cones). Where the loss separates by output (squared and logistic on ``(n, k)``
    targets) each output is its own program with its own interval from its own groups:
    one bound per output ``(k,)``, at the best ``t`` of its interval for the squared loss
    (the bound is a concave quadratic in ``t``), else at the better of its interval's end
    and the common ``t``, so that they sum to at least the common ``t``'s bound.
    Otherwise one bound (0-d) at the common ``t = min(1, beta / max(norms))``."""
    worst = norms.reshape(-1, *norms.shape[-2:]).amax(dim=(0, 2))  # (k,)
    if not (isinstance(datafit, (Quadratic, Logistic)) and datafit.y.ndim == 2):
        common = min(1.0, beta / max(float(worst.max()), 1e-300))
        return torch.tensor(dual_objective(datafit, eta, common), dtype=eta.dtype)
    t_max = torch.where(worst <= beta, 1.0, beta / worst)
    if isinstance(datafit, Quadratic):
        # sum (w/n) (y^2 - (y + t r)^2) / 2 = -t a - t^2 b / 2, largest at t = -a / b
        y = datafit.y
        r = datafit.mean(eta + datafit.offset) - y
        wr = (datafit.weights / datafit.n)[:, None] * r
        a, b = (wr * y).sum(0), (wr * r).sum(0)
        t = torch.minimum((-a / b.clamp_min(1e-300)).clamp_min(0.0), t_max)
        return -t * (a + 0.5 * t * b)
    common = t_max.min()
    return torch.maximum(dual_by_output(datafit, eta, t_max), dual_by_output(datafit, eta, common))


def min_cone_norms(
    X: torch.Tensor,
    weight: torch.Tensor,
    sign: torch.Tensor | None,
    theta: torch.Tensor,
    mu0: torch.Tensor | None = None,
    n_iter: int = 200,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``min_{mu >= 0} ||s X^T M_p theta_c - X^T S_p mu||`` for every sign ``s = +-1``,
    output ``c`` and pattern ``p``.

    Args:
        X: ``(n, d)``.
        weight: ``(n, P)`` fit weights ``M_p``.
        sign: ``(n, P)`` cone signs ``2 D_p - 1``, or None for no cones (``mu = 0``).
        theta: ``(n, k)``.
        mu0: ``(n, 2, k, P)`` start (zeros by default).
        n_iter: projected-gradient (FISTA) iterations; any ``mu >= 0`` gives an upper bound.

    Returns:
        norms ``(2, k, P)`` (``(k, P)`` without cones) and the multipliers used.
    """
    n, d = X.shape
    k, P = theta.shape[1], weight.shape[1]
    Xt = X.T.contiguous()
    # plain GEMMs on (n, 2kP) / (2kP, d) matrices: a 3-operand einsum ran ~20x slower
    g = (Xt @ (theta[:, :, None] * weight[:, None, :]).reshape(n, -1)).T.reshape(k, P, d)
    if sign is None:
        return torch.linalg.vector_norm(g, dim=-1), None
    target = torch.stack([g, -g])  # (2, k, P, d)

    def cone_t(mu, Xt=Xt, sign=sign):  # (n, 2, k, P) -> sum_i s_i mu_i x_i, (2, k, P, d)
        return (Xt @ (mu * sign[:, None, None, :]).reshape(n, -1)).T.reshape(target.shape)

    mu = torch.zeros((n, 2, k, P), dtype=X.dtype, device=X.device)
    mu = mu if mu0 is None else project_nonneg(mu0)
    if n_iter > 0:
        # the iterations only choose a mu >= 0, which bounds the norms whatever its accuracy:
        # they run in float32 (half the time of the GEMMs) and the bound below in X's dtype
        low = torch.float32 if X.dtype == torch.float64 else X.dtype
        X_l, Xt_l, sign_l, target_l = X.to(low), Xt.to(low), sign.to(low), target.to(low)

        def cone(r):  # adjoint of cone_t: (2, k, P, d) -> (n, 2, k, P)
            return (X_l @ r.reshape(-1, d).T).reshape(n, 2, k, P) * sign_l[:, None, None, :]

        def f(mu, a):
            return 0.5 * ((target_l - a) ** 2).sum()

        def grad(mu, a):
            return -cone(target_l - a)

        step = 1.0 / max(float(torch.linalg.matrix_norm(X, ord=2)) ** 2, 1e-30)
        mu, _ = fista(
            f,
            grad,
            lambda v, t: project_nonneg(v),
            mu.to(low),
            step,
            n_iter,
            0.0,
            backtrack=False,
            forward=lambda mu: cone_t(mu, Xt_l, sign_l),
        )
        mu = mu.to(X.dtype)
    return torch.linalg.vector_norm(target - cone_t(mu), dim=-1), mu


# The fresh patterns' bounds: _FRESH_FIRST of the iterations for all of them, the rest for
# batches of the _FRESH_KEEP share with the largest bounds until the largest bound is a
# refined one (only the largest is reported, and each bound is an upper bound at any
# iteration): about a third of the work of refining all of them (docs/convex_nn_design.md).
_FRESH_FIRST = 0.25
_FRESH_KEEP = 0.125


def _fresh_norms(
    X: torch.Tensor,
    weight: torch.Tensor,
    D: torch.Tensor,
    constrained: bool,
    theta: torch.Tensor,
    n_iter: int,
) -> torch.Tensor:
    """Upper bounds on ``min_mu ||X^T M_q theta - X^T S_q mu||`` for the fresh patterns
    ``D`` ``(n, Q)`` (fit weights ``weight``): :func:`min_cone_norms`, with most of its
    ``n_iter`` iterations spent on the patterns whose bounds are largest. ``(..., Q)``."""
    if not constrained:
        return min_cone_norms(X, weight, None, theta)[0]
    sign = 2 * D - 1
    first = math.ceil(_FRESH_FIRST * n_iter)
    norms, mu = min_cone_norms(X, weight, sign, theta, None, first)
    Q = D.shape[1]
    batch = max(1, math.ceil(_FRESH_KEEP * Q))
    done = torch.zeros(Q, dtype=torch.bool, device=D.device)
    # refine the largest bounds until the largest one is a refined pattern's
    while not bool(done.all()):
        worst = norms.amax(dim=(0, 1)).masked_fill(done, -math.inf)
        if bool(done.any()) and float(worst.max()) <= float(norms[..., done].max()):
            break
        top = worst.argsort(descending=True)[: min(batch, int((~done).sum()))]
        refined, _ = min_cone_norms(
            X, weight[:, top], sign[:, top], theta, mu[..., top], n_iter - first
        )
        norms[..., top] = torch.minimum(norms[..., top], refined)
        done[top] = True
    return norms


def certificate(
    program: ConvexProgram,
    u: torch.Tensor,
    mu: torch.Tensor | None = None,
    fresh_gates: torch.Tensor | None = None,
    n_iter: int = 200,
    dual_bound: float | None = None,
) -> dict[str, float]:
    """Certificate of ``u`` for ``program``.

    Args:
        program: the convex program.
        u: group weights.
        mu: cone multipliers ``(n, 2, k, P)`` from the solver (improved here), if any.
        fresh_gates: ``(Q, d)`` gates not in the program for the pattern gap.
        n_iter: projected-gradient iterations for the cone multipliers (for ``mu`` only
            when no ``dual_bound`` is given; always for the fresh patterns).
        dual_bound: a lower bound on the optimum known from elsewhere (the solver's best
            dual value, e.g. ``info.dual`` of :func:`.fista_solver.solve_fista`); the
            larger of it and the bound computed here is reported.

    Returns:
        ``primal``, ``dual`` (a lower bound on the optimum of the sampled program),
        ``duality_gap`` (primal - dual), ``relative_gap`` (gap / |primal|),
        ``constraint_violation`` (largest cone violation) and ``pattern_gap``: the largest
        ``min_mu ||X^T M theta - X^T S mu|| - beta`` over fresh patterns (an upper bound;
        > 0 means the sampled program is not optimal for the full one, NaN if no fresh
        gates were given).
    """
    p = program
    eta = p.forward(u)
    theta = p.datafit.grad(eta)
    # a solver's own bound (the IPM's, from its multipliers) is reported when larger: the
    # projected-gradient refinement of those multipliers would only re-derive it
    refine = 0 if dual_bound is not None and mu is not None else n_iter
    norms, _ = min_cone_norms(p.X, p.weight, p.sign if p.constrained else None, theta, mu, refine)
    primal = p.objective(u)
    dual = scaled_dual(p.datafit, eta, norms, p.beta)
    dual = dual if dual_bound is None else max(dual, float(dual_bound))
    gap = primal - dual
    pattern_gap = float("nan")
    if fresh_gates is not None and fresh_gates.shape[0] > 0:
        D = (p.X @ fresh_gates.to(p.X.dtype).T >= 0).to(p.X.dtype)
        weight = D if p.kappa is None else D + p.kappa * (1 - D)
        pattern_gap = float(_fresh_norms(p.X, weight, D, p.constrained, theta, n_iter).max())
        pattern_gap -= p.beta
    return {
        "primal": primal,
        "dual": dual,
        "duality_gap": gap,
        "relative_gap": gap / max(abs(primal), 1e-300),
        "constraint_violation": p.violation(u),
        "pattern_gap": pattern_gap,
    }


def subspace_dual(
    datafit: Quadratic,
    etas: torch.Tensor,
    grads: torch.Tensor,
    beta: float,
    n_newton: int = 6,
) -> torch.Tensor:
    """Dual bounds of the squared loss from the best dual point in the span of several
    gradients: :func:`dual_bounds` at ``theta = sum_j z_j grad L(eta_j)`` for ``z``
    maximizing the dual subject to ``||F_g^T theta|| <= beta`` (a small barrier problem in
    ``m`` unknowns per output). A lower bound on the optimum for any ``z``, so the
    approximate solve only costs tightness: the residual-scaled bound closes like the square
    root of the suboptimality, this one 1.6-2.5x tighter (docs/convex_nn_design.md).

    Args:
        datafit: the squared loss on ``(n, k)`` targets.
        etas: ``(m, n, k)`` predictions at which the gradients were taken.
        grads: ``(m, k, P, d)`` their group gradients ``F^T grad L(eta_j)``.
        beta: group-lasso weight.
        n_newton: Newton steps per barrier weight (three weights).

    Returns:
        ``(k,)`` bounds (the outputs separate).
    """
    y, w = datafit.y, (datafit.weights / datafit.n)[:, None]
    res = (etas + datafit.offset - y).permute(2, 1, 0)  # (k, n, m) residuals
    A = res.mT @ (w.T[..., None] * res)  # (k, m, m): the dual is -z^T A z / 2 - b^T z
    b = (res * (w * y).T[..., None]).sum(1)  # (k, m)
    G = grads.permute(1, 2, 3, 0)  # (k, P, d, m)
    Q = G.mT @ G  # (k, P, m, m)
    m = A.shape[-1]
    # start: the newest gradient, scaled well inside the feasible set
    worst = torch.linalg.vector_norm(grads[-1], dim=-1).amax(-1)  # (k,)
    z = torch.zeros_like(b)
    z[:, -1] = 0.5 * torch.clamp(beta / worst.clamp_min(1e-300), max=1.0)

    k, P = Q.shape[:2]
    Qflat, Qrows = Q.reshape(k, P, m * m), Q.reshape(k, P * m, m)
    eye = torch.eye(m, dtype=A.dtype, device=A.device)

    def parts(z):  # Q_g z (k, P, m) and the slacks beta^2 - z^T Q_g z (k, P)
        Qz = (Qrows @ z[..., None]).reshape(k, P, m)
        return Qz, beta**2 - (Qz * z[:, None, :]).sum(-1)

    def f(z, mu):  # the barrier objective (k,), inf where infeasible
        _, r = parts(z)
        quad = 0.5 * (z * (A @ z[..., None])[..., 0]).sum(-1) + (b * z).sum(-1)
        val = quad - mu * torch.log(r.clamp_min(1e-300)).sum(-1)
        return torch.where((r > 0).all(-1), val, math.inf)

    ridge = 1e-12 * torch.diagonal(A, dim1=-2, dim2=-1).sum(-1).clamp_min(1e-300)
    mu = 0.1 * (b * z).sum(-1).abs() / P
    for _ in range(3):  # barrier weights mu, mu / 10, mu / 100
        fz = f(z, mu)
        for _ in range(n_newton):
            Qz, r = parts(z)
            S = Qz / r[..., None]  # (k, P, m)
            grad = (A @ z[..., None])[..., 0] + b + 2 * mu[:, None] * S.sum(1)
            Hb = 2 * ((1 / r)[:, None, :] @ Qflat).reshape(k, m, m) + 4 * S.mT @ S
            H = A + mu[:, None, None] * Hb + ridge[:, None, None] * eye
            step = -torch.linalg.solve(H, grad[..., None])[..., 0]
            alpha = torch.ones_like(mu)
            for _ in range(30):  # halve until feasible and not worse, per output
                f_new = f(z + alpha[:, None] * step, mu)
                bad = ~(f_new <= fz)
                if not bool(bad.any()):
                    break
                alpha = torch.where(bad, alpha / 2, alpha)
            ok = f_new <= fz
            z = z + torch.where(ok, alpha, 0.0)[:, None] * step
            fz = torch.where(ok, f_new, fz)
        mu = mu / 10
    eta = torch.einsum("km,mnk->nk", z, etas) + (1 - z.sum(-1)) * (y - datafit.offset)
    norms = torch.linalg.vector_norm(torch.einsum("km,mkpd->kpd", z, grads), dim=-1)
    return dual_bounds(datafit, eta, norms, beta)
