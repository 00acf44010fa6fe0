"""The multi-echo field-map start (issue 18, part 3): recon.spectral.field_start."""

import math

import numpy as np
import pytest
import torch
from scipy import ndimage

from mrsolve.propeller.fat import fat_spectrum
from mrsolve.recon import metrics
from mrsolve.recon.methods import reconstruct
from mrsolve.recon.spectral.field_start import echo_costs, echo_field_map, gaussian_blur


def test_costs_vanish_at_the_true_field_map_and_nowhere_else():
    """Echo images built from the explicit multi-peak signal of known psi and fat share."""
    spectrum = fat_spectrum(1.5)
    te = np.array([1.2e-3, 2.3e-3, 3.4e-3])
    psi = np.array([[-120.0, 35.0], [80.0, 0.0]])
    share = np.array([[0.0, 0.3], [0.8, 1.0]])
    rho = np.array([[1.0, 2.0 - 1.0j], [0.5j, 3.0]])
    f, a = spectrum.frequencies_hz.double().numpy(), spectrum.amplitudes.double().numpy()
    fat_t = (a * np.exp(2j * np.pi * te[:, None] * f)).sum(-1)  # (E,)
    images = rho * ((1 - share) + share * fat_t[:, None, None])
    images = images * np.exp(2j * np.pi * psi * te[:, None, None])
    candidates = torch.arange(-200.0, 201.0, 5.0, dtype=torch.float64)
    costs = echo_costs(torch.from_numpy(images), torch.from_numpy(te), spectrum, candidates)
    energy = (np.abs(images) ** 2).sum(0)
    best = candidates[costs.argmin(0)].numpy()
    np.testing.assert_allclose(best, psi)
    assert float((costs.min(0).values / torch.from_numpy(energy)).max()) < 1e-5
    # one candidate off the truth already leaves a residual
    off = costs[(costs.argmin(0) + 1).clamp(max=len(candidates) - 1), [[0, 0], [1, 1]], [[0, 1]]]
    assert float((off / torch.from_numpy(energy).float()).min()) > 1e-5


def test_gaussian_blur_matches_scipy():
    x = torch.rand(3, 20, 17, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    ours = gaussian_blur(x, 2.0).numpy()
    ref = ndimage.gaussian_filter(x.numpy(), sigma=(0, 2.0, 2.0), mode="constant", truncate=3.0)
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    assert gaussian_blur(x, 0.0) is x


def test_echo_start_lands_near_the_true_field_map(multi_echo_scan):
    scan, truth = multi_echo_scan
    true, water = truth["field_map_hz"], truth["water_mask"]
    zero = metrics.field_map_rmse(np.zeros_like(true), true, water)
    psi = echo_field_map(scan, fat_spectrum(scan.field_strength_t), 200.0).numpy()
    assert metrics.field_map_rmse(psi, true, water) < 0.25 * zero
    with pytest.raises(ValueError, match="at least 2 echoes"):
        echo_field_map(scan.select_blades(scan.echo == 0), fat_spectrum(3.0), 200.0)


def test_fatwater_starts_from_the_echoes_and_ends_closer_than_from_zero(multi_echo_scan):
    scan, truth = multi_echo_scan
    true, water = truth["field_map_hz"], truth["water_mask"]
    errors = {}
    for enabled in (True, False):
        rec = reconstruct(
            scan, "spectral", preset="fatwater", waterfat={"echo_start": {"enabled": enabled}}
        )
        report = rec.config["report"]["waterfat"]
        assert report["field_start"] == ("echoes" if enabled else "zero")
        errors[enabled] = metrics.field_map_rmse(rec.field_map_hz.numpy(), true, water)
    zero = metrics.field_map_rmse(np.zeros_like(true), true, water)
    assert errors[True] < 0.2 * zero
    assert errors[True] < errors[False] or math.isclose(errors[True], errors[False], rel_tol=0.1)
