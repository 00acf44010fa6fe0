"""``recon batch`` under ``kill -KILL`` and Ctrl-C, as real processes (issue 20, items 2-3).

The batch runs in its own session with a marker in its environment; every process it
starts (forkserver, pool workers, resource tracker) inherits the marker, which is how
the test finds what is left once the driver is gone.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import pytest

from mrsolve.data.ismrmrd_io import write_ismrmrd
from mrsolve.data.simulate import simulate
from mrsolve.distributed.executors import Executor, SimulatedExecutor
from mrsolve.recon.batch import SliceTask, run_batch, run_slice_task

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux /proc")

ROOT = Path(__file__).resolve().parents[2]
N_INPUTS = 40  # about 0.3 s of gridding each on one worker: the queue outlasts the test


@pytest.fixture(scope="module")
def many(tmp_path_factory):
    folder = tmp_path_factory.mktemp("many")
    first = folder / "in00.h5"
    sim = simulate(size=24, n_blades=4, n_lines=8, n_coils=2, seed=1)
    write_ismrmrd(first, sim.scan)
    for i in range(1, N_INPUTS):
        shutil.copy(first, folder / f"in{i:02d}.h5")
    return sorted(folder.glob("in*.h5"))


def _marked(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment holds ``marker``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(") ", 1)[1][0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            pids.append(int(entry))
    return pids


def _start(inputs, out: Path, marker: str) -> subprocess.Popen:
    command = [sys.executable, "-c", "from mrsolve.recon.cli import main; main()", "batch"]
    command += [*map(str, inputs), "-o", str(out), "--method", "gridding", "--workers", "1"]
    return subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "MRSOLVE_TEST_MARKER": marker},
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def _records(out: Path) -> list[dict]:
    path = out / "manifest.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _wait_for_done(proc, out: Path, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if any(r["status"] == "done" for r in _records(out)):
            return
        assert proc.poll() is None, proc.stderr.read().decode()
        time.sleep(0.1)
    raise AssertionError("no slice finished in time")


def _gone(marker: str, timeout: float) -> list[int]:
    end = time.monotonic() + timeout
    while (left := _marked(marker)) and time.monotonic() < end:
        time.sleep(0.1)
    return left


def _cleanup(marker: str) -> None:
    for pid in _marked(marker):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_kill_of_the_driver_takes_its_workers_and_every_finished_slice_is_recorded(many, tmp_path):
    marker, out = uuid.uuid4().hex, tmp_path / "out"
    proc = _start(many, out, marker)
    try:
        _wait_for_done(proc, out)
        assert len(_marked(marker)) >= 3  # driver, forkserver, worker (and resource tracker)
        proc.kill()
        proc.wait(timeout=10)
        left = _gone(marker, timeout=10.0)
        assert not left, f"processes left after kill -KILL of the driver: {left}"
    finally:
        _cleanup(marker)
    done = {r["output"] for r in _records(out) if r["status"] == "done"}
    parts = {str(p) for p in (out / ".parts").glob("*.h5")}
    assembled = {r["input"] for r in _records(out) if r["status"] == "assembled"}
    assert parts <= done  # every part a worker finished has its manifest line
    assert len(done) == len(parts) + len(assembled) < N_INPUTS


def test_ctrl_c_stops_at_once_records_what_finished_and_exits_130(many, tmp_path):
    marker, out = uuid.uuid4().hex, tmp_path / "out"
    proc = _start(many, out, marker)
    try:
        _wait_for_done(proc, out)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does
        start = time.monotonic()
        code = proc.wait(timeout=30)
        took = time.monotonic() - start
        left = _gone(marker, timeout=5.0)
    finally:
        _cleanup(marker)
    assert code == 130, proc.stderr.read().decode()
    assert took < 5.0, f"the driver ran on for {took:.1f} s after Ctrl-C"
    assert not left
    records = _records(out)
    done = [r for r in records if r["status"] == "done"]
    stopped = [r for r in records if r["status"] == "interrupted"]
    assert done and stopped and len(done) + len(stopped) == N_INPUTS
    # a rerun finishes exactly what was interrupted
    assert {r["input"] for r in stopped}.isdisjoint(r["input"] for r in done)


def test_a_worker_records_the_slice_it_finished(many, tmp_path):
    manifest = tmp_path / "manifest.jsonl"
    task = SliceTask(str(many[0]), 0, str(tmp_path / "p.h5"), "sha", "gridding", {}, "key")
    task.manifest, task.attempt = str(manifest), 2
    result = run_slice_task(task)
    assert result["status"] == "done" and result["recorded"]
    (line,) = manifest.read_text().splitlines()
    record = json.loads(line)
    assert record["status"] == "done" and record["attempt"] == 2
    assert record["output"] == task.part and Path(task.part).is_file()


class _CtrlCAsTheSecondFinishes(Executor):
    """Runs a task when the driver waits. The first is reported; the second finishes (its
    worker records it in the manifest, or cannot) and Ctrl-C arrives before the driver
    hears of it: the race of a slice recorded both "done" and "interrupted"."""

    def __init__(self, worker_records: bool) -> None:
        self.worker_records = worker_records
        self.tasks, self.finished = [], {}

    def submit(self, fn, *args, delay=0.0, fail=False):
        self.tasks.append((fn, args))
        return len(self.tasks) - 1

    def wait(self, handles, num_returns=1, timeout=None):
        if timeout != 0 and len(self.finished) < 2:
            h = len(self.finished)
            fn, (task,) = self.tasks[h]
            if h == 1 and not self.worker_records:
                task = replace(task, manifest=None)  # e.g. a Ray worker without OUT_DIR
            self.finished[h] = fn(task)
            if h == 1:
                os.kill(os.getpid(), signal.SIGINT)
                return [], list(handles)
        return [h for h in handles if h in self.finished], [
            h for h in handles if h not in self.finished
        ]

    def result(self, handle):
        return self.finished[handle]

    def cancel(self, handles):
        pass

    def now(self):
        return 0.0

    def shutdown(self):
        pass


@pytest.mark.parametrize("worker_records", [True, False])
def test_a_slice_finishing_as_ctrl_c_comes_is_recorded_once_and_a_rerun_does_the_rest(
    many, tmp_path, worker_records
):
    inputs, out = many[:4], tmp_path / "out"
    report = run_batch(inputs, out, "gridding", executor=_CtrlCAsTheSecondFinishes(worker_records))
    assert report.interrupted
    records = [r for r in _records(out) if r["slice"] is not None]
    status = {r["input"]: r["status"] for r in records}
    assert len(records) == len(status) == len(inputs)  # one line per slice
    assert [status[str(p)] for p in inputs] == ["done", "done", "interrupted", "interrupted"]
    rerun = run_batch(inputs, out, "gridding", executor=SimulatedExecutor())
    assert rerun.count("skipped") == 2 and rerun.count("done") == 2 and not rerun.interrupted
