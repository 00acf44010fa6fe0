"""Fields against the independent exact simulator, encodings, gradients vs finite differences."""

import pytest
import torch

from mrsolve.data.simulate import simulate
from mrsolve.propeller.fat import fat_spectrum
from mrsolve.recon.spectral.encodings import DenseGrid, FactorizedPlanes
from mrsolve.recon.spectral.fields import WaterFatField, dense_spectral_field, frequency_bins
from mrsolve.recon.spectral.operator import SpectralEncoding, temporal_basis


@pytest.fixture(scope="module")
def sim():
    return simulate(
        size=24,
        n_blades=5,
        n_lines=6,
        n_coils=3,
        max_offres_hz=120.0,
        sequence="gradient_echo",
        seed=3,
    )


def _encoding(sim, downsample=1, parametrization="moment"):
    scan, truth = sim.scan, sim.truth
    spectrum = fat_spectrum(scan.field_strength_t)
    basis = temporal_basis(scan.times, torch.linspace(-700, 300, 201), tol=1e-7)
    enc = SpectralEncoding(scan.traj, scan.times, basis, truth.coil_maps)
    head = WaterFatField(
        basis,
        spectrum,
        truth.water,
        truth.fat,
        truth.field_map_hz,
        downsample=downsample,
        max_abs_hz=200.0,
        parametrization=parametrization,
    )
    return enc, head


@pytest.mark.parametrize("parametrization", ["common_phase", "moment", "densities"])
def test_water_fat_head_reproduces_the_exact_simulator(sim, parametrization):
    enc, head = _encoding(sim, parametrization=parametrization)
    assert torch.allclose(head.field_map(), sim.truth.field_map_hz, atol=1e-2)
    assert torch.allclose(head.water(), sim.truth.water, atol=1e-5)
    assert torch.allclose(head.fat(), sim.truth.fat, atol=1e-5)
    with torch.no_grad():
        y = enc(head())
    ref = sim.scan.kspace
    assert float((y - ref).norm() / ref.norm()) < 1e-3


def test_frequency_bins_cover_water_and_fat_with_margin():
    bins = frequency_bins(fat_spectrum(3.0), 20, 100.0)
    assert bins.numel() == 20
    assert float(bins[0]) == pytest.approx(-485.2 - 100, abs=1.0)
    assert float(bins[-1]) == pytest.approx(77.0 + 100, abs=1.0)


@pytest.mark.parametrize("parametrization", ["common_phase", "moment", "densities"])
def test_gradient_through_model_matches_finite_differences(sim, parametrization):
    enc, head = _encoding(sim, downsample=4, parametrization=parametrization)
    y = sim.scan.kspace

    def loss():
        return 0.5 * (enc(head()) - y).abs().square().sum()

    value = loss()
    value.backward()
    gen = torch.Generator().manual_seed(0)
    for param in (head.psi_raw, head.second.values):
        direction = torch.randn(param.shape, generator=gen)
        analytic = float((param.grad * direction).sum())
        eps = 1e-2 / float(direction.norm())
        with torch.no_grad():
            param += eps * direction
            up = float(loss())
            param -= 2 * eps * direction
            down = float(loss())
            param += eps * direction
        numeric = (up - down) / (2 * eps)
        assert numeric == pytest.approx(analytic, rel=2e-2, abs=1e-3 * abs(float(value.detach())))


def test_moment_form_keeps_the_first_spectral_moment_when_the_field_map_moves(sim):
    """At fixed parameters (rho, h), moving psi changes rho_f so that the first spectral
    moment psi rho_w + sum_p a_p (psi + f_p) rho_f stays put (the field's docstring)."""
    _, head = _encoding(sim, downsample=4)
    spectrum = fat_spectrum(sim.scan.field_strength_t)
    freqs, amps = spectrum.frequencies_hz.double(), spectrum.amplitudes.double()

    @torch.no_grad()
    def moment():
        psi = head.field_map().double()
        w, f = head.water().to(torch.complex128), head.fat().to(torch.complex128)
        return psi * w + sum(a * (psi + fp) * f for fp, a in zip(freqs, amps, strict=True))

    before, total = moment(), (head.water() + head.fat()).detach()
    with torch.no_grad():
        head.psi_raw += 0.3
        assert float((head.field_map() - sim.truth.field_map_hz).abs().max()) > 20.0
        assert torch.allclose(head.water() + head.fat(), total, atol=1e-5)
    assert float((moment() - before).abs().max()) < 1e-3 * float(before.abs().max())


def test_common_phase_keeps_fat_in_phase_with_water_and_its_share_in_range(sim):
    _, head = _encoding(sim, downsample=4, parametrization="common_phase")
    truth = sim.truth
    assert float(head.share_penalty().detach()) == pytest.approx(
        0.0, abs=1e-6
    )  # truth: 0 <= s <= 1
    total = truth.water + truth.fat
    phase = torch.polar(
        torch.ones(total.shape), torch.linspace(-3, 3, total.numel()).reshape(total.shape)
    )
    # fat in opposite phase to water has no in-phase share: it is projected to zero fat
    head.set_densities(total * phase, -0.2 * total * phase)
    assert float(head.fat().detach().abs().max()) < 1e-5
    torch.testing.assert_close(head.water().detach(), 0.8 * total * phase)
    # a share outside [0, 1] is penalized by |rho|^2 (s - 1)^2 (or s^2 below 0)
    with torch.no_grad():
        head.second.values[..., 0] += 1.5  # eta (its real part) -> share s + 1.5 > 1
    s = head.fat_share()
    expected = (head.first().abs().square() * torch.relu(s - 1).square()).sum()
    assert float(head.share_penalty().detach()) == pytest.approx(float(expected.detach()), rel=1e-5)
    assert float(head.share_penalty().detach()) > 0
    assert float(_encoding(sim, parametrization="moment")[1].share_penalty().detach()) == 0.0


def test_water_fat_head_rejects_an_unknown_parametrization(sim):
    with pytest.raises(ValueError, match="parametrization"):
        _encoding(sim, parametrization="polar")


def test_dense_field_maps_bins_to_basis_coefficients(sim):
    scan = sim.scan
    bins = torch.linspace(-600, 200, 5)
    basis = temporal_basis(scan.times, bins)
    init = torch.randn(5, 24, 24, dtype=torch.complex64, generator=torch.Generator().manual_seed(1))
    field = dense_spectral_field(basis, bins, init)
    z = field()
    # U z reproduces sum_f e^{i 2 pi f t} x_f at every basis time
    signal = torch.einsum("tl,lyx->tyx", basis.u.to(torch.complex64), z)
    ref = torch.einsum("tf,fyx->tyx", basis.phases(bins).to(torch.complex64), init)
    assert float((signal.detach() - ref).norm() / ref.norm()) < 1e-5


def test_encodings_reject_bad_shapes():
    with pytest.raises(ValueError, match="init"):
        DenseGrid((2, 3), torch.zeros(3, 2, dtype=torch.complex64))
    with pytest.raises(ValueError, match="shape"):
        FactorizedPlanes((4, 6, 5))
    with pytest.raises(ValueError, match="rank"):
        FactorizedPlanes((1, 4, 6, 5), rank=0)


@pytest.mark.parametrize("parametrization", ["common_phase", "moment", "densities"])
def test_units_keep_the_maps_and_scale_the_gradient_by_the_unit(sim, parametrization):
    """set_units changes how the parameters are stored, not what they represent; the
    gradient with respect to a stored parameter is the unit times the one in natural
    units (chain rule), checked against the unit-1 head's autograd gradient."""
    enc, head = _encoding(sim, downsample=4, parametrization=parametrization)
    gen = torch.Generator().manual_seed(0)

    def grads(h):
        loss = (enc(h()) - sim.scan.kspace).abs().square().sum()
        h.zero_grad()
        loss.backward()
        return [p.grad.clone() for p in (h.first.values, h.second.values, h.psi_raw)]

    before = grads(head)
    with torch.no_grad():
        maps = (head.water(), head.fat(), head.field_map())
    units = [torch.rand(p.shape, generator=gen) + 0.5 for p in before]
    head.set_units(*units)
    with torch.no_grad():
        after_maps = (head.water(), head.fat(), head.field_map())
    for a, b in zip(maps, after_maps, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    for g0, g1, u in zip(before, grads(head), units, strict=True):
        torch.testing.assert_close(g1, g0 * u, rtol=1e-3, atol=1e-3 * float(g0.abs().max()))
    with pytest.raises(ValueError, match="units must be positive"):
        head.set_units(-units[0], units[1], units[2])
