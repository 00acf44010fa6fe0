"""ConvexProgram's forward and adjoint against the per-group sums they stand for, in both
of their evaluation orders (few outputs: project first; several: patterns first)."""

import pytest
import torch

from mrsolve.solvers.convex_nn import ConvexProgram, make_datafit


@pytest.mark.parametrize("k", [1, 2, 4])
@pytest.mark.parametrize("kappa", [None, 0.0, 0.2])
def test_forward_and_adjoint_match_the_per_group_sums(k, kappa):
    gen = torch.Generator().manual_seed(k)
    n, d, P = 23, 5, 7
    X = torch.randn(n, d, generator=gen, dtype=torch.float64)
    gates = torch.randn(P, d, generator=gen, dtype=torch.float64)
    y = torch.randn(n, k, generator=gen, dtype=torch.float64)
    p = ConvexProgram(X, gates, kappa, k, make_datafit("squared", y, torch.float64), 0.1)
    u = torch.randn(p.shape, generator=gen, dtype=torch.float64)
    r = torch.randn(n, k, generator=gen, dtype=torch.float64)
    D = (X @ gates.T >= 0).to(torch.float64)
    M = D if kappa is None else D + kappa * (1 - D)
    v = u if kappa is None else u[0] - u[1]
    ref = torch.stack([sum(M[:, q] * (X @ v[c, q]) for q in range(P)) for c in range(k)], dim=1)
    g = torch.stack([torch.stack([X.T @ (M[:, q] * r[:, c]) for q in range(P)]) for c in range(k)])
    g_ref = g if kappa is None else torch.stack([g, -g])
    torch.testing.assert_close(p.forward(u), ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(p.adjoint(r), g_ref, rtol=1e-12, atol=1e-12)
