import numpy as np
import pytest
import torch

from mrsolve.propeller.fat import (
    fat_separation,
    fat_signal,
    fat_spectrum,
    ppm_to_hz,
    water_fat_signal,
)
from mrsolve.propeller.timing import readout_times


def test_single_peak_matches_methods_note():
    for field, expected in ((3.0, -434.0), (1.5, -217.0)):
        f, a = fat_spectrum(field, "single_peak")
        assert f.shape == (1,) and a.tolist() == [1.0]
        assert abs(f.item() - expected) < 1.0


def test_six_peaks_at_3t_and_amplitudes():
    f, a = fat_spectrum(3.0)
    expected = [77, -50, -248, -332, -434, -485]
    np.testing.assert_allclose(f.numpy(), expected, atol=1.0)
    assert abs(a.sum().item() - 1) < 1e-6
    listed = np.array([0.048, 0.039, 0.004, 0.128, 0.693, 0.087])
    np.testing.assert_allclose(a.numpy(), listed / listed.sum(), rtol=1e-6)
    # frequencies scale linearly with the field, amplitudes do not change
    f15, a15 = fat_spectrum(1.5)
    np.testing.assert_allclose(f15.numpy() * 2, f.numpy(), rtol=1e-6)
    np.testing.assert_allclose(a15.numpy(), a.numpy())


def test_ppm_to_hz_uses_gyromagnetic_ratio():
    assert ppm_to_hz(1.0, 1.0) == pytest.approx(42.577)


def test_fat_signal_against_explicit_sum():
    spec = fat_spectrum(3.0)
    t = torch.linspace(-2e-3, 5e-3, 11)
    expected = [
        sum(
            a * np.exp(2j * np.pi * f * ti)
            for f, a in zip(spec[0].tolist(), spec[1].tolist(), strict=True)
        )
        for ti in t.double().tolist()
    ]
    got = fat_signal(t, spec)
    assert got.dtype == torch.complex64
    np.testing.assert_allclose(got.numpy(), expected, atol=2e-6)
    assert abs(fat_signal(torch.zeros(()), spec).item() - 1) < 1e-6


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="field_strength_t"):
        fat_spectrum(0.0)
    with pytest.raises(ValueError, match="model"):
        fat_spectrum(3.0, "seven_peak")


def test_water_fat_signal_against_the_signal_equation():
    spec = fat_spectrum(1.5)
    gen = torch.Generator().manual_seed(0)
    water = torch.randn(4, 5, dtype=torch.complex64, generator=gen)
    fat = torch.randn(4, 5, dtype=torch.complex64, generator=gen)
    psi = 100 * torch.randn(4, 5, generator=gen)
    t = 2.3e-3
    c = sum(
        a * np.exp(2j * np.pi * f * t)
        for f, a in zip(spec[0].tolist(), spec[1].tolist(), strict=True)
    )
    expected = (water.numpy() + fat.numpy() * c) * np.exp(2j * np.pi * psi.double().numpy() * t)
    np.testing.assert_allclose(
        water_fat_signal(water, fat, psi, spec, t).numpy(), expected, atol=1e-5
    )
    assert torch.equal(water_fat_signal(water, fat, psi, spec, 0.0), water + fat)


def test_fat_separation_of_one_echo_and_of_several():
    spec = fat_spectrum(3.0)
    mean = abs(float((spec.amplitudes.double() * spec.frequencies_hz.double()).sum()))
    m, c, dwell = 64, 32, 20e-6
    one = readout_times(m, c, dwell, "spin_echo").expand(4, 3, m)
    cycles, px = fat_separation(one, c, None, spec)
    assert cycles == 0.0
    assert px == pytest.approx(mean * (m - 1) * dwell, rel=1e-5)
    tes = [1.2e-3, 2.2e-3, 3.2e-3]
    lines = torch.stack([readout_times(m, c, dwell, "gradient_echo", te) for te in tes])
    echo = torch.tensor([2, 0, 1, 2, 0, 1])
    times = lines[echo][:, None].expand(6, 3, m)
    cycles, px = fat_separation(times, c, echo, spec)
    assert cycles == pytest.approx(mean * 2.0e-3, rel=1e-4)
    assert px == pytest.approx(mean * (m - 1) * dwell, rel=1e-5)
