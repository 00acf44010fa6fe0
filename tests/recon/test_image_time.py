"""The image read-out time: t = 0 for spin echo, the echo time for gradient echo."""

import math

import numpy as np
import pytest
import torch

from mrsolve.data.results import read_result, write_result
from mrsolve.data.simulate import simulate
from mrsolve.propeller.fat import fat_spectrum, water_fat_signal
from mrsolve.recon.commands import score
from mrsolve.recon.methods import reconstruct
from mrsolve.recon.metrics import nrmse
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral.readouts import image_from_volume

FAST = {"frequency": {"n_bins": 12}}


def test_image_from_volume_at_a_time_against_an_explicit_sum():
    gen = torch.Generator().manual_seed(1)
    volume = torch.randn(5, 3, 4, dtype=torch.complex64, generator=gen)
    bins = torch.linspace(-400, 100, 5)
    t = 1.7e-3
    expected = sum(volume[f].numpy() * np.exp(2j * math.pi * float(bins[f]) * t) for f in range(5))
    np.testing.assert_allclose(image_from_volume(volume, bins, t).numpy(), expected, atol=1e-5)
    assert torch.equal(image_from_volume(volume), volume.sum(0))
    with pytest.raises(ValueError, match="bins_hz"):
        image_from_volume(volume, None, t)


@pytest.fixture(scope="module")
def gradient_echo():
    return simulate(
        size=32,
        n_blades=8,
        n_lines=8,
        n_coils=4,
        sequence="gradient_echo",
        te_s=2.3e-3,
        dwell_s=30e-6,
        max_offres_hz=150.0,
        noise=0.01,
        seed=3,
    )


def test_gradient_echo_image_is_read_out_at_the_echo_time(gradient_echo, tmp_path):
    sim = gradient_echo
    rec = reconstruct_spectral(sim.scan, iterations=40, **FAST)
    assert rec.image_time_s == pytest.approx(2.3e-3, rel=1e-6)
    at_te = sim.truth.image_at(rec.image_time_s)
    grid = reconstruct(sim.scan, "gridding")
    assert grid.image_time_s == pytest.approx(2.3e-3, rel=1e-6)
    # the volume determines the image at the echo time, not at t = 0
    assert nrmse(rec.image, at_te) <= 0.6 * nrmse(grid.image, at_te)
    zero = reconstruct_spectral(sim.scan, iterations=40, image_time="zero", **FAST)
    assert zero.image_time_s == 0.0
    assert nrmse(rec.image, at_te) < nrmse(zero.image, sim.truth.image)
    # the time travels through the output file and the scores use it
    path = write_result(tmp_path / "ge.h5", rec)
    back = read_result(path)
    assert back.image_time_s == pytest.approx(rec.image_time_s)
    assert score(back, sim.truth)["nrmse"] == pytest.approx(nrmse(rec.image, at_te), rel=1e-5)


def test_spin_echo_reads_out_at_zero_and_fatwater_uses_the_model():
    sim = simulate(size=24, n_blades=6, n_lines=6, n_coils=3, max_offres_hz=100.0, seed=2)
    rec = reconstruct_spectral(sim.scan, iterations=5, **FAST)
    assert rec.image_time_s == 0.0
    ge = simulate(
        size=24,
        n_blades=6,
        n_lines=6,
        n_coils=3,
        sequence="gradient_echo",
        te_s=2e-3,
        max_offres_hz=100.0,
        seed=2,
    )
    fw = reconstruct_spectral(ge.scan, "fatwater", iterations=10, waterfat={"levels": 1}, **FAST)
    spectrum = fat_spectrum(ge.scan.field_strength_t)
    expected = water_fat_signal(fw.water, fw.fat, fw.field_map_hz, spectrum, 2e-3)
    assert fw.image_time_s == pytest.approx(2e-3, rel=1e-6)
    torch.testing.assert_close(fw.image, expected)


def test_image_time_option_is_validated():
    sim = simulate(size=16, n_blades=4, n_lines=4, n_coils=2, seed=0)
    with pytest.raises(ValueError, match="image_time"):
        reconstruct_spectral(sim.scan, image_time="middle")
    rec = reconstruct_spectral(sim.scan, iterations=2, image_time=1e-3, **FAST)
    assert rec.image_time_s == pytest.approx(1e-3)
