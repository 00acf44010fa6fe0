"""The best nonnegative rescaling of the groups of a point, for the squared loss.

Scaling a group ``u_g`` by ``alpha_g >= 0`` keeps it in its cone, so from any feasible
point ``u`` the best such scaling, output by output,

    min_{alpha >= 0}  (1/2n) sum_i w_i (sum_g alpha_g (F_g u_g)_i + o_i - y_i)^2
                      + beta sum_g alpha_g ||u_g||,

is a feasible point at least as good: a nonnegative quadratic program with one variable
per group (its Gram matrix costs one ``n x 2P`` product per output). Interior-point iterates
carry a spread of small weights along every direction of their cone; rescaling them
settles the primal side of the certified gap closer to the optimum (its dual side then
binds), so a gap tolerance is met sooner (figures in ``docs/convex_nn_design.md``).
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.optimize import nnls

from mrsolve.solvers.convex_nn.problem import ConvexProgram

_JITTER = 1e-12  # relative ridge making the Gram matrix factorable (groups may be collinear)


def rescale_groups(
    p: ConvexProgram, u: torch.Tensor, xu: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """The best nonnegative rescaling of the groups of ``u`` (``p.shape``) for ``p``'s
    squared loss, output by output; ``(alpha u, objective by output (k,))``. Pass
    ``xu = p.project(u)`` to reuse it.

    Each output's quadratic program is solved by Lawson and Hanson's active-set method
    (``scipy.optimize.nnls``) on the Cholesky factor of its ridged Gram matrix; the
    objective returned is evaluated exactly at the rescaled point. An output whose
    program fails to solve keeps ``alpha = 1``."""
    df = p.datafit
    n, k = p.X.shape[0], p.n_outputs
    xu = p.project(u) if xu is None else xu  # (n, [2,] k, P)
    root = (df.weights / df.n).sqrt().to(u.dtype)[:, None]  # Sigma^(1/2)
    w = root * p.weight  # (n, P): a group's predictions F_g u_g = diag(w) X u_g
    if p.constrained:  # predictions are F (u_+ - u_-)
        w = torch.stack([w, -w], 1)[:, :, None]
        B = (xu * w).permute(2, 0, 1, 3).reshape(k, n, -1)  # (k, n, 2P)
        norms = p.group_norms(u).permute(1, 0, 2).reshape(k, -1)
    else:
        B = (xu * w[:, None]).permute(1, 0, 2)
        norms = p.group_norms(u)
    target = root * (df.y - df.offset).to(u.dtype).expand(n, k)
    gram = (B.mT @ B).cpu().double().numpy()
    lin = ((B.mT @ target.T[:, :, None])[..., 0] - p.beta * norms).cpu().double().numpy()
    alpha = np.ones(lin.shape)
    for c, G in enumerate(gram):
        ridge = _JITTER * max(float(G.diagonal().max()), 1e-300)
        try:
            R = np.linalg.cholesky(G + ridge * np.eye(len(G))).T
            alpha[c] = nnls(R, np.linalg.solve(R.T, lin[c]))[0]
        except (np.linalg.LinAlgError, RuntimeError):
            continue
    alpha = torch.from_numpy(alpha).to(u)
    scale = alpha.reshape(k, 2, -1).permute(1, 0, 2) if p.constrained else alpha
    v = u * scale[..., None]
    penalty = p.group_norms(v).sum((0, 2) if p.constrained else 1)
    return v, df.value_by_output(p.forward(v, xu * scale)) + p.beta * penalty
