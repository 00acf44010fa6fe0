"""Regularization weights from the measured noise (issue 18, part 5).

The image-noise std the weights scale with is checked against a Monte-Carlo draw; the
noise-scaled default against the fixed weight on a scan far noisier than the ones the
weight was chosen on.
"""

import math
from dataclasses import replace

import pytest
import torch

from mrsolve.data.simulate import simulate
from mrsolve.propeller.gridding import gridding
from mrsolve.recon.metrics import nrmse
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral.config import resolve_config
from mrsolve.recon.spectral.problem import build_problem
from mrsolve.recon.spectral.regularizers import NOISE_POWER
from mrsolve.recon.spectral.stages.free_volume import noise_scaled

FAST = {"frequency": {"n_bins": 8}}


def test_image_noise_std_matches_the_std_of_gridded_white_noise():
    scan = simulate(size=32, n_blades=8, n_lines=8, n_coils=1, seed=2).scan
    gen = torch.Generator().manual_seed(0)
    shape = scan.kspace.shape
    white = torch.complex(torch.randn(shape, generator=gen), torch.randn(shape, generator=gen))
    scan = replace(scan, kspace=(white / math.sqrt(2)).to(torch.complex64), noise=None)
    maps = torch.ones(1, *scan.image_shape, dtype=torch.complex64)
    problem = build_problem(scan, (-300.0, 300.0), maps=maps)
    ones = problem.basis.u.sum(0).to(torch.complex64)
    grid = torch.einsum("l,lyx->yx", ones, problem.frames[0].b)
    predicted = problem.image_noise_std(problem.scale**2)
    # 1024 pixels of one draw: the sample std is within a few % of the true one
    assert grid.abs().square().mean().sqrt().item() == pytest.approx(predicted, rel=0.08)


def test_noise_scaled_weights_keep_their_ratios_and_add_in_quadrature():
    free = resolve_config("dynamic").free
    scaled = noise_scaled(free, noise_std=0.1)
    assert scaled.tv == pytest.approx(math.hypot(free.tv, free.tv_noise * 0.1**NOISE_POWER))
    assert scaled.tv_time / scaled.tv == pytest.approx(free.tv_time / free.tv)
    assert noise_scaled(free, 0.0).tv == free.tv
    with pytest.raises(ValueError, match="noise_std"):
        noise_scaled(free, -1.0)


@pytest.mark.parametrize("noise_scan", [True, False])
def test_noise_scaled_weight_beats_the_fixed_one_on_a_noisy_scan(noise_scan):
    # noise of the k-space RMS: image noise ~100x the development set's; the fixed weight
    # (tv_noise 0) leaves the noise in, the noise-scaled one removes it (measured: 0.88x
    # with the noise scan, 0.94x with the readout-edge estimate; the held-out rule stops
    # the fixed-weight fit before it takes in all the noise)
    sim = simulate(size=24, n_blades=6, n_lines=6, n_coils=3, noise=1.0, seed=5)
    scan = sim.scan if noise_scan else replace(sim.scan, noise=None)
    grid = nrmse(gridding(sim.scan, coil_maps="walsh"), sim.truth.image)
    runs = {
        c: reconstruct_spectral(scan, "static", iterations=30, free={"tv_noise": c}, **FAST)
        for c in (0.0, resolve_config().free.tv_noise)
    }
    errors = {c: nrmse(rec.image, sim.truth.image) for c, rec in runs.items()}
    fixed, scaled = errors[0.0], errors[resolve_config().free.tv_noise]
    assert scaled < 0.96 * fixed and scaled < grid
    report = runs[resolve_config().free.tv_noise].config["report"]
    assert report["free"]["tv"] > 3 * resolve_config().free.tv
    assert report["noise_source"] == ("noise scan" if noise_scan else "readout edges (upper bound)")


def test_water_fat_weight_grows_with_the_noise_too():
    sim = simulate(size=24, n_blades=6, n_lines=6, n_coils=3, noise=1.0, seed=5)
    runs = {
        c: reconstruct_spectral(
            sim.scan, "fatwater", iterations=40, waterfat={"tv_noise": c, "levels": 1}
        )
        for c in (0.0, resolve_config().waterfat.tv_noise)
    }
    errors = {c: nrmse(rec.image, sim.truth.image) for c, rec in runs.items()}
    assert errors[resolve_config().waterfat.tv_noise] < 0.92 * errors[0.0]
    report = runs[resolve_config().waterfat.tv_noise].config["report"]["waterfat"]
    assert report["tv"] > 3 * resolve_config().waterfat.tv
