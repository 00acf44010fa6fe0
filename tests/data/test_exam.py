"""Whole exams: multi-slice / multi-echo / averaged ISMRMRD files and stacked outputs."""

import h5py
import numpy as np
import pytest
import torch

from mrsolve.data.exam import concat_echoes, simulate_exam, stack_results
from mrsolve.data.ismrmrd_io import (
    list_slices,
    read_ismrmrd,
    read_slices,
    write_exam,
    write_ismrmrd,
)
from mrsolve.data.results import Reconstruction, read_result, write_result
from mrsolve.data.simulate import simulate
from mrsolve.recon.commands import parse_slices, reconstruct_file

TINY = {"size": 32, "n_blades": 6, "n_lines": 12, "n_coils": 2, "noise": 0.01}


@pytest.fixture(scope="module")
def exam():
    return simulate_exam(n_slices=3, seed=5, **TINY)


def test_multi_slice_file_gives_the_single_slice_images(exam, tmp_path):
    multi = tmp_path / "multi.h5"
    write_exam(multi, [s[0] for s in exam.slices])
    assert list_slices(multi) == [0, 1, 2]
    out = tmp_path / "multi_out.h5"
    rec = reconstruct_file(multi, out, "gridding")
    assert rec.image.shape == (3, 32, 32)
    written = read_result(out)
    assert written.axes == ("slice", "y", "x") and written.slices == (0, 1, 2)
    with h5py.File(out) as f:
        assert list(f.attrs["axes"]) == ["slice", "y", "x"]
    for i, averages in enumerate(exam.slices):
        single = tmp_path / f"single{i}.h5"
        write_ismrmrd(single, averages[0])
        alone = reconstruct_file(single, tmp_path / f"out{i}.h5", "gridding")
        assert alone.image.shape == (32, 32)  # a single-slice file keeps the 2D layout
        torch.testing.assert_close(written.image[i], alone.image, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(read_ismrmrd(multi, slice=i).kspace, averages[0].kspace)
    # different slices really differ (different phantoms), so the comparison can fail
    assert (written.image[0] - written.image[1]).abs().max() > 0.1 * written.image.abs().max()


def test_slice_subset(exam, tmp_path):
    multi = tmp_path / "multi.h5"
    write_exam(multi, [s[0] for s in exam.slices])
    assert parse_slices("0,2-2") == [0, 2]
    sub = reconstruct_file(multi, tmp_path / "sub.h5", "gridding", slices=parse_slices("2,0"))
    full = reconstruct_file(multi, tmp_path / "full.h5", "gridding")
    assert sub.slices == (0, 2)
    torch.testing.assert_close(sub.image, full.image[[0, 2]])
    with pytest.raises(ValueError, match=r"slices \[7\]"):
        read_slices(multi, [7])


@pytest.mark.parametrize("text", ["a", "3-1", "-2", "1,,2"])
def test_parse_slices_rejects(text):
    with pytest.raises(ValueError, match="slices"):
        parse_slices(text)


def test_averages_are_combined_by_their_mean(tmp_path):
    a = simulate(seed=1, **TINY).scan
    b = simulate(seed=2, **TINY).scan  # another noise draw (and phantom): the mean is checkable
    path = tmp_path / "avg.h5"
    write_exam(path, [[a, b]])
    got = read_ismrmrd(path)
    torch.testing.assert_close(got.kspace, (a.kspace + b.kspace) / 2, rtol=1e-5, atol=1e-6)
    with h5py.File(path) as f:
        averages = f["dataset"]["data"]["head"]["idx"]["average"]
        assert set(averages.tolist()) == {0, 1}


def test_echoes_read_with_their_own_te(tmp_path):
    opts = {**TINY, "sequence": "gradient_echo"}
    echoes = [simulate(seed=3, te_s=te, **opts).scan for te in (0.0012, 0.0031)]
    scan = concat_echoes(echoes)
    path = tmp_path / "echo.h5"
    write_ismrmrd(path, scan)
    got = read_ismrmrd(path)
    assert got.n_echoes == 2 and got.echo.tolist() == [0] * 6 + [1] * 6
    assert got.echo_te_s == pytest.approx((0.0012, 0.0031))
    u = np.arange(got.n_readout)
    for e, te in enumerate((0.0012, 0.0031)):
        expected = te + (u - got.center_sample) * got.dwell_s  # gradient-echo timing
        np.testing.assert_allclose(
            got.times[got.echo == e][:, 3].numpy(), np.tile(expected, (6, 1)), atol=1e-7
        )
    torch.testing.assert_close(got.kspace, scan.kspace)
    with h5py.File(path) as f:
        assert set(f["dataset"]["data"]["head"]["idx"]["contrast"].tolist()) == {0, 1}


def test_multi_echo_gridding_gets_an_echo_axis(tmp_path):
    sim = simulate_exam(
        n_slices=1, echo_times_s=[0.0012, 0.0031], seed=2, sequence="gradient_echo", **TINY
    )
    path = tmp_path / "e.h5"
    write_exam(path, [sim.slices[0][0]])
    rec = reconstruct_file(path, tmp_path / "o.h5", "gridding")
    assert read_result(tmp_path / "o.h5").axes == ("echo", "y", "x")
    assert rec.image.shape == (2, 32, 32)


def test_axes_validation_and_stacking(tmp_path):
    image = torch.ones(2, 4, 4, dtype=torch.complex64)
    with pytest.raises(ValueError, match="axes"):
        write_result(
            tmp_path / "x.h5", Reconstruction(image=image, axes=("echo", "slice", "y", "x"))
        )
    with pytest.raises(ValueError, match="axes"):
        write_result(tmp_path / "x.h5", Reconstruction(image=image, axes=("time", "y", "x")))
    recs = [
        Reconstruction(
            image=image * k,
            field_map_hz=torch.full((4, 4), float(k)),
            field_map_std_hz=torch.full((4, 4), 10.0 * k),
            fat_fraction_std=torch.full((2, 4, 4), 0.1 * k),
        )
        for k in (1, 2)
    ]
    stacked = stack_results(recs, "slice", [4, 9])
    assert stacked.axes == ("slice", "frame", "y", "x") and stacked.slices == (4, 9)
    write_result(tmp_path / "s.h5", stacked)
    back = read_result(tmp_path / "s.h5")
    assert back.image.shape == (2, 2, 4, 4) and back.field_map_hz.shape == (2, 4, 4)
    assert back.field_map_hz[1, 0, 0] == 2 and back.image[1, 0, 0, 0] == 2
    assert back.field_map_std_hz.shape == (2, 4, 4) and back.field_map_std_hz[1, 0, 0] == 20
    assert back.fat_fraction_std.shape == (2, 2, 4, 4)
    with pytest.raises(ValueError, match="before"):
        stack_results([stacked], "echo")
    assert not list(tmp_path.glob(".*.tmp"))
