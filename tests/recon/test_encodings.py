"""Encodings: shapes, explicit formulas, SVD start, gradients vs finite differences."""

import pytest
import torch

from mrsolve.recon.encodings import DenseGrid, FactorizedPlanes


def _planes_by_pair(planes):
    return {pair: p for p, pair in zip(planes.planes, planes.pairs, strict=True)}


@pytest.mark.parametrize("shape", [(1, 4, 6, 5), (3, 4, 6, 5)])
def test_planes_equal_the_explicit_k_planes_product(shape):
    planes = FactorizedPlanes(shape, rank=3, seed=1)
    out = planes()
    assert out.shape == shape and out.dtype == torch.complex64
    p = _planes_by_pair(planes)
    dec = torch.view_as_complex(planes.decoder.detach())
    with torch.no_grad():
        if shape[0] == 1:
            ref = torch.einsum("r,rfy,rfx,ryx->fyx", dec, p[(1, 2)], p[(1, 3)], p[(2, 3)])[None]
        else:
            ref = torch.einsum("r,rtf,rty,rtx,rfy,rfx,ryx->tfyx", dec, p[(0, 1)], p[(0, 2)],
                               p[(0, 3)], p[(1, 2)], p[(1, 3)], p[(2, 3)])  # fmt: skip
    assert torch.allclose(out.detach(), ref, atol=1e-5)


def test_coarse_planes_are_bilinearly_upsampled():
    planes = FactorizedPlanes((1, 3, 7, 9), rank=2, resolution=2, seed=0)
    xy = _planes_by_pair(planes)[(2, 3)]
    assert xy.shape == (2, 4, 5)
    with torch.no_grad():
        for plane in planes.planes:
            plane.fill_(1.0)
        planes.decoder.copy_(torch.tensor([[1.0, 0.0], [0.0, 0.0]]))
        # a plane linear in (y, x) is reproduced exactly by bilinear interpolation
        yy, xx = torch.meshgrid(torch.arange(4.0), torch.arange(5.0), indexing="ij")
        xy[0] = (yy + 2 * xx).to(torch.complex64)
        out = planes()
    fy, fx = torch.meshgrid(torch.linspace(0, 3, 7), torch.linspace(0, 4, 9), indexing="ij")
    assert torch.allclose(out[0, 1].real, fy + 2 * fx, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 5, 6, 7), (2, 3, 6, 5)])
def test_planes_start_from_the_svd_of_a_low_rank_volume(shape):
    gen = torch.Generator().manual_seed(0)
    t, f, ny, nx = shape
    u = torch.randn(t * f, 2, dtype=torch.complex64, generator=gen)
    v = torch.randn(2, ny * nx, dtype=torch.complex64, generator=gen)
    volume = (u @ v).reshape(shape)
    planes = FactorizedPlanes(shape, rank=2)
    planes.init_from_volume(volume)
    err = (planes().detach() - volume).norm() / volume.norm()
    assert float(err) < 1e-5
    # more channels than the volume's rank: still close, and every channel can learn
    wide = FactorizedPlanes(shape, rank=4)
    wide.init_from_volume(volume)
    assert float((wide().detach() - volume).norm() / volume.norm()) < 1e-2
    (wide().abs().square().sum()).backward()
    assert all(float(p.grad[r].abs().max()) > 0 for p in wide.planes for r in range(4))
    with pytest.raises(ValueError, match="volume"):
        planes.init_from_volume(volume[:, :-1])


def _check_gradient(module, loss, n_dirs=2):
    value = loss()
    module.zero_grad()
    value.backward()
    gen = torch.Generator().manual_seed(0)
    for param in module.parameters():
        for _ in range(n_dirs):
            d = torch.randn(param.shape, dtype=param.dtype, generator=gen)
            d = d / d.norm()
            analytic = float((torch.view_as_real(param.grad) * torch.view_as_real(d)).sum()
                             if param.is_complex() else (param.grad * d).sum())  # fmt: skip
            eps = 1e-2
            with torch.no_grad():
                param += eps * d
                up = float(loss())
                param -= 2 * eps * d
                down = float(loss())
                param += eps * d
            numeric = (up - down) / (2 * eps)
            assert analytic == pytest.approx(numeric, rel=2e-2, abs=1e-3)


def _quadratic_loss(module, seed=1):
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        shape = module().shape
    target = torch.randn(shape, dtype=torch.complex64, generator=gen)
    weight = torch.rand(shape, generator=gen)
    return lambda: (weight * (module() - target).abs().square()).sum()


@pytest.mark.parametrize("shape", [(1, 3, 5, 4), (2, 3, 5, 4)])
def test_planes_gradient_matches_finite_differences(shape):
    planes = FactorizedPlanes(shape, rank=2, resolution=2, seed=3)
    _check_gradient(planes, _quadratic_loss(planes))


def test_dense_grid_gradient_matches_finite_differences():
    grid = DenseGrid((3, 4, 5), torch.randn(3, 4, 5, dtype=torch.complex64))
    assert grid().dtype == torch.complex64 and grid().shape == (3, 4, 5)
    _check_gradient(grid, _quadratic_loss(grid))


def test_planes_reject_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        FactorizedPlanes((4, 6, 5))
    with pytest.raises(ValueError, match="rank"):
        FactorizedPlanes((1, 4, 6, 5), rank=0)
    with pytest.raises(ValueError, match="resolution"):
        FactorizedPlanes((1, 4, 6, 5), resolution=0)
