import math

import numpy as np
import pytest
import torch

from mrsolve.data.ismrmrd_io import read_ismrmrd
from mrsolve.data.scan_space import (
    ScanSpace,
    band_limit,
    box_average,
    draw_params,
    explicit_kspace,
    read_truth_file,
    resolution_matched_image,
    scan_files,
    simulate_scan,
    write_raw,
    write_truth_file,
)
from mrsolve.propeller.fat import fat_spectrum
from mrsolve.recon import metrics
from mrsolve.recon.methods import reconstruct

TINY = ScanSpace(readout=(64, 64), coils=(4, 4), blades=(8, 8))


def _first_seed(space, predicate):
    return next(s for s in range(1000) if predicate(draw_params(s, space)))


def test_draws_are_reproducible_and_cover_the_space():
    assert draw_params(3) == draw_params(3)
    assert draw_params(3) != draw_params(4)
    draws = [draw_params(s) for s in range(300)]
    assert {p.sequence for p in draws} == {"spin_echo", "gradient_echo"}
    assert {p.anatomy for p in draws} == {"ellipses", "brain"}
    assert {p.field_strength_t for p in draws} == {1.5, 3.0}
    assert {len(p.echo_times_s) for p in draws} == {1, 2, 3, 4}
    assert {p.n_readout for p in draws} == {64, 96, 128, 160, 192, 224, 256}
    assert {p.size for p in draws} >= {32, 128}
    assert all(8 <= p.n_blades <= 24 and 4 <= p.n_coils <= 32 for p in draws)
    assert {min(p.n_blades for p in draws), max(p.n_blades for p in draws)} == {8, 24}
    assert {min(p.n_coils for p in draws), max(p.n_coils for p in draws)} == {4, 32}
    dwell = np.array([p.dwell_s for p in draws]) * 1e6
    assert 5 <= dwell.min() < 7 and 40 < dwell.max() <= 50
    noise = np.array([p.noise for p in draws])
    assert 0.002 <= noise.min() < 0.003 and 0.02 < noise.max() <= 0.03
    gre = [te for p in draws if p.sequence == "gradient_echo" for te in p.echo_times_s]
    assert 0 <= min(gre) < 1e-3 and 5e-3 < max(gre) <= 6e-3
    assert max(p.max_offres_hz for p in draws) > 240
    assert all(p.n_lines <= p.size for p in draws)


def test_explicit_kspace_of_an_off_resonant_point_against_a_direct_sum():
    n, size, f_hz, dwell = 32, 16, 150.0, 40e-6
    readout_k = (np.arange(2 * size) - size) / 2.0
    line_k = np.arange(-2, 2, dtype=float)
    angles = np.array([0.0, 1.1])
    times = ((np.arange(2 * size) - size) * dwell)[None]
    water, fat, psi = np.zeros((n, n)), np.zeros((n, n)), np.zeros((n, n))
    row, col = 20, 11
    water[row, col], psi[row, col] = 2.0, f_hz
    coil = np.full((1, n, n), 0.5 - 0.25j)
    y = explicit_kspace(water, fat, psi, coil, readout_k, line_k, angles, times, 3.0, size)
    assert y.shape == (1, 2, 1, 4, 2 * size)
    x, yy = (col - n / 2) / n, (row - n / 2) / n
    for b, th in enumerate(angles):
        kx = readout_k[None] * math.cos(th) - line_k[:, None] * math.sin(th)
        ky = readout_k[None] * math.sin(th) + line_k[:, None] * math.cos(th)
        direct = (
            (0.5 - 0.25j)
            * 2.0
            * (size / n) ** 2
            * np.exp(2j * np.pi * f_hz * times)
            * np.exp(-2j * np.pi * (kx * x + ky * yy))
        )
        np.testing.assert_allclose(y[0, b, 0], direct, rtol=0, atol=1e-6)


def test_off_resonance_shifts_a_point_by_minus_f_m_dt_along_the_readout():
    # methods/propeller.md: an object at f appears displaced by -f M dt pixels along
    # (cos theta, sin theta); here by exactly -2 fine pixels = -1 reconstruction pixel.
    n, size = 32, 16
    m = 2 * size
    dwell = 1e-4
    f_hz = 1.0 / (m * dwell)  # -f M dt = -1 reconstruction pixel
    readout_k = (np.arange(m) - size) / 2.0
    line_k = np.arange(-3, 3, dtype=float)
    times = ((np.arange(m) - size) * dwell)[None]
    coil = np.ones((1, n, n))
    zero = np.zeros((n, n))
    for angle, (dr, dc) in ((0.0, (0, -2)), (math.pi / 2, (-2, 0))):
        moving, still, psi = zero.copy(), zero.copy(), zero.copy()
        moving[16, 16], psi[16, 16] = 1.0, f_hz
        still[16 + dr, 16 + dc] = 1.0
        args = (readout_k, line_k, np.array([angle]), times, 3.0, size)
        y_off = explicit_kspace(moving, zero, psi, coil, *args)
        y_shift = explicit_kspace(still, zero, zero, coil, *args)
        np.testing.assert_allclose(y_off, y_shift, atol=1e-5)


def test_fat_point_follows_the_six_peak_spectrum():
    n, size = 16, 8
    readout_k = (np.arange(2 * size) - size) / 2.0
    times = (np.arange(2 * size) * 5e-4 + 1e-3)[None]
    fat, zero = np.zeros((n, n)), np.zeros((n, n))
    fat[n // 2, n // 2] = 1.0  # at the origin: no spatial phase
    y = explicit_kspace(
        zero, fat, zero, np.ones((1, n, n)), readout_k, np.zeros(1), np.zeros(1), times, 1.5, size
    )
    spectrum = fat_spectrum(1.5, "six_peak")
    f, a = spectrum.frequencies_hz.double().numpy(), spectrum.amplitudes.double().numpy()
    direct = (size / n) ** 2 * (a * np.exp(2j * np.pi * f * times[0][:, None])).sum(-1)
    np.testing.assert_allclose(y[0, 0, 0, 0], direct, atol=1e-6)


def test_box_average_is_exact_on_linear_ramps_and_keeps_the_total():
    fine = np.add.outer(np.arange(16.0), 3 * np.arange(16.0))  # a + 3 b on the fine grid
    coarse = box_average(fine, 2)
    expected = np.add.outer(np.arange(0, 16.0, 2), 3 * np.arange(0, 16.0, 2))
    np.testing.assert_allclose(coarse[1:-1, 1:-1], expected[1:-1, 1:-1])
    blob = np.zeros((24, 24))
    blob[8:15, 6:17] = np.random.default_rng(0).uniform(size=(7, 11))
    assert box_average(blob, 2).sum() * 4 == pytest.approx(blob.sum())
    assert box_average(blob, 3).sum() * 9 == pytest.approx(blob.sum())


def test_band_limit_is_the_explicit_dft_restricted_to_the_coarse_band():
    rng = np.random.default_rng(3)
    n, size = 24, 8
    fine = rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))
    x = (np.arange(n) - n // 2) * size / n  # fine pixel centres in coarse pixels
    k = np.arange(size) - size // 2  # the coarse band, cycles/FOV
    kernel = np.exp(-2j * np.pi * np.outer(k, x) / size)  # (k, x_fine)
    spectrum = kernel @ fine @ kernel.T
    xc = np.arange(size) - size // 2
    back = np.exp(2j * np.pi * np.outer(xc, k) / size)
    expected = back @ spectrum @ back.T / n**2  # mean over the fine pixels of a coarse one
    np.testing.assert_allclose(band_limit(fine, size), expected, atol=1e-12)


def test_resolution_matched_image_is_the_drawn_object():
    params = draw_params(5, TINY)
    truth = simulate_scan(params).truth["image"]
    matched = resolution_matched_image(params)
    assert metrics.nrmse(matched, truth) < 0.25
    other = resolution_matched_image(draw_params(6, TINY))
    assert metrics.nrmse(other, truth) > 0.5


@pytest.mark.parametrize("gradient_echo", [False, True])
def test_written_scan_is_read_back_by_our_reader(tmp_path, gradient_echo):
    if gradient_echo:
        seed = _first_seed(TINY, lambda p: len(p.echo_times_s) >= 3)
    else:
        seed = _first_seed(TINY, lambda p: p.sequence == "spin_echo")
    params = draw_params(seed, TINY)
    sim = simulate_scan(params)
    raw = write_raw(tmp_path / "raw.h5", sim)
    write_truth_file(tmp_path / "truth.h5", sim)
    scan = read_ismrmrd(raw)
    assert scan.sequence == params.sequence
    assert scan.echo_te_s == pytest.approx(params.echo_times_s, abs=1e-9)
    assert scan.dwell_s == pytest.approx(params.dwell_s, rel=1e-6)
    assert scan.field_strength_t == params.field_strength_t
    assert scan.image_shape == (32, 32)
    assert scan.noise.shape == (4, 1024)
    n_echo = len(params.echo_times_s)
    assert scan.n_blades == params.n_blades * n_echo
    for e in range(n_echo):
        echo = scan.select_blades(scan.echo == e)
        np.testing.assert_array_equal(echo.kspace.numpy(), sim.kspace[:, :, e])
        expected = (np.arange(64) - 32) * params.dwell_s
        if gradient_echo:
            expected = expected + params.echo_times_s[e]
        np.testing.assert_allclose(echo.times[0, 0].numpy(), expected, atol=1e-9)
    np.testing.assert_allclose(
        scan.traj.numpy()[: params.n_blades * n_echo : n_echo],
        params.geometry().trajectory().numpy(),
    )
    truth = read_truth_file(tmp_path / "truth.h5")
    assert truth.params == params
    assert truth.image_at_te.shape == (n_echo, 32, 32)
    assert truth.water_mask.sum() > 0 and (truth.water_mask <= truth.truth.mask.numpy()).all()


def test_small_random_scan_reconstructs_end_to_end(tmp_path):
    seed = _first_seed(TINY, lambda p: p.sequence == "gradient_echo")
    ((raw, truth_path),) = scan_files([seed], tmp_path, TINY)
    assert scan_files([seed], tmp_path, TINY)[0] == (raw, truth_path)  # cached
    scan, truth = read_ismrmrd(raw), read_truth_file(truth_path)
    first = scan.select_blades(scan.echo == 0)
    target, exact = truth.image_at(scan.echo_te_s[0])
    assert exact
    mask = truth.truth.mask.numpy()
    grid = reconstruct(first, "gridding")
    spectral = reconstruct(scan, "spectral", iterations=5)
    for rec in (grid, spectral):
        assert rec.image.shape == (32, 32)
        assert np.isfinite(metrics.nrmse(rec.image, target, mask))
    assert metrics.nrmse(grid.image, target, mask) < 0.8
    assert torch.isfinite(spectral.image).all()
