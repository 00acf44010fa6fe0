"""Spectral reconstruction with the planes and hash-grid encodings (metrics vs truth only here)."""

import numpy as np
import pytest
import torch

from mrsolve.data.simulate import simulate
from mrsolve.propeller.gridding import gridding
from mrsolve.recon.metrics import nrmse
from mrsolve.recon.spectral import reconstruct_spectral

FAST = {"frequency": {"n_bins": 8}}


@pytest.fixture(scope="module")
def phantom():
    return simulate(
        size=32,
        n_blades=8,
        n_lines=8,
        n_coils=3,
        field_strength_t=3.0,
        max_offres_hz=150.0,
        noise=0.01,
        seed=2,
    )


@pytest.mark.parametrize("encoding", ["planes", "hash_grid"])
def test_encodings_beat_gridding_on_a_32px_phantom(phantom, encoding):
    grid = nrmse(gridding(phantom.scan, coil_maps="walsh"), phantom.truth.image)
    rec = reconstruct_spectral(
        phantom.scan, "static", iterations=30, free={"encoding": encoding}, **FAST
    )
    assert rec.spectral_volume.shape == (8, 32, 32)
    assert nrmse(rec.image, phantom.truth.image) <= 0.6 * grid
    report = rec.config["report"]["free"]
    assert report["warm_start"]["iterations"] == rec.config["free"]["warm_start"]


def test_random_start_planes_run_and_report_no_warm_start(phantom):
    rec = reconstruct_spectral(
        phantom.scan, "static", iterations=3, free={"encoding": "planes", "warm_start": 0}, **FAST
    )
    assert rec.config["report"]["free"]["warm_start"] is None
    assert torch.isfinite(rec.image).all()


def test_planes_resume_ends_where_uninterrupted_run_ends(phantom, tmp_path):
    options = dict(
        iterations=8,
        stopping={"check_every": 4, "patience": 100},
        free={"encoding": "planes", "warm_start": 3},
        **FAST,
    )
    full = reconstruct_spectral(phantom.scan, "static", **options)

    def interrupt(step, total, image=None, loss=None):
        if step == 6:
            raise KeyboardInterrupt

    path = tmp_path / "ckpt.pt"
    with pytest.raises(KeyboardInterrupt):
        reconstruct_spectral(phantom.scan, "static", checkpoint=path, callback=interrupt, **options)
    resumed = reconstruct_spectral(phantom.scan, "static", checkpoint=path, resume=True, **options)
    assert torch.allclose(resumed.image, full.image, atol=1e-5, rtol=0)


@pytest.mark.parametrize("encoding", ["dense", "planes", "hash_grid"])
def test_seeded_reconstruction_leaves_the_global_random_state_alone(phantom, encoding):
    # the global state is what this test is about: hence numpy's legacy API (NPY002)
    torch_state, numpy_state = torch.random.get_rng_state(), np.random.get_state()  # noqa: NPY002
    options = dict(iterations=2, seed=7, free={"encoding": encoding, "warm_start": 1}, **FAST)
    first = reconstruct_spectral(phantom.scan, "static", **options)
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    after = np.random.get_state()  # noqa: NPY002
    assert after[0] == numpy_state[0] and np.array_equal(after[1], numpy_state[1])
    assert after[2:] == numpy_state[2:]
    with torch.random.fork_rng(devices=[]):  # the seed alone fixes the result
        torch.manual_seed(123)
        again = reconstruct_spectral(phantom.scan, "static", **options)
    assert torch.equal(first.spectral_volume, again.spectral_volume)
