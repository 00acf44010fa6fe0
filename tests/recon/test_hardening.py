"""Issue 20: checkpoints, bad inputs and the rough edges of the ``recon`` command line.

Each test names the item of the issue it covers; every one failed before the change.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
import pytest
import torch

from mrsolve.data.results import read_result
from mrsolve.data.simulate import SimulationConfig, check_memory, memory_estimate_bytes, simulate
from mrsolve.recon import cli
from mrsolve.recon.cli import main
from mrsolve.recon.methods import METHODS
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral.config import resolve_config

TINY = ["--blades", "6", "--lines", "12", "--coils", "2", "--no-fat", "--max-offres-hz", "0"]


def recon(*args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return exit_info.value.code


def _error(capsys, *needles) -> str:
    """The one error line of a failed command (progress bars of earlier commands left out)."""
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("recon: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err, err
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Two 32 px scans of one geometry (other seeds), a 24 px one, and a dynamic one."""
    folder = tmp_path_factory.mktemp("hardening")
    out = {}
    for name, extra in {
        "a": ["--size", "32", "--seed", "1"],
        "b": ["--size", "32", "--seed", "2"],
        "small": ["--size", "24", "--seed", "1"],
        "dyn": ["--size", "24", "--seed", "1", "--frames", "2"],
    }.items():
        raw, truth = folder / f"{name}.h5", folder / f"{name}_truth.h5"
        assert recon("simulate", raw, "--truth", truth, *TINY, *extra) == 0
        out[name], out[f"{name}_truth"] = raw, truth
    return out


# -- 1, 4, 6: checkpoints -------------------------------------------------------------


def test_resume_refuses_a_checkpoint_of_another_scan_or_other_options(scans, tmp_path, capsys):
    ckpt, out = tmp_path / "run.ckpt", tmp_path / "out.h5"
    run = ["run", scans["a"], "-o", out, "--iterations", "20", "--checkpoint", ckpt]
    assert recon(*run) == 0
    capsys.readouterr()
    # the same geometry, other data: the input SHA-256 differs
    assert (
        recon(
            "run",
            scans["b"],
            "-o",
            tmp_path / "b.h5",
            "--iterations",
            "20",
            "--checkpoint",
            ckpt,
            "--resume",
        )
        == 2
    )
    _error(capsys, "another run", "SHA-256")
    # another size: the geometry says what
    assert (
        recon(
            "run",
            scans["small"],
            "-o",
            tmp_path / "s.h5",
            "--iterations",
            "20",
            "--checkpoint",
            ckpt,
            "--resume",
        )
        == 2
    )
    _error(capsys, "matrix size '32 x 32' vs '24 x 24'")
    # the same scan with another option
    assert recon(*run, "--resume", "--seed", "5") == 2
    _error(capsys, "option seed 0 vs 5")
    assert not (tmp_path / "b.h5").exists() and not (tmp_path / "s.h5").exists()
    assert recon(*run, "--resume") == 0  # the matching run resumes


def test_a_corrupt_or_crafted_checkpoint_fails_in_one_line_and_runs_no_code(
    scans, tmp_path, capsys
):
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 this is no checkpoint")
    args = ["run", scans["a"], "-o", tmp_path / "o.h5", "--iterations", "5", "--resume"]
    assert recon(*args, "--checkpoint", corrupt) == 2
    _error(capsys, "corrupt.ckpt", "cannot be read")
    crafted, flag = tmp_path / "crafted.ckpt", tmp_path / "code_ran"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (flag,))

    torch.save({"format": "mrsolve-spectral-checkpoint", "states": Payload()}, crafted)
    assert recon(*args, "--checkpoint", crafted) == 2
    _error(capsys, "crafted.ckpt")
    assert not flag.exists() and not (tmp_path / "o.h5").exists()


def test_an_unwritable_checkpoint_path_fails_before_any_iteration(scans, tmp_path, capsys):
    out = tmp_path / "o.h5"
    missing = tmp_path / "no_such_folder" / "run.ckpt"
    assert recon("run", scans["a"], "-o", out, "--checkpoint", missing) == 2
    err = _error(capsys, "--checkpoint", "no_such_folder")
    assert "━" not in err and not out.exists()
    with pytest.raises(ValueError, match="checkpoint folder"):  # the library checks too
        from mrsolve.recon.spectral.runner import Checkpointer

        Checkpointer(missing)


# -- 5: fat / water coarse levels -------------------------------------------------------


class _Stop(Exception):
    pass


def test_fat_water_coarse_levels_are_checkpointed_and_resume_exactly(tmp_path):
    scan = simulate(size=24, n_blades=6, n_lines=12, n_coils=2, seed=4).scan
    cfg = resolve_config("fatwater", 10, level_iterations=20, levels=2)
    reference = reconstruct_spectral(scan, cfg)
    ckpt = tmp_path / "fw.ckpt"

    def stop_at_15(step, total, **_):
        if step == 15:  # inside the first (coarse) level of 20 steps
            raise _Stop

    with pytest.raises(_Stop):
        reconstruct_spectral(scan, cfg, callback=stop_at_15, checkpoint=ckpt)
    states = torch.load(ckpt, weights_only=True)["states"]
    assert states["waterfat_level1"]["done"] == 10  # saved during the coarse level
    resumed = reconstruct_spectral(scan, cfg, checkpoint=ckpt, resume=True)
    for name in ("water", "fat", "field_map_hz"):
        torch.testing.assert_close(getattr(resumed, name), getattr(reference, name))


# -- 7, 8, 9: bad inputs ------------------------------------------------------------


def test_a_simulation_too_large_for_memory_is_refused_before_allocating(tmp_path, capsys):
    assert (
        recon("simulate", tmp_path / "r.h5", "--truth", tmp_path / "t.h5", "--size", "100000") == 2
    )
    _error(capsys, "--size 100000", "GB", "available")
    assert not list(tmp_path.iterdir())
    with pytest.raises(ValueError, match="needs about"):
        check_memory(SimulationConfig(size=64), available=10**6)
    # the estimate covers at least the arrays the simulation returns
    sim = simulate(size=32, n_blades=4, n_lines=8, n_coils=3)
    held = sum(
        t.numel() * t.element_size()
        for t in (sim.scan.kspace, sim.scan.traj, sim.scan.times, sim.truth.coil_maps)
    )
    assert memory_estimate_bytes(sim.config) >= held


def _zero_length(src, dst):
    with (
        ismrmrd.Dataset(str(src), "dataset", create_if_needed=False) as a,
        ismrmrd.Dataset(str(dst), "dataset", create_if_needed=True) as b,
    ):
        b.write_xml_header(a.read_xml_header())
        for i in range(a.number_of_acquisitions()):
            acq = a.read_acquisition(i)
            new = ismrmrd.Acquisition.from_array(
                np.zeros((acq.active_channels, 0), np.complex64),
                np.zeros((0, acq.trajectory_dimensions), np.float32),
            )
            for name in ("sample_time_us", "center_sample", "flags"):
                setattr(new, name, getattr(acq, name))
            new.idx.set = acq.idx.set
            new.idx.kspace_encode_step_1 = acq.idx.kspace_encode_step_1
            b.append_acquisition(new)


@pytest.mark.parametrize("case", ["zero_length", "truncated", "folder"])
def test_damaged_inputs_name_the_file_in_one_line(case, scans, tmp_path, capsys):
    bad = tmp_path / f"{case}.h5"
    if case == "zero_length":
        _zero_length(scans["a"], bad)
        needles = ["acquisitions must hold samples"]
    elif case == "truncated":
        bad.write_bytes(scans["a"].read_bytes()[:20000])
        needles = [str(bad), "damaged HDF5"]
    else:
        bad.mkdir()
        needles = [str(bad), "is a folder"]
    for command in (["run", bad, "-o", tmp_path / "o.h5"], ["info", bad]):
        assert recon(*command) == 2
        _error(capsys, *needles)
    assert not (tmp_path / "o.h5").exists()


def test_batch_with_a_method_that_needs_a_field_map_says_batch_cannot(scans, tmp_path, capsys):
    assert recon("batch", scans["a"], "-o", tmp_path / "out", "--method", "conjugate-phase") == 2
    _error(capsys, "recon batch does not take", "recon run --field-map")


# -- 10, 11: silent surprises ---------------------------------------------------------


def test_preset_and_frames_mismatch_warn_and_compare_accepts_both(scans, tmp_path, capsys):
    static_of_dynamic = tmp_path / "sd.h5"
    assert recon("run", scans["dyn"], "-o", static_of_dynamic, "--iterations", "5") == 0
    assert "2 frames" in capsys.readouterr().err
    assert recon("compare", static_of_dynamic, scans["dyn_truth"], "--json") == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0 < scores["nrmse"] < 2
    dynamic_of_static = tmp_path / "ds.h5"
    assert (
        recon(
            "run",
            scans["small"],
            "-o",
            dynamic_of_static,
            "--preset",
            "dynamic",
            "--iterations",
            "5",
        )
        == 0
    )
    assert "one frame" in capsys.readouterr().err
    assert read_result(dynamic_of_static).image.shape == (1, 24, 24)
    assert recon("compare", dynamic_of_static, scans["small_truth"], "--json") == 0
    assert 0 < json.loads(capsys.readouterr().out)["nrmse"] < 2


def test_ignored_field_map_warns_and_a_misspelt_table_is_an_error(scans, tmp_path, capsys):
    out = tmp_path / "g.h5"
    args = ["run", scans["a"], "-o", out, "--method", "gridding"]
    assert recon(*args, "--field-map", scans["a_truth"]) == 0
    assert "--field-map is ignored by method 'gridding'" in capsys.readouterr().err
    config = tmp_path / "recon.toml"
    config.write_text("[conjugate_phase]\nn_segments = 4\n")
    assert recon(*args, "--config", config) == 2
    _error(capsys, "[conjugate_phase]", "did you mean [conjugate-phase]")


# -- 12, 13, 14, 15: the command line's rough edges -------------------------------------


def test_help_imports_no_numerical_library():
    code = (
        "import sys; from mrsolve.recon import cli\n"
        "for c in [[], ['run'], ['batch'], ['simulate'], ['compare'], ['info'], ['demo']]:\n"
        "    cli.app(c + ['--help'], prog_name='recon', standalone_mode=False)\n"
        "print(sorted({'torch', 'sigpy', 'numba', 'scipy', 'h5py'} & set(sys.modules)))"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_method_names_of_the_help_are_the_registry():
    assert set(cli.METHOD_NAMES) == set(METHODS) and cli.DEFAULT_METHOD in METHODS


def test_progress_goes_to_stderr_and_stdout_holds_results_only(scans, tmp_path, capsys):
    assert recon("run", scans["a"], "-o", tmp_path / "o.h5", "--iterations", "5") == 0
    captured = capsys.readouterr()
    assert "━" in captured.err and "━" not in captured.out
    assert captured.out.startswith("wrote ")


def test_help_text_has_plain_metavars_shown_defaults_and_cli_names(tmp_path, capsys):
    texts = {}
    for command in ("run", "batch", "simulate", "compare"):
        assert recon(command, "--help") == 0
        texts[command] = capsys.readouterr().out
    for text in texts.values():
        assert "<bool>" not in text and "<list[Path]>" not in text and "{" not in text
    assert "Usage: recon run [OPTIONS] RAW" in texts["run"]
    for command in ("run", "batch"):
        assert "[default: (static)]" in texts[command]
        assert "[default: (the preset's)]" in texts[command]
    assert "--rotation" in texts["simulate"] and "--shift" in texts["simulate"]
    assert "--motion" not in texts["simulate"]
    raw, truth = tmp_path / "r.h5", tmp_path / "t.h5"
    assert recon("simulate", raw, "--truth", truth, "--size", "8") == 2
    line = _error(capsys, "--lines", "--size")
    assert "n_lines" not in line and "matrix_size" not in line
    assert recon("simulate", raw, "--truth", truth, "--sequence", "gradient_echo") == 2
    _error(capsys, "'spin-echo', 'gradient-echo'")


def test_compare_table_caption_and_full_headers_and_info_of_a_truth(scans, tmp_path, capsys):
    out = tmp_path / "a_long_reconstruction_name_of_forty_characters.h5"
    assert recon("run", scans["a"], "-o", out, "--method", "gridding") == 0
    capsys.readouterr()
    assert recon("compare", out, scans["a_truth"]) == 0
    shown = capsys.readouterr().out
    assert "(zero)" not in shown  # no all-zero column without fat / field map
    assert out.name in shown and "…" not in shown
    assert recon("info", scans["a_truth"]) == 0
    shown = capsys.readouterr().out
    assert "ground truth" in shown and "reconstruction" not in shown


def test_run_writes_nothing_on_stdout_but_results_under_a_pipe(scans, tmp_path):
    """A real pipe: stdout of ``recon run`` is one line, parseable by a script."""
    root = Path(__file__).resolve().parents[2]
    command = [
        sys.executable,
        "-c",
        "from mrsolve.recon.cli import main; main()",
        "run",
        str(scans["a"]),
        "-o",
        str(tmp_path / "p.h5"),
        "--method",
        "gridding",
    ]
    done = subprocess.run(
        command, cwd=root, capture_output=True, text=True, env={**os.environ, "COLUMNS": "80"}
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [done.stdout.strip()] and "wrote" in done.stdout
    assert h5py.is_hdf5(tmp_path / "p.h5")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["batch", "{a}", "-o", "{tmp}/bo", "--workers", "0"], "--workers must be >= 1"),
        (["run", "{a}", "-o", "{tmp}/o.h5", "--resume"], "--resume needs --checkpoint"),
    ],
)
def test_found_while_writing_the_reliability_table(args, needle, scans, tmp_path, capsys):
    """--workers 0 ran on every CPU; --resume alone blamed checkpoint=None."""
    filled = [a.format(a=scans["a"], tmp=tmp_path) for a in args]
    assert recon(*filled) == 2
    _error(capsys, needle)
    assert not (tmp_path / "o.h5").exists() and not (tmp_path / "bo").exists()


def test_each_slice_of_a_multi_slice_file_has_its_own_checkpoint(tmp_path, capsys):
    """One file for all slices made a resume continue slice 0 from slice 1's state."""
    raw, truth, out = tmp_path / "exam.h5", tmp_path / "t.h5", tmp_path / "o.h5"
    assert recon("simulate", raw, "--truth", truth, *TINY, "--size", "24", "--n-slices", "2") == 0
    ckpt = tmp_path / "run.ckpt"
    args = ["run", raw, "-o", out, "--iterations", "10", "--checkpoint", ckpt]
    assert recon(*args) == 0
    assert sorted(p.name for p in tmp_path.glob("run*.ckpt")) == [
        "run.slice0000.ckpt",
        "run.slice0001.ckpt",
    ]
    first = read_result(out).image
    assert recon(*args, "--resume") == 0  # both slices resume from their own state
    torch.testing.assert_close(read_result(out).image, first)
