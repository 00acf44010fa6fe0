"""Per-pixel stds of the water / fat / field-map fit against independent references: an
explicit Jacobian of the exact per-sample model, a Monte-Carlo refit of one pixel through
the problem's own Toeplitz data term, a dense inverse of the whole precision matrix, and
the physics' monotonicities (brightness, readout length).
"""

import math
from dataclasses import replace

import pytest
import torch

from mrsolve.data.results import GroundTruth, Reconstruction
from mrsolve.data.simulate import simulate
from mrsolve.propeller.density import density_compensation
from mrsolve.propeller.fat import fat_spectrum
from mrsolve.recon.commands import score
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral.fields import WaterFatField
from mrsolve.recon.spectral.operator import ExplicitSpectralModel
from mrsolve.recon.spectral.problem import OperatorConfig, build_problem
from mrsolve.recon.spectral.uncertainty import (
    interpolation_matrix,
    parameter_curvature,
    pixel_information,
    water_fat_std,
)

SPECTRUM = fat_spectrum(3.0)
RANGE_HZ = (-700.0, 300.0)
MAX_ABS_HZ = 200.0


def _problem(sim, **operator):
    """The problem with the true coil maps and no coil compression (deterministic but y)."""
    op = OperatorConfig(coil_energy=1.0, **operator)
    return build_problem(sim.scan, RANGE_HZ, op, maps=sim.truth.coil_maps)


def _field(problem, water, fat, psi, downsample=1):
    """Head at the given (unscaled) densities and field map, densities parametrization."""
    s = problem.scale
    return WaterFatField(
        problem.basis,
        SPECTRUM,
        water * s,
        fat * s,
        psi,
        downsample,
        max_abs_hz=MAX_ABS_HZ,
        parametrization="densities",
    )


@pytest.fixture(scope="module")
def sim():
    return simulate(size=24, n_blades=8, n_lines=8, n_coils=3, seed=0, max_offres_hz=80.0)


def _bright_fat_pixel(truth):
    total = truth.water.abs() + truth.fat.abs()
    score = torch.where(truth.fat.abs() > 0.2 * total, total, torch.zeros_like(total))
    return divmod(int(score.argmax()), total.shape[-1])


def test_pixel_information_equals_the_explicit_jacobian(sim):
    """H = Re J^H W J and M = Re J^H W^2 J of one pixel, J the dense Jacobian of the exact
    per-sample model (explicit DFT, exact time phases; no temporal basis)."""
    truth, scan = sim.truth, sim.scan
    problem = _problem(sim, holdout_fraction=0.0)
    field_ = _field(problem, truth.water, truth.fat, truth.field_map_hz)
    hess, meat = pixel_information(field_, problem)
    y, x = _bright_fat_pixel(truth)
    water, fat = (v[y, x] * problem.scale for v in (truth.water, truth.fat))
    psi = float(truth.field_map_hz[y, x])
    freqs = torch.cat([torch.tensor([psi]), psi + SPECTRUM.frequencies_hz.double()])
    model = ExplicitSpectralModel(scan.traj, scan.times, freqs, truth.coil_maps)
    delta = torch.zeros(len(freqs), *truth.water.shape, dtype=torch.complex64)
    delta[0, y, x] = 1
    unit_water = model(delta).to(torch.complex128)  # (C, B, L, M)
    delta[0, y, x] = 0
    delta[1:, y, x] = SPECTRUM.amplitudes.to(torch.complex64)
    unit_fat = model(delta).to(torch.complex128)
    d_psi = 2j * math.pi * scan.times.double() * (water * unit_water + fat * unit_fat)
    jac = torch.stack([unit_water, 1j * unit_water, unit_fat, 1j * unit_fat, d_psi], -1)
    jac = jac.reshape(-1, 5)
    ny, nx = truth.water.shape
    weights = density_compensation(scan.traj, (ny, nx), "analytic") / (ny * nx)
    w = weights.expand(scan.kspace.shape).reshape(-1).double()
    ref_h = (jac.conj().T @ (w[:, None] * jac)).real
    ref_m = (jac.conj().T @ (w[:, None] ** 2 * jac)).real
    for got, ref in ((hess[y, x], ref_h), (meat[y, x], ref_m)):
        assert float((got - ref).norm() / ref.norm()) < 2e-3


def test_monte_carlo_refit_of_one_pixel_matches_the_predicted_std(sim):
    """40 noise draws; each refits the 5 parameters of one pixel (the others at the truth)
    by Gauss-Newton on the problem's own weighted data term (Toeplitz NUFFT operator);
    the empirical stds of psi and of the fat fraction match the predicted within 30 %."""
    truth, scan = sim.truth, sim.scan
    y, x = _bright_fat_pixel(truth)
    sigma = 0.05 * float(scan.kspace.abs().square().mean().sqrt())
    clean = _problem(sim)
    predicted_ff, predicted_psi = water_fat_std(
        _field(clean, truth.water, truth.fat, truth.field_map_hz), clean, sigma**2 * clean.scale**2
    )
    gen = torch.Generator().manual_seed(1)
    ffs, psis = [], []
    eye = torch.eye(5, dtype=torch.float64)
    for _ in range(40):
        noise = sigma * torch.randn(scan.kspace.shape, dtype=torch.complex64, generator=gen)
        noisy = replace(sim, scan=replace(scan, kspace=scan.kspace + noise))
        problem = _problem(noisy)
        field_ = _field(problem, truth.water, truth.fat, truth.field_map_hz)
        with torch.no_grad():
            z_all = field_()

        def z_of(theta, field_=field_, z_all=z_all):
            a, b = field_.coefficients(theta[4].reshape(1).float())
            pixel = a[:, 0] * torch.complex(theta[0], theta[1])
            pixel = pixel + b[:, 0] * torch.complex(theta[2], theta[3])
            z = z_all.clone()
            z[:, y, x] = pixel.to(torch.complex64)
            return z

        w0, f0 = truth.water[y, x] * problem.scale, truth.fat[y, x] * problem.scale
        theta = torch.tensor(
            [w0.real, w0.imag, f0.real, f0.imag, truth.field_map_hz[y, x]], dtype=torch.float64
        )
        for _ in range(4):
            th = theta.clone().requires_grad_(True)
            (grad,) = torch.autograd.grad(problem.data_loss(z_of(th)), th)
            steps = (1e-3, 1e-3, 1e-3, 1e-3, 0.05)
            cols = [
                (z_of(theta + h * eye[i]) - z_of(theta - h * eye[i])) / (2 * h)
                for i, h in enumerate(steps)
            ]
            normal = [problem.frames[0].normal(c)[:, y, x] for c in cols]
            gauss_newton = torch.stack(
                [torch.stack([torch.vdot(ci[:, y, x], nj).real for nj in normal]) for ci in cols]
            ).double()
            theta = theta - torch.linalg.solve(gauss_newton, grad.double())
        water, fat = abs(complex(theta[0], theta[1])), abs(complex(theta[2], theta[3]))
        ffs.append(fat / (water + fat))
        psis.append(float(theta[4]))
    for draws, predicted in ((psis, predicted_psi), (ffs, predicted_ff)):
        empirical = float(torch.tensor(draws, dtype=torch.float64).std())
        assert abs(empirical / float(predicted[y, x]) - 1) < 0.3


def test_field_map_std_scales_with_brightness_and_is_capped_without_signal(sim):
    truth = sim.truth
    problem = _problem(sim)
    noise_var = 1e-3 * problem.scale**2
    full = water_fat_std(
        _field(problem, truth.water, truth.fat, truth.field_map_hz), problem, noise_var
    )
    dim = water_fat_std(
        _field(problem, truth.water / 4, truth.fat / 4, truth.field_map_hz), problem, noise_var
    )
    inside = truth.mask & ((truth.water.abs() + truth.fat.abs()) > 0.2)
    ratio = dim[1][inside] / full[1][inside]
    assert float((ratio - 4).abs().max()) < 0.05  # psi std ~ 1 / |rho| (the prior barely acts)
    ff_ratio = dim[0][inside] / full[0][inside]
    assert float((ff_ratio - 4).abs().max()) < 0.05  # ff is scale-free: std ~ noise / |rho|
    empty = (truth.water.abs() + truth.fat.abs()) == 0
    assert bool(empty.any())
    cap_psi, cap_ff = MAX_ABS_HZ / math.sqrt(3), 1 / math.sqrt(12)
    for std, cap in zip(full, (cap_ff, cap_psi), strict=True):  # at the prior, up to the ridge
        torch.testing.assert_close(std[empty], torch.full_like(std[empty], cap), rtol=1e-4, atol=0)
    for std, cap in zip(full, (cap_ff, cap_psi), strict=True):
        assert std.dtype == torch.float32 and bool(torch.isfinite(std).all())
        assert float(std.max()) <= cap * (1 + 1e-6) and float(std[inside].max()) < cap / 4


def test_fat_fraction_std_rises_when_the_readout_is_shorter():
    """Two scans differing only in dwell time: the shorter readout (smaller fat shift)
    separates fat from water worse."""
    stds = []
    for dwell in (8e-6, 24e-6):
        sim = simulate(size=24, n_blades=8, n_lines=8, n_coils=3, seed=0, dwell_s=dwell)
        truth = sim.truth
        problem = _problem(sim)
        field_ = _field(problem, truth.water, truth.fat, truth.field_map_hz)
        stds.append(water_fat_std(field_, problem, 1e-3 * problem.scale**2))
    mask = sim.truth.mask & (sim.truth.fat.abs() > 0.1)
    for short, long in zip(*stds, strict=True):
        assert bool((short[mask] > long[mask]).all())


def test_coarse_field_map_matches_a_dense_inverse_of_the_whole_precision():
    """Field map on a 4x coarser grid: the stds equal those of the dense inverse of the
    precision over every pixel's densities and the coarse field map (per-pixel blocks
    2 / noise_var H M^-1 H, the uniform prior on the coarse field map), with the
    interpolation taken from the head's own field_map()."""
    sim = simulate(size=16, n_blades=6, n_lines=8, n_coils=3, seed=3)
    problem = _problem(sim)
    gen = torch.Generator().manual_seed(0)
    shape = (16, 16)
    water = torch.randn(shape, dtype=torch.complex64, generator=gen) + 1
    fat = 0.5 * torch.randn(shape, dtype=torch.complex64, generator=gen)
    field_ = _field(problem, water, fat, torch.zeros(shape), downsample=4)
    with torch.no_grad():
        field_.psi_raw.copy_(torch.atanh(torch.randn(4, 4, generator=gen) * 0.2))
    noise_var = 0.05 * problem.scale**2
    ff_std, psi_std = water_fat_std(field_, problem, noise_var)
    ff_tiled, psi_tiled = water_fat_std(field_, problem, noise_var, tile=1)
    # interpolation matrix from the head's field_map() at unit coarse field maps
    columns = []
    with torch.no_grad():
        for k in range(16):
            unit = torch.zeros(16)
            unit[k] = 1 / MAX_ABS_HZ
            field_.psi_raw.copy_(torch.atanh(unit).reshape(4, 4))
            columns.append(field_.field_map().reshape(-1).double())
    interp = torch.stack(columns, 1)  # (256, 16)
    torch.testing.assert_close(
        interp,
        torch.kron(interpolation_matrix(4, 16), interpolation_matrix(4, 16)),
        rtol=0,
        atol=1e-6,  # field_map() is float32
    )
    hess, meat = pixel_information(field_, problem)
    blocks = (hess @ torch.linalg.solve(meat, hess) * (2 / noise_var)).reshape(256, 5, 5)
    n_dens = 4 * 256
    prec = torch.zeros(n_dens + 16, n_dens + 16, dtype=torch.float64)
    for r in range(256):
        d = slice(4 * r, 4 * r + 4)
        prec[d, d] = blocks[r, :4, :4]
        prec[d, n_dens:] = blocks[r, :4, 4:] @ interp[r : r + 1]
        prec[n_dens:, d] = prec[d, n_dens:].T
        prec[n_dens:, n_dens:] += blocks[r, 4, 4] * interp[r : r + 1].T @ interp[r : r + 1]
    prec[n_dens:, n_dens:] += torch.eye(16, dtype=torch.float64) * 3 / MAX_ABS_HZ**2
    cov = torch.linalg.inv(prec)
    ref_psi = torch.einsum("rk,kl,rl->r", interp, cov[n_dens:, n_dens:], interp).sqrt()
    torch.testing.assert_close(psi_std.double().reshape(-1), ref_psi, rtol=1e-4, atol=0)
    torch.testing.assert_close(psi_tiled, psi_std, rtol=2e-3, atol=0)
    # fat fraction by the delta method, its gradient by autograd
    with torch.no_grad():
        w_fit, f_fit = field_.densities()
    params = (
        torch.stack([w_fit.real, w_fit.imag, f_fit.real, f_fit.imag], -1)
        .double()
        .reshape(256, 4)
        .requires_grad_(True)
    )
    mag_w = torch.complex(params[:, 0], params[:, 1]).abs()
    mag_f = torch.complex(params[:, 2], params[:, 3]).abs()
    (grad,) = torch.autograd.grad((mag_f / (mag_w + mag_f)).sum(), params)
    dens_cov = torch.stack([cov[4 * r : 4 * r + 4, 4 * r : 4 * r + 4] for r in range(256)])
    ref_ff = torch.einsum("ri,rij,rj->r", grad, dens_cov, grad).sqrt()
    torch.testing.assert_close(ff_std.double().reshape(-1), ref_ff, rtol=1e-4, atol=0)
    torch.testing.assert_close(ff_tiled, ff_std, rtol=2e-3, atol=0)


def test_tiles_with_a_margin_agree_with_one_dense_inverse():
    """16 x 16 coarse cells: 2 x 2 tiles whose windows (14 x 14) leave cells out agree with
    the single dense inverse (validated above) to the documented ~1e-3."""
    sim = simulate(size=32, n_blades=8, n_lines=8, n_coils=3, seed=4)
    problem = _problem(sim)
    truth = sim.truth
    field_ = _field(problem, truth.water, truth.fat, truth.field_map_hz, downsample=2)
    whole = water_fat_std(field_, problem, 0.01 * problem.scale**2)
    tiled = water_fat_std(field_, problem, 0.01 * problem.scale**2, tile=2)
    for a, b in zip(whole, tiled, strict=True):
        torch.testing.assert_close(b, a, rtol=2e-3, atol=0)


def test_water_fat_std_rejects_bad_arguments(sim):
    problem = _problem(sim)
    truth = sim.truth
    field_ = _field(problem, truth.water, truth.fat, truth.field_map_hz)
    with pytest.raises(ValueError, match="noise_var"):
        water_fat_std(field_, problem, 0.0)
    with pytest.raises(ValueError, match="field_map_factor"):
        water_fat_std(field_, problem, 1.0, field_map_factor=-1.0)
    with pytest.raises(TypeError, match="field_"):
        water_fat_std(object(), problem, 1.0)
    other = simulate(size=16, n_blades=6, n_lines=8, n_coils=3, seed=0)
    with pytest.raises(ValueError, match="image shape"):
        water_fat_std(field_, _problem(other), 1.0)


def test_compare_scores_error_over_std():
    """recon compare's calibration columns: RMS of error / std inside the masks."""
    gen = torch.Generator().manual_seed(5)
    shape = (16, 16)
    water = torch.rand(shape, generator=gen).to(torch.complex64) + 1
    fat = 0.5 * torch.rand(shape, generator=gen).to(torch.complex64)
    mask = torch.zeros(shape, dtype=torch.bool)
    mask[4:12, 4:12] = True
    ff = torch.where(mask, fat.abs() / (water.abs() + fat.abs()), torch.zeros(shape))
    psi = 30 * torch.randn(shape, generator=gen)
    truth = GroundTruth(water + fat, water, fat, ff, psi, mask)
    ff_err, psi_err = 0.01 * torch.randn(shape, generator=gen), torch.randn(shape, generator=gen)
    ff_std, psi_std = 0.02 * torch.ones(shape), torch.rand(shape, generator=gen) + 0.5
    rec = Reconstruction(
        image=water + fat,
        fat_fraction=(ff + ff_err).clamp(0, 1),
        field_map_hz=psi + psi_err,
        fat_fraction_std=ff_std,
        field_map_std_hz=psi_std,
    )
    scores = score(rec, truth)
    ff_z = ((rec.fat_fraction - ff) / ff_std)[mask]
    psi_z = (psi_err / psi_std)[mask & (water.abs() > fat.abs())]
    assert scores["fat_fraction_z_rms"] == pytest.approx(float(ff_z.square().mean().sqrt()))
    assert scores["field_map_z_rms"] == pytest.approx(float(psi_z.square().mean().sqrt()))
    assert "field_map_z_rms" not in score(Reconstruction(image=water + fat), truth)


def test_fatwater_writes_the_std_maps_unless_told_not_to():
    small = simulate(
        size=24, n_blades=6, n_lines=6, n_coils=3, max_offres_hz=80.0, noise=0.02, seed=4
    )
    fast = {"frequency": {"n_bins": 8}, "iterations": 20}
    plain = reconstruct_spectral(small.scan, "fatwater", waterfat={"std_maps": False}, **fast)
    assert plain.fat_fraction_std is None and plain.field_map_std_hz is None
    noise_only = {"fat_fraction_factor": 1.0, "fat_fraction_floor": 0.0}
    noise_only |= {"field_map_factor": 1.0, "field_map_floor_hz": 0.0}
    rec = reconstruct_spectral(
        small.scan, "fatwater", waterfat={"std_otherwise": noise_only}, **fast
    )
    # the simulation has a noise scan: the noise variance is the scale^2 of the whitened data
    report = rec.config["report"]
    assert report["waterfat"]["noise_var"] == pytest.approx(report["scale"] ** 2)
    for std in (rec.fat_fraction_std, rec.field_map_std_hz):
        assert std.shape == rec.fat_fraction.shape and bool(torch.isfinite(std).all())
        assert float(std.min()) >= 0
    assert float(rec.fat_fraction_std.max()) <= 1 / math.sqrt(12) + 1e-6
    cap_hz = rec.config["waterfat"]["max_abs_hz"] / math.sqrt(3)
    assert float(rec.field_map_std_hz.max()) <= cap_hz + 1e-3
    # outside the object (no signal) the bounds sit at the caps, inside well below them
    outside, inside = ~small.truth.mask, small.truth.mask
    assert float(rec.field_map_std_hz[outside].median()) > 10 * float(
        rec.field_map_std_hz[inside].median()
    )


def test_parameter_curvature_is_the_hessian_diagonal_of_the_data_term(sim):
    """Per-pixel field map, "common_phase": the curvature of the data term along one
    pixel's Re rho, eta and psi (central differences of the autograd gradient of the
    problem's own Toeplitz data term) equals parameter_curvature's diagonal. Re rho and
    eta enter z linearly (Gauss-Newton is the Hessian); psi near the fit to ~1 %."""
    truth = sim.truth
    problem = _problem(sim)
    s = problem.scale
    field_ = WaterFatField(
        problem.basis,
        SPECTRUM,
        truth.water * s,
        truth.fat * s,
        truth.field_map_hz,
        1,
        max_abs_hz=MAX_ABS_HZ,
        parametrization="common_phase",
    )
    first, second, psi = parameter_curvature(field_, problem)
    y, x = _bright_fat_pixel(truth)
    for param, index, got, step in (
        (field_.first.values, (y, x, 0), first[y, x, 0], 1e-2),
        (field_.second.values, (y, x, 0), second[y, x, 0], 1e-3),
        (field_.psi_raw, (y, x), psi[y, x], 1e-3),
    ):
        slopes = []
        for sign in (1, -1):
            with torch.no_grad():
                param[index] += sign * step
            field_.zero_grad()
            problem.data_loss(field_()).backward()
            slopes.append(float(param.grad[index]))
            with torch.no_grad():
                param[index] -= sign * step
        ref = (slopes[0] - slopes[1]) / (2 * step)
        assert abs(float(got) / ref - 1) < 0.02


def test_calibrated_stds_cover_the_errors_of_a_default_fit():
    """The fatwater preset's calibrated stds (chosen on the generalization benchmark's
    development set) on an independent phantom: |error| <= 1.96 std in >= 90 % of the
    object's pixels (field map: where water is), RMS(error / std) at most 1.5 and not
    vacuous (>= 0.2: the stds are not the uniform priors' caps)."""
    sim = simulate(
        size=24,
        n_blades=10,
        n_lines=8,
        n_coils=3,
        max_offres_hz=120.0,
        noise=0.02,
        dwell_s=1.5 / (217 * 48),  # a fat shift of ~2.6 px per readout at 3 T
        seed=1,
    )
    rec = reconstruct_spectral(sim.scan, "fatwater", frequency={"n_bins": 8})
    truth = sim.truth
    water_mask = truth.mask & (truth.water.abs() >= 0.1 * truth.water.abs().max())
    for est, ref, std, mask in (
        (rec.fat_fraction, truth.fat_fraction, rec.fat_fraction_std, truth.mask),
        (rec.field_map_hz, truth.field_map_hz, rec.field_map_std_hz, water_mask),
    ):
        ratio = ((est - ref) / std)[mask]
        assert float((ratio.abs() <= 1.96).float().mean()) >= 0.9
        assert 0.2 <= float(ratio.square().mean().sqrt()) <= 1.5
