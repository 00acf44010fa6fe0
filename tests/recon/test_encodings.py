"""Encodings: shapes, explicit formulas, SVD start, hashing with collisions, gradients vs
finite differences."""

import itertools

import pytest
import torch

from mrsolve.recon.spectral.encodings import DenseGrid, FactorizedPlanes
from mrsolve.recon.spectral.encodings.hash_grid import HashGrid


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
            ref = torch.einsum(
                "r,rtf,rty,rtx,rfy,rfx,ryx->tfyx",
                dec,
                p[(0, 1)],
                p[(0, 2)],
                p[(0, 3)],
                p[(1, 2)],
                p[(1, 3)],
                p[(2, 3)],
            )
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
    """Directional derivatives of ``loss`` against central differences, in float64."""
    for param in module.parameters():
        param.data = param.data.to(torch.complex128 if param.is_complex() else torch.float64)
    value = loss()
    module.zero_grad()
    value.backward()
    gen = torch.Generator().manual_seed(0)
    for param in module.parameters():
        for _ in range(n_dirs):
            d = torch.randn(param.shape, dtype=param.dtype, generator=gen)
            d = d / d.norm()
            grad, step = param.grad, d
            if param.is_complex():
                grad, step = torch.view_as_real(grad), torch.view_as_real(d)
            analytic = float((grad * step).sum())
            eps = 1e-5
            with torch.no_grad():
                param += eps * d
                up = float(loss())
                param -= 2 * eps * d
                down = float(loss())
                param += eps * d
            assert analytic == pytest.approx((up - down) / (2 * eps), rel=1e-5, abs=1e-7)


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


_PRIMES = (1, 2654435761, 805459861, 3674653429)


def test_interpolation_reproduces_a_multilinear_function_at_its_resolution():
    grid = HashGrid((1, 5, 9, 7), levels=1, coarsest=4, features=1)
    assert grid.cells == [[4, 4, 4]] and not grid.hashed(0)
    gen = torch.Generator().manual_seed(0)
    coef = torch.randn(8, generator=gen)

    def g(u, v, w):  # multilinear in (f, y, x) normalised to [0, 1]
        terms = [1, u, v, w, u * v, u * w, v * w, u * v * w]
        return sum(c * t for c, t in zip(coef, terms, strict=True))

    idx = torch.meshgrid(*(torch.arange(5),) * 3, indexing="ij")
    rows = grid.rows_of(0, idx)
    assert rows.unique().numel() == 125  # no hashing: one row per vertex
    with torch.no_grad():
        grid.tables[0][rows.flatten(), 0] = g(*(i.flatten() / 4 for i in idx))
        out = grid.level_features(0)[..., 0]
    coords = torch.meshgrid(*(torch.linspace(0, 1, n) for n in (5, 9, 7)), indexing="ij")
    assert torch.allclose(out, g(*coords), atol=1e-5)


def _reference_level(grid, level, table):
    """Brute-force interpolation with python integers and Instant-NGP's hash."""
    f, ny, nx = grid.shape[1:]
    cells, rows = grid.cells[level], grid.rows[level]
    sizes = (f, ny, nx)
    out = torch.zeros(*sizes, table.shape[1], dtype=torch.float64)
    for point in itertools.product(*(range(n) for n in sizes)):
        pos = [p * c / (n - 1) for p, c, n in zip(point, cells, sizes, strict=True)]
        low = [min(int(q), c - 1) for q, c in zip(pos, cells, strict=True)]
        for bits in itertools.product((0, 1), repeat=3):
            weight, key = 1.0, 0
            for d in range(3):
                frac = pos[d] - low[d]
                weight *= frac if bits[d] else 1 - frac
                key ^= (low[d] + bits[d]) * _PRIMES[d]
            out[point] += weight * table[key % rows].double()
    return out


def test_hashed_level_shares_rows_between_colliding_vertices():
    grid = HashGrid((1, 4, 6, 5), levels=1, coarsest=3, table_size=16, features=2)
    assert grid.hashed(0)
    idx = torch.meshgrid(*(torch.arange(c + 1) for c in grid.cells[0]), indexing="ij")
    rows = grid.rows_of(0, idx)
    assert 0 <= int(rows.min()) and int(rows.max()) < 16 and rows.unique().numel() <= 16
    table = grid.tables[0]
    out = grid.level_features(0)
    ref = _reference_level(grid, 0, table.detach())
    assert torch.allclose(out.double(), ref, atol=1e-5)
    # gradient: every point's corner weights accumulate into the row its corner hashes to
    weights = torch.randn(out.shape, generator=torch.Generator().manual_seed(1))
    (out * weights).sum().backward()
    basis = torch.eye(16 * 2, dtype=torch.float64).reshape(32, 16, 2)
    ref_grad = torch.stack([(_reference_level(grid, 0, e) * weights).sum() for e in basis])
    assert torch.allclose(table.grad.double().flatten(), ref_grad, atol=1e-4)


@pytest.mark.parametrize("shape", [(1, 4, 6, 5), (2, 3, 5, 4)])
@pytest.mark.parametrize("hidden", [0, 4])
def test_hash_grid_shapes_and_gradient_match_finite_differences(shape, hidden):
    grid = HashGrid(shape, levels=3, table_size=32, coarsest=2, hidden=hidden, seed=2)
    out = grid()
    assert out.shape == shape and out.dtype == torch.complex64
    with torch.no_grad():
        for table in grid.tables:
            table.normal_(0, 1, generator=torch.Generator().manual_seed(3))
    _check_gradient(grid, _quadratic_loss(grid))


def test_fit_to_a_volume_lowers_the_error():
    gen = torch.Generator().manual_seed(0)
    volume = torch.randn(1, 4, 6, 5, dtype=torch.complex64, generator=gen)
    grid = HashGrid(volume.shape, levels=2, table_size=256, coarsest=2)
    before = float((grid().detach() - volume).norm())
    grid.init_from_volume(volume, iterations=50, lr=0.1)
    assert float((grid().detach() - volume).norm()) < 0.2 * before
    with pytest.raises(ValueError, match="volume"):
        grid.init_from_volume(volume[0])


def test_hash_grid_rejects_bad_arguments():
    with pytest.raises(ValueError, match="shape"):
        HashGrid((4, 6, 5))
    with pytest.raises(ValueError, match="levels"):
        HashGrid((1, 4, 6, 5), levels=0)
    with pytest.raises(ValueError, match="hidden"):
        HashGrid((1, 4, 6, 5), hidden=-1)
