"""End-to-end spectral reconstruction on simulated scans (metrics against the truth only here).

Sizes: 24 px, 3 coils, 6 blades, 8 frequency bins, noise 2 % of the k-space RMS. The
fat/water targets are tested in test_spectral_fatwater.py.
"""

import pytest
import torch

from mrsolve.data.results import Reconstruction
from mrsolve.data.simulate import simulate
from mrsolve.propeller.fat import fat_spectrum
from mrsolve.propeller.gridding import gridding
from mrsolve.recon.metrics import nrmse
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral.config import resolve_config
from mrsolve.recon.spectral.problem import heldout_lines
from mrsolve.recon.spectral.readouts import fat_fraction, volume_from_water_fat

FAST = {"frequency": {"n_bins": 8}}


@pytest.fixture(scope="module")
def small():
    return simulate(
        size=24, n_blades=6, n_lines=6, n_coils=3, max_offres_hz=120.0, noise=0.02, seed=5
    )


def test_static_free_volume_beats_gridding(small, device):
    grid = gridding(small.scan, coil_maps="walsh")
    steps = []
    rec = reconstruct_spectral(
        small.scan,
        "static",
        iterations=20,
        callback=lambda s, t, image=None, loss=None: steps.append((s, t, loss)),
        device=device,
        **FAST,
    )
    assert isinstance(rec, Reconstruction) and rec.method == "spectral"
    assert rec.spectral_volume.shape == (8, 24, 24) and rec.frequencies_hz.shape == (8,)
    assert nrmse(rec.image, small.truth.image) <= 0.6 * nrmse(grid, small.truth.image)
    assert [s for s, _, _ in steps] == list(range(1, 21)) and steps[-1][1] == 20
    assert steps[-1][2] < steps[0][2]
    assert rec.config["free"]["iterations"] == 20 and rec.config["preset"] == "static"


def test_dynamic_beats_gridding_per_frame(device):
    sim = simulate(
        size=24,
        n_blades=6,
        n_lines=6,
        n_coils=3,
        n_frames=2,
        max_offres_hz=100.0,
        noise=0.02,
        seed=1,
    )
    scan, truth = sim.scan, sim.truth
    rec = reconstruct_spectral(scan, "dynamic", iterations=20, device=device, **FAST)
    assert rec.image.shape == (2, 24, 24) and rec.spectral_volume.shape == (2, 8, 24, 24)
    for t in range(2):
        grid = gridding(scan.select_blades(scan.frame == t), coil_maps="walsh")
        assert nrmse(rec.image[t], truth.image[t]) < nrmse(grid, truth.image[t])


def test_same_seed_same_output(small):
    a = reconstruct_spectral(small.scan, "static", iterations=5, seed=3, **FAST)
    b = reconstruct_spectral(small.scan, "static", iterations=5, seed=3, **FAST)
    assert torch.equal(a.spectral_volume, b.spectral_volume)


@pytest.mark.parametrize("preset", ["static", "fatwater"])
def test_resume_ends_where_uninterrupted_run_ends(small, tmp_path, preset):
    options = dict(iterations=10, stopping={"check_every": 5, "patience": 100}, **FAST)
    if preset == "fatwater":
        options["waterfat"] = {"level_iterations": 4}
    full = reconstruct_spectral(small.scan, preset, **options)

    def interrupt(step, total, image=None, loss=None):
        if step == total - 3:  # after the first checkpoint of the last stage
            raise KeyboardInterrupt

    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        reconstruct_spectral(small.scan, preset, checkpoint=path, callback=interrupt, **options)
    resumed = reconstruct_spectral(small.scan, preset, checkpoint=path, resume=True, **options)
    assert torch.allclose(resumed.image, full.image, atol=1e-5, rtol=0)


def test_heldout_rule_stops_when_heldout_loss_stalls(small):
    rec = reconstruct_spectral(
        small.scan,
        "static",
        iterations=200,
        free={"tv": 0.0},
        stopping={"check_every": 3, "patience": 2, "min_improvement": 0.02},
        holdout_fraction=0.15,
        **FAST,
    )
    report = rec.config["report"]["free"]
    assert report["stopped_early"] and report["iterations"] < 200
    history = report["heldout_history"]
    n = len(history)
    assert all(history[i] > min(history[:i]) * (1 - 0.02) for i in (n - 2, n - 1))


def test_heldout_lines_are_seeded_and_sized():
    a, b = heldout_lines(8, 10, 0.1, seed=1), heldout_lines(8, 10, 0.1, seed=1)
    assert torch.equal(a, b) and int(a.sum()) == 8
    assert not torch.equal(a, heldout_lines(8, 10, 0.1, seed=2))
    with pytest.raises(ValueError, match="holdout_fraction"):
        heldout_lines(8, 10, 0.7, seed=1)


def test_water_fat_volume_readout_sums_to_the_image():
    gen = torch.Generator().manual_seed(0)
    water = torch.randn(5, 6, dtype=torch.complex64, generator=gen)
    fat = torch.randn(5, 6, dtype=torch.complex64, generator=gen)
    psi = 100 * torch.rand(5, 6, generator=gen) - 50
    bins = torch.linspace(-600, 250, 18)
    volume = volume_from_water_fat(water, fat, psi, fat_spectrum(3.0), bins)
    assert torch.allclose(volume.sum(0), water + fat, atol=1e-5)
    ff = fat_fraction(water, fat, threshold=0.0)
    assert torch.allclose(ff, fat.abs() / (water.abs() + fat.abs()))


def test_bad_requests_raise(small):
    with pytest.raises(ValueError, match="preset"):
        resolve_config("nope")
    with pytest.raises(ValueError, match="tv_x"):
        resolve_config("static", tv_x=1.0)
    with pytest.raises(ValueError, match="iterations"):
        resolve_config("static", iterations=0)
    with pytest.raises(TypeError, match="scan"):
        reconstruct_spectral(torch.zeros(3))
    assert resolve_config("static", tv_f=0.1).free.tv_f == 0.1
    assert resolve_config("fatwater", iterations=7).waterfat.iterations == 7


def test_spectral_options_resolve_once_into_a_typed_config():
    from mrsolve.recon.methods import check_request, spectral_options
    from mrsolve.recon.spectral.config import SpectralConfig

    opts = spectral_options(
        {
            "preset": "fatwater",
            "iterations": 7,
            "seed": None,
            "waterfat": {"tv": 0.01},
            "free": {"planes": {"rank": 6}},
            "checkpoint": "c.pt",
        }
    )
    cfg = opts["config"]
    assert isinstance(cfg, SpectralConfig) and opts["checkpoint"] == "c.pt"
    assert cfg.preset == "fatwater" and cfg.waterfat.iterations == 7 and cfg.seed == 0
    assert cfg.waterfat.tv == 0.01 and cfg.free.planes.rank == 6
    assert cfg.free.planes.resolution == 1  # nested sections merge, not replace
    assert spectral_options(opts) == opts  # resolved once; passing it on changes nothing
    with pytest.raises(ValueError, match="bogus"):
        spectral_options({"bogus": 1})
    with pytest.raises(ValueError, match="rnk"):
        spectral_options({"free": {"planes": {"rnk": 6}}})
    with pytest.raises(TypeError, match=r"free\.planes\.rank"):
        spectral_options({"free": {"planes": {"rank": 2.5}}})
    with pytest.raises(TypeError, match="dynamic"):
        spectral_options({"dynamic": 1})
    with pytest.raises(ValueError, match="sections"):  # tv is in two: ambiguous
        spectral_options({"tv": 0.1})
    with pytest.raises(ValueError, match="cannot be given"):
        spectral_options({**opts, "tv_f": 0.1})
    check_request("spectral", {"preset": None}, False)  # names alone (the GUI asks so)
    with pytest.raises(ValueError, match="bogus"):
        check_request("spectral", {"bogus": None}, False)


def test_flat_encoding_names_still_work_with_a_deprecation_warning():
    with pytest.warns(DeprecationWarning, match=r"free\.plane_rank .*free\.planes\.rank"):
        cfg = resolve_config(plane_rank=8)
    assert cfg.free.planes.rank == 8
    with pytest.warns(DeprecationWarning, match="hash_lr"):
        cfg = resolve_config(free={"hash_lr": 0.01, "tv": 0.02})
    assert cfg.free.hash_grid.lr == 0.01 and cfg.free.tv == 0.02
    with pytest.warns(DeprecationWarning, match="plane_warm_start"):
        assert resolve_config(free={"plane_warm_start": 3}).free.warm_start == 3


def test_free_volume_step_is_below_one_over_lipschitz(tmp_path):
    """FISTA's fixed step against a long power iteration of C^H A^H W A C (the problem's
    Toeplitz normal operator and the bins' basis coefficients C), on four echoes far from
    t = 0, where a constant start vector had read L low."""
    from mrsolve.data.ismrmrd_io import read_ismrmrd
    from mrsolve.data.scan_space import ScanSpace, draw_params, simulate_scan, write_raw
    from mrsolve.recon.spectral.config import frequency_range
    from mrsolve.recon.spectral.problem import build_problem
    from mrsolve.solvers.alg import power_iteration

    space = ScanSpace(
        readout=(64, 64), coils=(6, 6), blades=(10, 10), gradient_echo=1.0, multi_echo=1.0
    )
    params = next(
        p
        for s in range(500)
        if len((p := draw_params(s, space)).echo_times_s) == 4 and p.echo_times_s[0] > 3.5e-3
    )
    scan = read_ismrmrd(write_raw(tmp_path / "scan.h5", simulate_scan(params)))
    step = reconstruct_spectral(scan, "static").config["report"]["free"]["step"]
    cfg = resolve_config("static")
    bins, frange = frequency_range(cfg.frequency, scan.field_strength_t)
    problem = build_problem(scan, frange, cfg.operator, seed=cfg.seed)
    coef = problem.basis.coefficients(bins)
    frame = problem.frames[0]

    def hessian(x):
        z = frame.normal(torch.einsum("lf,fyx->lyx", coef, x))
        return torch.einsum("lf,lyx->fyx", coef.conj(), z)

    start = torch.randn(
        (len(bins), *scan.image_shape),
        dtype=torch.complex64,
        generator=torch.Generator().manual_seed(7),
    )
    lipschitz = power_iteration(hessian, x0=start, max_iter=300, tol=1e-9)
    assert step * lipschitz <= 1.0
