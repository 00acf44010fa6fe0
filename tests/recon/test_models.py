"""The data side of the spectral problem: quadratic data term and held-out loss."""

import math
from dataclasses import replace

import pytest
import torch

from mrsolve.data.simulate import simulate
from mrsolve.propeller.coils import birdcage_maps
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import readout_times
from mrsolve.recon.spectral.operator import ExplicitSpectralModel, SpectralEncoding
from mrsolve.recon.spectral.problem import OperatorConfig, build_problem, heldout_lines
from mrsolve.solvers.alg import cg

N = 16
#: the exact model: every coil, the temporal rank from tol alone
EXACT = OperatorConfig(max_error=None, coil_energy=1.0)


def _problem(holdout_fraction=0.2):
    geom = BladeGeometry(4, 6, N, 2.0)
    m, traj = geom.n_readout, geom.trajectory()
    dwell = 1 / (217.0 * m)
    times = readout_times(m, geom.center_sample, dwell, "gradient_echo", 0.002)
    gen = torch.Generator().manual_seed(2)
    kspace = torch.randn(2, *traj.shape[:-1], dtype=torch.complex64, generator=gen)
    scan = Scan(
        kspace=kspace,
        traj=traj,
        times=times.expand(traj.shape[:-1]).contiguous(),
        image_shape=(N, N),
        dwell_s=dwell,
        center_sample=geom.center_sample,
    )
    operator = replace(EXACT, holdout_fraction=holdout_fraction)
    problem = build_problem(scan, (-500.0, 200.0), operator, maps=birdcage_maps(2, (N, N)))
    return scan, problem


def test_heldout_loss_equals_direct_residual_of_the_heldout_lines():
    scan, problem = _problem()
    held = heldout_lines(scan.n_blades, scan.n_lines, 0.2, 0)
    enc = SpectralEncoding(scan.traj[held], scan.times[held], problem.basis, problem.coil_maps)
    y = scan.kspace[:, held].to(torch.complex64) * problem.scale
    gen = torch.Generator().manual_seed(0)
    for scale in (0.0, 1.0, 3.0):  # zero, a generic and a large volume
        z = scale * torch.randn(enc.ishape, dtype=torch.complex64, generator=gen)
        ref = float((enc(z) - y).abs().square().sum() / y.abs().square().sum())
        assert abs(problem.heldout_loss(z) - ref) <= 1e-4 * max(ref, 1.0)


def test_heldout_noise_var_is_the_residual_per_heldout_sample():
    scan, problem = _problem()
    held = heldout_lines(scan.n_blades, scan.n_lines, 0.2, 0)
    y = scan.kspace[:, held] * problem.scale  # unit-variance noise, scaled
    # at z = 0 the residual is the data: its mean |y|^2 per held-out sample
    expected = float(y.abs().square().mean())
    assert problem.heldout_noise_var(torch.zeros(problem.basis.rank, N, N)) == pytest.approx(
        expected, rel=1e-5
    )
    # the data are standard complex noise: E|n|^2 = 1 before scaling
    assert expected / problem.scale**2 == pytest.approx(1.0, rel=0.15)
    _, none = _problem(holdout_fraction=0.0)
    assert math.isnan(none.heldout_noise_var(torch.zeros(none.basis.rank, N, N)))


def test_data_loss_gradient_matches_finite_differences():
    _, problem = _problem()
    frame = problem.frames[0]
    gen = torch.Generator().manual_seed(1)
    z = torch.randn(frame.b.shape, dtype=torch.complex64, generator=gen).requires_grad_(True)
    loss = problem.data_loss(z)
    loss.backward()
    # f(z + e v) - f(z) against e Re<grad, v> (f is quadratic: exact up to e^2 / 2 <v, N v>)
    v = torch.randn(z.shape, dtype=torch.complex64, generator=gen)
    eps = 1e-3
    with torch.no_grad():
        diff = float(problem.data_loss(z + eps * v) - problem.data_loss(z - eps * v)) / (2 * eps)
    assert abs(diff - float(torch.vdot(z.grad.flatten(), v.flatten()).real)) <= 1e-2 * abs(diff)


def test_coil_compression_keeps_noiseless_data_consistent():
    # data from the explicit per-sample model of a volume at one frequency: after
    # compression to fewer virtual coils the truth still fits the data exactly
    geom = BladeGeometry(4, 6, N, 2.0)
    m, traj = geom.n_readout, geom.trajectory()
    dwell = 1 / (217.0 * m)
    times = readout_times(m, geom.center_sample, dwell).expand(traj.shape[:-1]).contiguous()
    maps = birdcage_maps(8, (N, N))
    gen = torch.Generator().manual_seed(4)
    image = torch.randn(1, N, N, dtype=torch.complex64, generator=gen)
    freq = torch.tensor([-120.0])
    kspace = ExplicitSpectralModel(traj, times, freq, maps)(image)
    scan = Scan(
        kspace=kspace,
        traj=traj,
        times=times,
        image_shape=(N, N),
        dwell_s=dwell,
        center_sample=geom.center_sample,
    )
    full = build_problem(scan, (-500.0, 200.0), EXACT, maps=maps)
    compressed = build_problem(scan, (-500.0, 200.0), replace(EXACT, coil_energy=0.99), maps=maps)
    assert compressed.coil_maps.shape[0] < full.coil_maps.shape[0] == 8
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="coil_energy"):
            build_problem(scan, (-500.0, 200.0), replace(EXACT, coil_energy=bad), maps=maps)
    for problem in (full, compressed):
        z = problem.scale * problem.basis.coefficients(freq)[:, 0, None, None] * image[0]
        frame = problem.frames[0]
        residual = 2 * float(problem.data_loss(z)) / float(frame.energy)
        assert residual < 1e-6
        assert problem.heldout_loss(z) < 1e-6


def test_data_loss_resolves_small_changes_near_the_optimum():
    """f(z + d) - f(z) = Re<d, N z - b> + Re<d, N d> / 2 exactly for the quadratic data
    term. Near its minimizer f is ~200x smaller than the terms that cancel in it; the
    complex64 sums missed this change by ~16 % (the water / fat head froze on it)."""
    sim = simulate(size=24, n_blades=6, n_lines=6, n_coils=3, noise=0.01, seed=1)
    problem = build_problem(sim.scan, (-700.0, 300.0), EXACT)
    frame = problem.frames[0]
    z, _ = cg(frame.normal, frame.b, max_iter=30, tol=0.0)
    gen = torch.Generator().manual_seed(0)
    d = 1e-3 * float(z.abs().max()) * torch.randn(z.shape, dtype=z.dtype, generator=gen)
    nz, nd = frame.normal(z), frame.normal(d)

    def dot(u, v):
        return float(
            torch.vdot(u.flatten().to(torch.complex128), v.flatten().to(torch.complex128)).real
        )

    expected = dot(d, nz - frame.b) + 0.5 * dot(d, nd)
    change = float(problem.data_loss(z + d).double() - problem.data_loss(z))
    assert change == pytest.approx(expected, rel=0.02)
    zr = z.clone().requires_grad_(True)
    problem.data_loss(zr).backward()
    assert torch.allclose(zr.grad, nz - frame.b)
