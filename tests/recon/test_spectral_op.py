"""The spectral forward model against the explicit per-sample model (DFT), adjoints, Toeplitz."""

import math

import pytest
import torch

from mrsolve.propeller.coils import birdcage_maps
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.timing import readout_times
from mrsolve.recon.spectral.operator import (
    ExplicitSpectralModel,
    ShearedSpectralModel,
    SpectralEncoding,
    temporal_basis,
)
from mrsolve.solvers.linop import dot_test

N = 24


def _setup(sequence: str, oversampling: float = 2.0):
    geom = BladeGeometry(5, 6, N, oversampling)
    traj = geom.trajectory()
    m = geom.n_readout
    dwell = 1 / (217.0 * m)
    t = readout_times(m, geom.center_sample, dwell, sequence, te_s=0.003)
    times = t.expand(5, 6, m).contiguous()
    maps = birdcage_maps(3, (N, N))
    freqs = torch.linspace(-620.0, 230.0, 9)
    return traj, times, maps, freqs, dwell


def _smooth_volume(n_bins: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n_bins, N, N, dtype=torch.complex64, generator=gen)
    f = torch.fft.fftfreq(N)
    lowpass = (f.abs()[:, None] < 0.2) & (f.abs()[None, :] < 0.2)
    return torch.fft.ifft2(torch.fft.fft2(x) * lowpass)


@pytest.mark.parametrize("sequence", ["spin_echo", "gradient_echo"])
def test_svd_engine_matches_explicit_model(sequence, device):
    traj, times, maps, freqs, _ = _setup(sequence)
    basis = temporal_basis(times, freqs, tol=1e-6)
    enc = SpectralEncoding(traj.to(device), times.to(device), basis, maps)
    explicit = ExplicitSpectralModel(traj, times, freqs, maps)
    x = _smooth_volume(freqs.numel())
    z = torch.einsum("lf,fyx->lyx", basis.coefficients(freqs), x)
    y_ref = explicit(x)
    err = float((enc(z.to(device)).cpu() - y_ref).norm() / y_ref.norm())
    assert err < 1e-4


def test_basis_from_dense_grid_spans_frequencies_between_its_points():
    _, times, _, _, _ = _setup("gradient_echo")
    basis = temporal_basis(times, torch.linspace(-700, 300, 201), tol=1e-6)
    p = basis.phases(torch.tensor([-433.7, 12.3, 151.9]))
    residual = p - basis.u @ (basis.u.conj().T @ p)
    assert float(residual.norm() / p.norm()) < 1e-5
    assert basis.rank < 30


def test_time_phase_sign_shifts_along_minus_readout():
    # one blade along x, on the Cartesian grid: an object at f appears at x - f M dt
    geom = BladeGeometry(1, N, N, 1.0)
    m = geom.n_readout
    dwell = 1 / (200.0 * m)  # f = 400 Hz -> 2 px
    times = readout_times(m, geom.center_sample, dwell).expand(1, N, m).contiguous()
    maps = torch.ones(1, N, N, dtype=torch.complex64)
    point = torch.zeros(1, N, N, dtype=torch.complex64)
    point[0, N // 2, N // 2] = 1
    y = ExplicitSpectralModel(geom.trajectory(), times, torch.tensor([400.0]), maps)(point)
    image = torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(y[0, 0])))
    row, col = divmod(int(image.abs().argmax()), N)
    assert (row, col) == (N // 2, N // 2 - 2)


@pytest.mark.parametrize("sequence", ["spin_echo", "gradient_echo"])
def test_toeplitz_normal_equals_adjoint_of_forward(sequence):
    traj, times, maps, freqs, _ = _setup(sequence)
    basis = temporal_basis(times, freqs)
    enc = SpectralEncoding(traj, times, basis, maps)
    gen = torch.Generator().manual_seed(1)
    w = torch.rand(times.shape, generator=gen)
    z = torch.randn(enc.ishape, dtype=torch.complex64, generator=gen)
    ref = enc.H(w * enc(z))
    assert float((enc.normal(w)(z) - ref).norm() / ref.norm()) < 1e-4
    quad = float((w * enc(z).abs().square()).sum())  # ||W^1/2 A z||^2 from the forward model
    assert abs(enc.normal(w).quadratic(z) - quad) < 1e-4 * quad


def test_adjoints_pass_dot_test():
    traj, times, maps, freqs, dwell = _setup("gradient_echo")
    basis = temporal_basis(times, freqs)
    for op in (
        SpectralEncoding(traj, times, basis, maps),
        ExplicitSpectralModel(traj, times, freqs, maps),
        ShearedSpectralModel(traj, freqs, maps, dwell, te_s=0.003),
    ):
        assert dot_test(op) < 1e-5


def test_sheared_engine_exact_on_grid_and_close_off_grid():
    traj, times, maps, freqs, dwell = _setup("spin_echo", oversampling=1.0)
    yy, xx = torch.meshgrid(torch.arange(N) - N / 2, torch.arange(N) - N / 2, indexing="ij")
    blob = torch.exp(-(xx**2 + yy**2) / 18).to(torch.complex64)
    x = blob.expand(freqs.numel(), N, N).contiguous()
    ref = ExplicitSpectralModel(traj, times, freqs, maps)(x)
    sheared = ShearedSpectralModel(traj, freqs, maps, dwell)(x)
    err = (sheared - ref).flatten(2).norm(dim=-1).sum(0) / ref.flatten(2).norm(dim=-1).sum(0)
    assert float(err[0]) < 1e-4  # blade 0 reads along x: Cartesian samples
    assert float(err.max()) < 0.02


def test_unknown_times_and_bad_maps_raise():
    traj, times, maps, freqs, _ = _setup("spin_echo")
    basis = temporal_basis(times, freqs)
    with pytest.raises(ValueError, match="times"):
        SpectralEncoding(traj, times + 1e-3, basis, maps)
    with pytest.raises(ValueError, match="coil_maps"):
        SpectralEncoding(traj, times, basis, maps[0])
    with pytest.raises(ValueError, match="tol"):
        temporal_basis(times, freqs, tol=-1.0)
    assert math.isfinite(float(basis.singular_values[0]))


def _phase_residual(basis, times, freqs):
    """max |P - U U^H P| over the given times and frequencies, computed directly."""
    t = times.double().unique()
    p = torch.polar(
        torch.ones(t.numel(), freqs.numel(), dtype=torch.float64),
        2 * math.pi * t[:, None] * freqs.double()[None, :],
    )
    u = basis.u[basis.index(t.float())]
    return float((p - u @ (u.conj().T @ p)).abs().max())


@pytest.mark.parametrize("sequence", ["spin_echo", "gradient_echo"])
def test_max_error_bounds_model_error_with_smallest_rank(sequence):
    traj, times, maps, _, _ = _setup(sequence)
    grid = torch.linspace(-620.0, 230.0, 171)
    basis = temporal_basis(times, grid, max_error=1e-3)
    fine = torch.linspace(-620.0, 230.0, 1999)
    assert _phase_residual(basis, times, fine) <= 1e-3 * 1.01
    assert basis.max_error <= 1e-3
    smaller = type(basis)(
        basis.times_s, basis.u[:, : basis.rank - 1], grid, basis.singular_values, 0.0
    )
    assert _phase_residual(smaller, times, fine) > 1e-3  # one fewer would not do
    # single-frequency images off the grid: per-sample relative error within the bound
    explicit_freqs = torch.tensor([-433.7, 101.3])
    explicit = ExplicitSpectralModel(traj, times, explicit_freqs, maps)
    enc = SpectralEncoding(traj, times, basis, maps)
    x = _smooth_volume(2)
    for f in range(2):
        xf = x * (torch.arange(2) == f)[:, None, None]
        ref = explicit(xf)
        z = torch.einsum("lf,fyx->lyx", basis.coefficients(explicit_freqs), xf)
        err = float((enc(z) - ref).norm() / ref.norm())
        assert 1e-6 < err <= 1e-3 + 2e-5  # truncated (not exact), yet within the bound


def test_basis_rows_are_phase_times_real_and_orthonormal():
    _, times, _, freqs, _ = _setup("gradient_echo")
    coarse = temporal_basis(times, freqs)  # 9 frequencies do not span the range between
    assert coarse.max_error > 1e-4
    basis = temporal_basis(times, torch.linspace(-620.0, 230.0, 171))
    u = basis.u
    assert float((u.conj().T @ u - torch.eye(basis.rank, dtype=u.dtype)).abs().max()) < 1e-10
    products = u.conj()[:, :, None] * u[:, None, :]
    assert float(products.imag.abs().max()) < 1e-12
    assert basis.max_error < 1e-5


def test_normal_operator_gradient_and_reused_workspace():
    traj, times, maps, freqs, _ = _setup("spin_echo")
    basis = temporal_basis(times, freqs)
    big = SpectralEncoding(traj, times, basis, maps)
    small = SpectralEncoding(traj[:2], times[:2], basis, maps[:2])
    gen = torch.Generator().manual_seed(3)
    z = torch.randn(big.ishape, dtype=torch.complex64, generator=gen)
    v = torch.randn(big.ishape, dtype=torch.complex64, generator=gen)
    n_big, n_small = big.normal(), small.normal()
    for _ in range(2):  # alternate: each must see its own (reallocated) workspace
        for enc, op in ((big, n_big), (small, n_small)):
            ref = enc.H(enc(z))
            assert float((op(z) - ref).norm() / ref.norm()) < 1e-4
    zr = z.clone().requires_grad_(True)
    torch.vdot(v.flatten(), n_big(zr).flatten()).real.backward()
    ref = big.H(big(v))  # d Re<v, N z> / dz* = N^H v = N v
    assert float((zr.grad - ref).norm() / ref.norm()) < 1e-4
