"""The ``recon`` command line, end to end on tiny simulated files, and every bad input."""

import json

import h5py
import numpy as np
import pytest

from mrsolve.data import damaged
from mrsolve.data.results import read_result, read_truth
from mrsolve.recon import metrics
from mrsolve.recon.cli import main

TINY = ["--size", "32", "--blades", "6", "--lines", "12", "--coils", "2", "--seed", "3"]


def recon(*args):
    """Run the CLI in-process; return (exit code, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return exit_info.value.code


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    raw, truth = folder / "raw.h5", folder / "truth.h5"
    assert recon("simulate", raw, "--truth", truth, *TINY, "--max-offres-hz", "0", "--no-fat") == 0
    return raw, truth


def _one_error_line(capsys, *needles):
    # progress bars (stderr) of the successful commands before the failing one left out
    err = "\n".join(line for line in capsys.readouterr().err.splitlines() if "━" not in line)
    err = err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("recon: error:")
    for needle in needles:
        assert needle in err, err
    return err


def test_simulate_run_compare_info(files, tmp_path, capsys):
    raw, truth = files
    out = tmp_path / "grid.h5"
    assert recon("run", raw, "-o", out, "--method", "gridding") == 0
    rec, ref = read_result(out), read_truth(truth)
    assert rec.method == "gridding" and rec.image.shape == (32, 32)
    assert rec.input_sha256 and rec.runtime_s > 0
    capsys.readouterr()
    assert recon("compare", out, truth, "--json") == 0
    scores = json.loads(capsys.readouterr().out)
    assert scores["nrmse"] == pytest.approx(metrics.nrmse(rec.image, ref.image))
    assert scores["hfen"] == pytest.approx(metrics.hfen(rec.image, ref.image))
    assert scores["nrmse"] < 0.2  # on-resonance, no fat: gridding reproduces the object
    assert recon("info", raw) == 0
    shown = capsys.readouterr().out
    assert "6 x 12 x 64" in shown and "coils" in shown
    assert recon("info", out) == 0
    assert "gridding" in capsys.readouterr().out


def test_config_file_options_reach_the_method(files, tmp_path, capsys):
    raw, _ = files
    cfg = tmp_path / "recon.toml"
    cfg.write_text('[gridding]\ndcf = "pipe-menon"\n')
    out = tmp_path / "g.h5"
    assert recon("run", raw, "-o", out, "--method", "gridding", "--config", cfg) == 0
    config = read_result(out).config
    assert config["dcf"] == "pipe-menon" and config["coil_maps"] == "espirit"  # the default
    assert read_result(out).image.imag.abs().max() > 0  # SENSE-1 keeps the object's phase
    cfg.write_text('[gridding]\ncoil_maps = "rss"\n')
    rss = tmp_path / "rss.h5"
    assert recon("run", raw, "-o", rss, "--method", "gridding", "--config", cfg) == 0
    image = read_result(rss).image
    assert image.imag.abs().max() == 0 and image.real.min() >= 0  # a magnitude: RSS
    cfg.write_text("[gridding]\nbogus = 1\n")
    assert recon("run", raw, "-o", tmp_path / "h.h5", "--method", "gridding", "--config", cfg) == 2
    _one_error_line(capsys, "bogus")
    assert not (tmp_path / "h.h5").exists()


@pytest.mark.parametrize(
    ("case", "needles"),
    [
        ("missing", ["missing.h5"]),
        ("text", ["HDF5"]),
        ("plain_hdf5", ["ISMRMRD"]),
        ("traj_dims", ["trajectory"]),
        ("nan", ["finite"]),
        ("empty", ["acquisitions"]),
        ("blades", ["blades"]),
        ("method", ["method", "magic"]),
        ("spectral_flag", ["--preset", "spectral"]),
        ("unwritable", ["does not exist"]),
        ("field_map_missing", ["field-map"]),
    ],
)
def test_bad_input_one_line_exit_2_no_output(case, needles, files, tmp_path, capsys):
    raw, _ = files
    src, out, method = tmp_path / f"{case}.h5", tmp_path / "out.h5", "gridding"
    if case == "missing":
        src = tmp_path / "missing.h5"
    elif case == "text":
        src.write_text("this is not HDF5")
    elif case == "plain_hdf5":
        with h5py.File(src, "w") as f:
            f["x"] = np.zeros(3)
    elif case == "traj_dims":
        damaged.rewrite(raw, src, damaged.one_dim_trajectory)
    elif case == "nan":
        damaged.rewrite(raw, src, damaged.nan_sample)
    elif case == "empty":
        damaged.rewrite(raw, src, lambda a: None)
    elif case == "blades":
        damaged.rewrite(raw, src, damaged.drop_blade)
    else:
        src = raw
        if case == "method":
            method = "magic"
        elif case == "spectral_flag":
            method = "gridding --preset static"
        elif case == "unwritable":
            out = tmp_path / "no" / "such" / "folder" / "out.h5"
        else:
            method = "conjugate-phase"
    before = src.read_bytes() if src.exists() else None
    assert recon("run", src, "-o", out, "--method", *method.split()) == 2
    _one_error_line(capsys, *needles)
    assert not out.exists()
    assert list(tmp_path.glob(".*.tmp")) == []
    if before is not None:
        assert src.read_bytes() == before


def test_cli_usage_error_is_one_line(capsys):
    assert recon("run") == 2
    _one_error_line(capsys)
    assert recon("frobnicate") == 2
    _one_error_line(capsys)


def test_simulate_bad_option_writes_nothing(tmp_path, capsys):
    raw, truth = tmp_path / "r.h5", tmp_path / "t.h5"
    assert recon("simulate", raw, "--truth", truth, "--size", "0") == 2
    _one_error_line(capsys, "size")
    assert not raw.exists() and not truth.exists()


def test_simulate_and_run_a_multi_slice_two_echo_exam(tmp_path, capsys):
    raw, truth, out = tmp_path / "exam.h5", tmp_path / "exam_truth.h5", tmp_path / "o.h5"
    exam = ["--n-slices", "2", "--echo-times-ms", "1.15,2.3", "--sequence", "gradient-echo"]
    assert recon("simulate", raw, "--truth", truth, *TINY, *exam) == 0
    assert read_truth(truth).axes == ("slice", "y", "x")
    assert recon("run", raw, "-o", out, "--method", "gridding", "--slices", "1") == 0
    rec = read_result(out)
    assert rec.axes == ("slice", "echo", "y", "x") and rec.image.shape == (1, 2, 32, 32)
    assert rec.slices == (1,)
    capsys.readouterr()
    assert recon("run", raw, "-o", tmp_path / "p.h5", "--method", "gridding", "--slices", "5") == 2
    _one_error_line(capsys, "slices [5]")
    assert recon("run", raw, "-o", tmp_path / "p.h5", "--method", "gridding", "--slices", "x") == 2
    _one_error_line(capsys, "--slices")
    assert (
        recon("simulate", tmp_path / "r.h5", "--truth", tmp_path / "t.h5", "--echo-times-ms", "a")
        == 2
    )
    _one_error_line(capsys, "--echo-times-ms")
    assert not (tmp_path / "p.h5").exists() and not (tmp_path / "r.h5").exists()


def test_spectral_options_reach_the_stage_as_typed_config(files, tmp_path, capsys):
    raw, _ = files
    cfg = tmp_path / "recon.toml"
    cfg.write_text(
        "[spectral]\ntv_f = 0.05\n[spectral.free]\ntv = 0.02\n[spectral.frequency]\nn_bins = 4\n"
    )
    out = tmp_path / "s.h5"
    assert recon("run", raw, "-o", out, "--config", cfg, "--iterations", "3", "--seed", "4") == 0
    config = read_result(out).config
    assert config["free"]["tv"] == 0.02 and config["free"]["tv_f"] == 0.05
    assert config["free"]["iterations"] == 3 and config["report"]["free"]["iterations"] == 3
    assert config["frequency"]["n_bins"] == 4 and config["seed"] == 4
    assert config["preset"] == "static" and config["method"] == "spectral"
    for table, needles in [
        ("[spectral]\nbogus = 1\n", ["bogus"]),
        ("[spectral.free]\ntv_x = 1.0\n", ["free", "tv_x"]),
        ('[spectral.free]\ntv = "high"\n', ["free.tv", "float", "high"]),
        ('[spectral]\npreset = "nope"\n', ["preset", "nope"]),
    ]:
        cfg.write_text(table)
        bad = tmp_path / "bad.h5"
        assert recon("run", raw, "-o", bad, "--config", cfg) == 2
        _one_error_line(capsys, *needles)
        assert not bad.exists()
