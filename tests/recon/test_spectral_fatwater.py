"""The parametric water / fat / field-map head: its tabulated model against the explicit
time sum, its optimizer, and end-to-end targets on simulated phantoms (truth used only
for scoring).

Scans: 32 px, 12 blades x 8 lines, 4 coils, 2 % noise (3 T seed 0, 1.5 T seed 2) and the
48 px, 12 x 12, 1 % noise 3 T phantom on which the single-level head of session 1 fell
into a wrong solution (field-map RMSE 38 Hz).
"""

import math

import pytest
import torch

from mrsolve.data.simulate import simulate
from mrsolve.gui._layers import result_layers
from mrsolve.propeller.fat import fat_signal, fat_spectrum
from mrsolve.propeller.gridding import gridding
from mrsolve.recon.commands import separation_warning
from mrsolve.recon.metrics import fat_fraction_mae, field_map_rmse, nrmse
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral.fields import WaterFatField
from mrsolve.recon.spectral.operator import temporal_basis
from mrsolve.recon.spectral.steppers import RestartingLBFGS


def _scores(sim, rec):
    truth = sim.truth
    water_mask = truth.mask & (truth.water.abs() > 0)
    zero = torch.zeros_like(truth.field_map_hz)
    return {
        "nrmse": nrmse(rec.image, truth.image),
        "grid_nrmse": nrmse(gridding(sim.scan, coil_maps="walsh"), truth.image),
        "ff": fat_fraction_mae(rec.fat_fraction, truth.fat_fraction, truth.mask),
        "ff_zero": fat_fraction_mae(zero, truth.fat_fraction, truth.mask),
        "fm": field_map_rmse(rec.field_map_hz, truth.field_map_hz, water_mask),
        "fm_zero": field_map_rmse(zero, truth.field_map_hz, water_mask),
    }


def test_tabulated_coefficients_equal_the_explicit_time_sum():
    sim = simulate(size=16, n_blades=4, n_lines=4, n_coils=2, seed=0)
    basis = temporal_basis(sim.scan.times, torch.linspace(-700, 300, 201))
    spectrum = fat_spectrum(3.0)
    zeros = torch.zeros(16, 16, dtype=torch.complex64)
    head = WaterFatField(basis, spectrum, zeros, zeros, zeros.real, 1, max_abs_hz=200.0)
    psi = torch.linspace(-199.0, 199.0, 77, dtype=torch.float64)
    a, b = head.coefficients(psi.float())
    t = basis.times_s.double()
    rot = torch.polar(
        torch.ones(len(t), len(psi), dtype=torch.float64), 2 * math.pi * t[:, None] * psi
    )
    u_h = basis.u.conj().T
    ref_a = u_h @ rot
    ref_b = u_h @ (fat_signal(t, spectrum).to(torch.complex128)[:, None] * rot)
    assert float((a - ref_a).norm() / ref_a.norm()) < 1e-5
    assert float((b - ref_b).norm() / ref_b.norm()) < 1e-5


def test_restarting_lbfgs_drops_its_history_when_the_line_search_fails():
    x = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = RestartingLBFGS([x])

    def honest():
        opt.zero_grad()
        loss = (x * x).sum()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(honest)
    assert float((x * x).sum().detach()) < 1e-6  # plain L-BFGS on a quadratic

    def uphill():  # gradient of the wrong sign: no step can decrease the loss
        opt.zero_grad()
        loss = ((x - 1.0) ** 2).sum()
        loss.backward()
        x.grad.neg_()
        return loss

    opt.step(uphill)
    assert opt.state[x] == {}


def test_restarting_lbfgs_restarts_after_a_step_without_progress():
    x = torch.nn.Parameter(torch.tensor([3.0, -2.0]))
    opt = RestartingLBFGS([x])

    def honest():
        opt.zero_grad()
        loss = ((x - 1.0) ** 2).sum()
        loss.backward()
        return loss

    opt.step(honest)
    assert opt.state[x] != {}

    def stalled():  # a higher loss than at the start of the last step, no usable gradient
        opt.zero_grad()
        loss = ((x - 1.0) ** 2).sum().detach() + 100.0
        x.grad = torch.zeros_like(x)
        return loss.requires_grad_()

    opt.step(stalled)
    assert opt.state[x] == {}


def test_fatwater_on_3t_phantom_meets_targets(device):
    sim = simulate(
        size=32,
        n_blades=12,
        n_lines=8,
        n_coils=4,
        field_strength_t=3.0,
        max_offres_hz=150.0,
        noise=0.02,
        seed=0,
    )
    steps = []
    rec = reconstruct_spectral(
        sim.scan,
        "fatwater",
        frequency={"n_bins": 16},
        device=device,
        callback=lambda step, total, image=None, loss=None: steps.append((step, total)),
    )
    s = _scores(sim, rec)
    assert s["nrmse"] <= 0.6 * s["grid_nrmse"]
    # 32 px, 4 coils: the defaults (chosen on the independent development set of
    # benchmarks/generalization.py) score 0.061 and 19.2 Hz here; 0.055 and 16.3 Hz before
    # the preconditioned, capped last level, which lowered the development set's sums
    # (docs/spectral_design.md); the moment form 0.035 and 14.0 Hz; the zero maps 0.325, 50 Hz
    assert s["ff"] < 0.065
    assert s["fm"] < 20.5
    # progress: coarse levels then the last level, one count per step, one total
    wf = rec.config["waterfat"]
    total = (wf["levels"] - 1) * wf["level_iterations"] + wf["iterations"]
    assert [n for n, _ in steps] == list(range(1, len(steps) + 1))
    assert {t for _, t in steps} == {total} and len(steps) > wf["level_iterations"]
    assert rec.spectral_volume.shape == (16, 32, 32)
    assert torch.allclose(rec.spectral_volume.sum(0), rec.image, atol=1e-4)


def test_fatwater_at_1_5t_beats_gridding_and_the_zero_maps():
    """1.5 T: fat is displaced by ~1 px only; the issue's 3 T targets are not claimed."""
    sim = simulate(
        size=32,
        n_blades=12,
        n_lines=8,
        n_coils=4,
        field_strength_t=1.5,
        max_offres_hz=150.0,
        noise=0.02,
        seed=2,
    )
    s = _scores(sim, reconstruct_spectral(sim.scan, "fatwater", frequency={"n_bins": 16}))
    assert s["nrmse"] <= 0.6 * s["grid_nrmse"]
    assert s["ff"] < min(0.1, 0.35 * s["ff_zero"])  # zero predictor: 0.33
    assert s["fm"] < min(15.0, 0.6 * s["fm_zero"])  # zero predictor: 29 Hz


def test_fatwater_avoids_the_wrong_solution_of_the_single_level_head():
    sim = simulate(
        size=48,
        n_blades=12,
        n_lines=12,
        n_coils=4,
        field_strength_t=3.0,
        max_offres_hz=150.0,
        noise=0.01,
        seed=0,
    )
    s = _scores(sim, reconstruct_spectral(sim.scan, "fatwater", frequency={"n_bins": 8}))
    assert s["nrmse"] <= 0.6 * s["grid_nrmse"]
    assert s["ff"] < 0.05
    # 11.0 Hz (1 thread; 13.2 before the complex128 data term and the moment form); the
    # wrong solution of the single-level head scored 38 Hz, the zero map 47.8 Hz
    assert s["fm"] < 15.0


def test_bad_levels_and_patience_raise():
    sim = simulate(size=16, n_blades=4, n_lines=4, n_coils=2, seed=0)
    with pytest.raises(ValueError, match="levels"):
        reconstruct_spectral(sim.scan, "fatwater", waterfat={"levels": 0})
    with pytest.raises(ValueError, match="min_patience"):
        reconstruct_spectral(sim.scan, "fatwater", waterfat={"min_patience": 0})


@pytest.mark.parametrize(("dwell_s", "resolvable"), [(4e-6, False), (60e-6, True)])
def test_fatwater_reports_whether_fat_is_resolvable(dwell_s, resolvable):
    """One echo: fat moves |f_bar| M dt px per readout (3 T, 48 samples: 0.07 or 1.1 px)."""
    sim = simulate(size=24, n_blades=6, n_lines=6, n_coils=3, dwell_s=dwell_s, seed=1)
    rec = reconstruct_spectral(
        sim.scan,
        "fatwater",
        iterations=5,
        frequency={"n_bins": 8},
        waterfat={"levels": 1, "min_readout_shift_px": 1.0},
    )
    sep = rec.config["report"]["waterfat"]["fat_separation"]
    assert sep["echo_cycles"] == 0.0 and sep["resolvable"] is resolvable
    assert rec.fat_separation == sep
    # the napari layers of the maps say so in their names
    names = {kwargs["name"] for _, kwargs, _ in result_layers(rec, "rec")}
    caveat = "" if resolvable else " (fat not resolvable)"
    assert {f"rec fat fraction{caveat}", f"rec field map (Hz){caveat}"} <= names
    warning = separation_warning(rec)
    assert (warning is None) is resolvable
    if not resolvable:
        assert "not resolvable" in warning and f"{sep['readout_shift_px']:.2f} px" in warning
