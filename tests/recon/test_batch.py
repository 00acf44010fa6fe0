"""``recon batch``: one task per slice on a process pool or Ray, manifest, retries, reruns."""

import json
import sys
import time
import types

import h5py
import numpy as np
import pytest
import torch

from mrsolve.data.exam import simulate_exam
from mrsolve.data.ismrmrd_io import write_exam
from mrsolve.data.results import read_result
from mrsolve.recon.batch import ProcessExecutor, _batch_key, _verified, run_batch
from mrsolve.recon.cli import main
from mrsolve.recon.commands import reconstruct_file

TINY = {"size": 32, "n_blades": 6, "n_lines": 12, "n_coils": 2, "noise": 0.01}


def recon(*args):
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    return exit_info.value.code


def _manifest(folder):
    return [json.loads(line) for line in (folder / "manifest.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    """A 2-slice exam, a 1-slice exam, a file that is not HDF5, and a 2-slice exam whose
    slice 1 holds NaN samples (planned fine, fails in its task)."""
    folder = tmp_path_factory.mktemp("batch_in")
    sim = simulate_exam(n_slices=2, seed=11, **TINY)
    two, one, bad, nan = (folder / f"{n}.h5" for n in ("two", "one", "bad", "nan"))
    write_exam(two, [s[0] for s in sim.slices])
    write_exam(one, [sim.slices[1][0]])
    write_exam(nan, [s[0] for s in sim.slices])
    with h5py.File(nan, "a") as f:
        rows = f["dataset"]["data"][()]
        hit = np.flatnonzero(rows["head"]["idx"]["slice"] == 1)[0]
        rows[hit]["data"][0] = np.nan
        f["dataset"]["data"][...] = rows
    bad.write_text("not an ISMRMRD file")
    reference = reconstruct_file(two, folder / "reference.h5", "gridding")  # independent path
    return {"two": two, "one": one, "bad": bad, "nan": nan, "reference": reference}


def _check_outputs(out, inputs, records):
    two = read_result(out / "two.h5")
    assert two.axes == ("slice", "y", "x") and two.slices == (0, 1)
    torch.testing.assert_close(two.image, inputs["reference"].image, rtol=1e-4, atol=1e-5)
    one = read_result(out / "one.h5")
    assert one.image.shape == (32, 32)  # single-slice file: 2D, like `recon run`
    torch.testing.assert_close(one.image, two.image[1], rtol=1e-4, atol=1e-5)
    final = {(r["input"].rsplit("/", 1)[-1], r["slice"]): r for r in records}
    assert final["bad.h5", None]["status"] == "failed" and "HDF5" in final["bad.h5", None]["error"]
    nan_fail = final["nan.h5", 1]
    assert (
        nan_fail["status"] == "failed"
        and nan_fail["attempt"] == 2
        and "finite" in nan_fail["error"]
    )
    assert final["nan.h5", 0]["status"] == "done"  # the other slice's result is kept
    assert (out / ".parts" / "nan.slice0000.h5").is_file() and not (out / "nan.h5").exists()
    for r in records:
        assert set(r) >= {"input", "slice", "status", "wall_s", "device", "error"}


def test_local_batch_kill_retry_failures_and_rerun(inputs, tmp_path):
    out = tmp_path / "local"
    files = [inputs[k] for k in ("two", "one", "bad", "nan")]
    report = run_batch(
        files, out, "gridding", executor="local", workers=1, fail_first=[("two", 1)], console=None
    )
    records = _manifest(out)
    assert records == report.records
    retries = [r for r in records if r["status"] == "retry"]
    assert {(r["input"].rsplit("/", 1)[-1], r["slice"], r["attempt"]) for r in retries} >= {
        ("two.h5", 1, 1),
        ("nan.h5", 1, 1),
    }
    assert any(r["status"] == "done" and r["slice"] == 1 and r["attempt"] == 2 for r in records)
    _check_outputs(out, inputs, records)
    stamp = (out / "two.h5").stat().st_mtime_ns
    again = run_batch(files[:2], out, "gridding", executor="local", workers=1)
    assert {r["status"] for r in again.records} == {"skipped"} and len(again.records) == 3
    assert (out / "two.h5").stat().st_mtime_ns == stamp
    # results of other options, or of an input that changed since, are not verified
    sha = read_result(out / "two.h5").input_sha256
    key = _batch_key("gridding", {})
    assert _verified(out / "two.h5", sha, key, [0, 1])
    assert not _verified(out / "two.h5", sha, _batch_key("gridding", {"dcf": "pipe-menon"}), [0])
    assert not _verified(out / "two.h5", "0" * 64, key, [0])
    assert not _verified(out / "two.h5", sha, key, [2])


def test_ray_batch_matches_local_and_survives_a_killed_worker(
    inputs, tmp_path, ray_cluster, capsys
):
    out = tmp_path / "ray"
    files = [inputs[k] for k in ("two", "one", "bad", "nan")]
    report = run_batch(files, out, "gridding", executor="ray", fail_first=[("one", 0)])
    records = _manifest(out)
    killed = [r for r in records if r["status"] == "retry" and r["input"].endswith("one.h5")]
    assert len(killed) == 1 and "worker" in killed[0]["error"]
    assert any(
        r["input"].endswith("one.h5") and r["status"] == "done" and r["attempt"] == 2
        for r in records
    )
    _check_outputs(out, inputs, report.records)
    # the CLI: a second run over the good files does no work and says so
    capsys.readouterr()
    assert recon("batch", *files[:2], "-o", out, "--method", "gridding", "--executor", "ray") == 0
    shown = capsys.readouterr().out
    assert "0 slice(s) reconstructed" in shown and "3 already done" in shown
    assert recon("batch", files[0], "-o", out, "--executor", "nope", "--method", "gridding") == 2


def test_process_executor_waits_for_num_returns_tasks():
    # time.sleep: a stdlib callable, picklable into the forkserver workers
    with ProcessExecutor(3) as pool:
        handles = [pool.submit(time.sleep, seconds) for seconds in (0.0, 0.3, 3.0)]
        done, pending = pool.wait(handles, num_returns=2, timeout=60.0)
        assert done == handles[:2] and pending == handles[2:]
        assert [pool.result(h) for h in done] == [None, None]
        with pytest.raises(ValueError, match="num_returns"):
            pool.wait(handles, num_returns=0)


def test_view_needs_the_gui_extra(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "napari", None)  # import napari -> ImportError
    assert recon("view", tmp_path / "x.h5") == 2
    err = capsys.readouterr().err.strip()
    assert err == "recon: error: recon view needs the gui extra: pip install 'mrsolve[gui]'"
    seen = []
    monkeypatch.setitem(sys.modules, "napari", types.ModuleType("napari"))
    launch = types.ModuleType("mrsolve.gui.launch")
    launch.view = seen.append
    monkeypatch.setitem(sys.modules, "mrsolve.gui.launch", launch)
    assert recon("view", tmp_path / "x.h5") == 0
    assert seen == [tmp_path / "x.h5"]
