"""Regularizers: TV prox against cvxpy, difference adjoints, smooth penalties."""

import itertools

import cvxpy as cp
import numpy as np
import pytest
import torch

from mrsolve.recon.spectral.regularizers import (
    TVProx,
    forward_difference,
    forward_difference_adjoint,
    smooth_tv,
    smoothness,
)


def _cvxpy_prox(v: np.ndarray, lam: float, wf: float) -> np.ndarray:
    """argmin 1/2 ||x - v||^2 + lam (sum |grad_xy x| + wf sum |D_f x|), Neumann differences."""
    nf, ny, nx = v.shape
    xs = [cp.Variable((ny, nx)) for _ in range(nf)]
    tv = 0
    for x in xs:
        gx = cp.hstack([x[:, 1:] - x[:, :-1], np.zeros((ny, 1))])
        gy = cp.vstack([x[1:, :] - x[:-1, :], np.zeros((1, nx))])
        tv += cp.sum(cp.norm(cp.vstack([cp.vec(gx, order="C"), cp.vec(gy, order="C")]), 2, axis=0))
    for a, b in itertools.pairwise(xs):
        tv += wf * cp.sum(cp.abs(b - a))
    fit = sum(cp.sum_squares(x - v[i]) for i, x in enumerate(xs))
    cp.Problem(cp.Minimize(0.5 * fit + lam * tv)).solve(solver=cp.CLARABEL)
    return np.stack([x.value for x in xs])


def test_tv_prox_matches_cvxpy():
    gen = np.random.default_rng(0)
    v = gen.normal(size=(2, 6, 5))
    v[:, 2:5, 1:4] += 2.0
    ref = _cvxpy_prox(v, 0.3, 0.5)
    prox = TVProx([(-3, 0.5)], n_iter=300)
    out = prox(torch.tensor(v), 0.3).numpy()
    assert np.abs(out - ref).max() < 2e-3


def _cvxpy_complex_prox(v: np.ndarray, lam: float, wf: float) -> np.ndarray:
    """Complex isotropic TV: |(D_x x, D_y x)| over real and imaginary parts, |D_f x| modulus."""
    nf, ny, nx = v.shape
    parts = [[cp.Variable((ny, nx)) for _ in range(nf)] for _ in range(2)]  # real, imag

    def dx(x):
        return cp.vec(cp.hstack([x[:, 1:] - x[:, :-1], np.zeros((ny, 1))]), order="C")

    def dy(x):
        return cp.vec(cp.vstack([x[1:, :] - x[:-1, :], np.zeros((1, nx))]), order="C")

    tv = 0
    for f in range(nf):
        re, im = parts[0][f], parts[1][f]
        tv += cp.sum(cp.norm(cp.vstack([dx(re), dx(im), dy(re), dy(im)]), 2, axis=0))
        if f + 1 < nf:
            d = [cp.vec(p[f + 1] - p[f], order="C") for p in parts]
            tv += wf * cp.sum(cp.norm(cp.vstack(d), 2, axis=0))
    fit = sum(
        cp.sum_squares(parts[0][f] - v[f].real) + cp.sum_squares(parts[1][f] - v[f].imag)
        for f in range(nf)
    )
    cp.Problem(cp.Minimize(0.5 * fit + lam * tv)).solve(solver=cp.CLARABEL)
    return np.stack([parts[0][f].value + 1j * parts[1][f].value for f in range(nf)])


def test_complex_tv_prox_matches_cvxpy():
    gen = np.random.default_rng(1)
    v = gen.normal(size=(3, 5, 6)) + 1j * gen.normal(size=(3, 5, 6))
    v[:, 1:4, 2:5] += 2.0 - 1.0j
    ref = _cvxpy_complex_prox(v, 0.25, 0.4)
    out = TVProx([(-3, 0.4)], n_iter=300)(torch.tensor(v, dtype=torch.complex64), 0.25).numpy()
    assert np.abs(out - ref).max() < 2e-3


def test_tv_prox_warm_start_and_l1():
    v = torch.randn(2, 8, 8, dtype=torch.complex64, generator=torch.Generator().manual_seed(0))
    prox = TVProx(n_iter=5)
    first = prox(v, 0.2)
    for _ in range(20):
        warm = prox(v, 0.2)
    cold = TVProx(n_iter=100)(v, 0.2)
    assert float((warm - cold).abs().max()) < float((first - cold).abs().max())
    assert float((warm - cold).abs().max()) < 1e-3
    thresholded = prox(v, 0.0, l1=10.0)
    assert float(thresholded.abs().max()) == 0.0
    with pytest.raises(ValueError, match="n_iter"):
        TVProx(n_iter=0)
    with pytest.raises(ValueError, match="dims < -2"):
        TVProx([(-1, 1.0)])


@pytest.mark.parametrize("dim", [-1, -2, -3])
def test_difference_adjoint(dim):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(4, 5, 6, dtype=torch.complex64, generator=gen)
    p = torch.randn(4, 5, 6, dtype=torch.complex64, generator=gen)
    lhs = torch.vdot(forward_difference(x, dim).flatten(), p.flatten())
    rhs = torch.vdot(x.flatten(), forward_difference_adjoint(p, dim).flatten())
    assert abs(complex(lhs - rhs)) < 1e-4 * float(x.norm() * p.norm())


def test_smooth_penalties_on_known_images():
    ramp = torch.arange(5.0)[None, :].expand(4, 5)
    assert float(smoothness(ramp)) == pytest.approx(4 * 4 * 1.0)
    assert float(smooth_tv(ramp, eps=1e-6)) == pytest.approx(16.0, rel=1e-4)
    assert float(smooth_tv(torch.ones(3, 3))) == 0.0
