"""``recon batch``: reconstruct many exams, one task per slice, on a process pool or Ray.

Layout of ``OUT_DIR``::

    manifest.jsonl            one JSON line per event: input, slice, status, attempt,
                              wall_s, device, error, output, time
    <input stem>.h5           the assembled output of each input (all its slices)
    .parts/<stem>.slice<k>.h5 per-slice results until their file is assembled

Every file is written atomically. A worker records the slice it finished in the manifest
itself, so a result is recorded even when the driver dies before hearing of it. On Linux
the local pool's workers (and their forkserver) die with the driver (a parent-death
signal), so ``kill -KILL`` of ``recon batch`` leaves no process behind; Ctrl-C stops the
workers within a fraction of a second, records each task in flight once ("done" if it
finished meanwhile, else "interrupted") and the run ends with exit code 130.
A slice counts as done (and is skipped by a rerun)
when its part or its file's assembled output exists, loads, and records the SHA-256
of the current input and the same method and options (``config["batch_key"]``). A
task that raises or whose worker dies is retried once; if it fails again it is
reported (status "failed") and every other result is kept.

Executors: the :class:`~mrsolve.distributed.executors.Executor` interface
(submit / wait / result, with its ``fail=`` fault injection). The local backend is
:class:`ProcessExecutor` below, a ``concurrent.futures`` process pool (the interface
has none: threads would share one interpreter, and a killed task must kill a real
process); "ray" is the :class:`~mrsolve.distributed.ray_executor.RayExecutor`, its
tasks reserving ``gpus_per_task`` GPUs through its ``remote_options``.
"""

from __future__ import annotations

import concurrent.futures as cf
import ctypes
import hashlib
import json
import multiprocessing
import multiprocessing.connection
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path

import h5py
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mrsolve.data.exam import stack_results
from mrsolve.data.files import sha256_file
from mrsolve.data.ismrmrd_io import list_slices, read_ismrmrd
from mrsolve.data.results import read_result, write_result
from mrsolve.distributed.executors import Executor, WorkerFailure, wait_futures
from mrsolve.recon.methods import METHODS, check_request
from mrsolve.solvers.validation import check_choice, resolve_device

EXECUTOR_NAMES = ("local", "ray")
MANIFEST = "manifest.jsonl"
MAX_ATTEMPTS = 2  # a failed or killed task is retried once
POLL_S = 0.25  # the driver sees Ctrl-C within this (it waits on its tasks this long at most)


# -- the task (runs in a worker process) --------------------------------------------------


@dataclass
class SliceTask:
    """One slice of one input; ``part`` is where its result goes."""

    input: str
    slice: int
    part: str
    input_sha256: str
    method: str
    options: dict
    batch_key: str
    device: str = "cpu"
    manifest: str | None = None
    attempt: int = 1


def run_slice_task(task: SliceTask) -> dict:
    """Reconstruct one slice and write its part file; never raises (errors are returned).

    A finished slice is recorded in ``task.manifest`` here, in the worker (``"recorded"``
    in the result says whether that worked; the driver records it otherwise).
    """
    from mrsolve.recon.commands import reconstruct_scan  # commands imports this module

    start = time.perf_counter()
    device = None
    try:
        device = resolve_device(task.device)
        scan = read_ismrmrd(task.input, slice=task.slice)
        rec = reconstruct_scan(scan, task.method, None, device, dict(task.options))
        rec.runtime_s = time.perf_counter() - start
        rec.device = str(device)
        rec.input_sha256 = task.input_sha256
        rec.slices = (task.slice,)
        rec.config = {"method": task.method, "batch_key": task.batch_key, **rec.config}
        write_result(task.part, rec)
        status, error = "done", None
    except Exception as err:  # reported in the manifest, retried by the driver
        status, error = "failed", f"{type(err).__name__}: {err}"
    record = {
        "status": status,
        "error": error,
        "wall_s": time.perf_counter() - start,
        "device": None if device is None else str(device),
        "recorded": False,
    }
    if status == "done" and task.manifest is not None:
        try:
            Manifest(Path(task.manifest)).add(
                input=task.input,
                slice=task.slice,
                attempt=task.attempt,
                output=task.part,
                **{k: record[k] for k in ("status", "error", "wall_s", "device")},
            )
            record["recorded"] = True
        except OSError:  # e.g. a Ray worker on a host without OUT_DIR: the driver records it
            pass
    return record


# -- executors ---------------------------------------------------------------------------


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when its parent dies (``prctl(PR_SET_PDEATHSIG)``);
    elsewhere nothing. A pool worker or forkserver left without its driver would keep
    computing (and holding memory) for a run nobody is waiting for."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    if os.getppid() != parent:  # the parent died before the signal was armed
        os._exit(1)


def _init_worker(threads: int) -> None:
    import torch

    die_with_parent()
    # Ctrl-C in a terminal reaches the whole process group: the driver alone decides
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    torch.set_num_threads(threads)


def _run_or_die(fn: Callable, fail: bool, args: tuple):
    if fail:
        os._exit(1)  # a real worker death, as RayExecutor injects it
    return fn(*args)


class ProcessExecutor(Executor):
    """A ``concurrent.futures`` process pool (forkserver workers) behind the Executor interface.

    A worker that dies breaks the whole pool: every task in flight then fails with
    :class:`WorkerFailure` and the next ``submit`` starts a fresh pool.
    ``delay`` is not supported (batch tasks have no injected stragglers).
    """

    def __init__(self, workers: int, threads_per_worker: int = 1) -> None:
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        self._workers, self._threads = workers, max(1, int(threads_per_worker))
        self._pool = self._new_pool()
        self._t0 = time.perf_counter()

    def _new_pool(self) -> cf.ProcessPoolExecutor:
        # forkserver: workers fork from a server that imported torch and mrsolve once, so a
        # replacement pool (after a worker died) starts in well under a second; plain fork
        # of a process with torch's thread pools running is unsafe, spawn re-imports all.
        context = multiprocessing.get_context("forkserver")
        # the forkserver imports _orphan_guard first: it then dies with this process
        context.set_forkserver_preload(["mrsolve.recon._orphan_guard", "mrsolve.recon.commands"])
        return cf.ProcessPoolExecutor(
            self._workers,
            mp_context=context,
            initializer=_init_worker,
            initargs=(self._threads,),
        )

    def submit(self, fn, *args, delay=0.0, fail=False):
        if delay:
            raise ValueError(f"delay is not supported by ProcessExecutor, got {delay}")
        try:
            return self._pool.submit(_run_or_die, fn, bool(fail), args)
        except BrokenProcessPool:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()
            return self._pool.submit(_run_or_die, fn, bool(fail), args)

    def wait(self, handles, num_returns=1, timeout=None):
        done = wait_futures(handles, num_returns, timeout)
        return [h for h in handles if h in done], [h for h in handles if h not in done]

    def result(self, handle):
        try:
            return handle.result()
        except BrokenProcessPool as err:
            raise WorkerFailure("worker process died") from err
        except Exception as err:
            raise WorkerFailure(f"task raised {type(err).__name__}: {err}") from err

    def cancel(self, handles):
        """Cancel queued tasks; a running one can only be stopped with its process, so
        when any is running, every worker of the pool is killed (the next ``submit``
        starts a fresh pool)."""
        running = [h for h in handles if not h.cancel() and not h.done()]
        if running:
            processes = list(getattr(self._pool, "_processes", {}).values())
            for process in processes:
                process.kill()
            # a killed worker may be inside a write (its manifest line): once its sentinel
            # is ready it is gone, and what it wrote is all it will ever write
            deadline = time.monotonic() + 5.0
            for process in processes:
                left = max(0.0, deadline - time.monotonic())
                multiprocessing.connection.wait([process.sentinel], timeout=left)
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._new_pool()

    def now(self):
        return time.perf_counter() - self._t0

    def shutdown(self):
        self._pool.shutdown(wait=True, cancel_futures=True)


def make_batch_executor(
    executor: str, workers: int | None, address: str | None, gpus_per_task: float
) -> Executor:
    """The executor of ``recon batch`` ("local": process pool, "ray": a Ray cluster)."""
    if executor not in EXECUTOR_NAMES:
        raise ValueError(f"--executor must be one of {list(EXECUTOR_NAMES)}, got {executor!r}")
    if gpus_per_task < 0:
        raise ValueError(f"--gpus-per-task must be >= 0, got {gpus_per_task}")
    if executor == "local":
        if address is not None:
            raise ValueError("--address applies to --executor ray only")
        n = workers or os.cpu_count() or 1
        return ProcessExecutor(n, threads_per_worker=(os.cpu_count() or 1) // n)
    from mrsolve.distributed.ray_executor import RayExecutor

    return RayExecutor(
        address=address,
        num_cpus=None if address else workers,
        remote_options={"num_gpus": gpus_per_task} if gpus_per_task else None,
    )


# -- planning, verification, assembly ------------------------------------------------------


@dataclass
class _File:
    input: Path
    sha: str
    slices: list[int]
    output: Path
    parts: dict[int, Path]
    done: set[int] = field(default_factory=set)


def _batch_key(method: str, options: dict) -> str:
    text = json.dumps({"method": method, "options": options}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _verified(path: Path, sha: str, key: str, slices: Sequence[int]) -> bool:
    """True when ``path`` is a readable result of this input and job covering ``slices``."""
    if not path.is_file():
        return False
    try:
        with h5py.File(path, "r") as f:
            config = json.loads(f.attrs.get("config", "{}"))
            ok = (
                "image" in f
                and f["image"].size > 0
                and f.attrs.get("input_sha256") == sha
                and config.get("batch_key") == key
                and set(slices) <= {int(s) for s in f.attrs.get("slices", ())}
            )
    except (OSError, ValueError, KeyError):
        return False
    return bool(ok)


def _assemble(file: _File, key: str) -> None:
    """Stack the part files of ``file`` into its output (slice axis for multi-slice files)."""
    recs = [read_result(file.parts[s]) for s in file.slices]
    rec = stack_results(recs, "slice", file.slices) if len(file.slices) > 1 else recs[0]
    rec.config = {**recs[0].config, "batch_key": key}
    write_result(file.output, rec)
    for part in file.parts.values():
        part.unlink(missing_ok=True)


class Manifest:
    """Append-only JSON-lines log, shared by the driver and its workers: each line is one
    ``O_APPEND`` write, synced, so lines never interleave and a crash loses nothing."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._start = self.path.stat().st_size if self.path.exists() else 0

    @property
    def records(self) -> list[dict]:
        """The lines written since this Manifest was opened (by anyone), in file order."""
        with open(self.path, "rb") as handle:
            handle.seek(self._start)
            return [json.loads(line) for line in handle.read().splitlines() if line.strip()]

    def add(self, **record) -> dict:
        record = {
            "input": None,
            "slice": None,
            "status": None,
            "attempt": None,
            "wall_s": None,
            "device": None,
            "error": None,
            "output": None,
            **record,
            "time": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, (json.dumps(record) + "\n").encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        return record


@dataclass
class BatchReport:
    """What a batch run did: the manifest records of this run and the assembled outputs."""

    records: list[dict]
    outputs: list[Path]
    manifest: Path
    interrupted: bool = False

    def count(self, status: str) -> int:
        return sum(1 for r in self.records if r["status"] == status and r["slice"] is not None)

    @property
    def failed(self) -> list[dict]:
        return [r for r in self.records if r["status"] == "failed"]


def _plan(inputs, out_dir: Path, manifest: Manifest) -> list[_File]:
    stems: dict[str, Path] = {}
    files = []
    for raw in map(Path, inputs):
        if raw.stem in stems and stems[raw.stem] != raw:
            raise ValueError(
                f"inputs {str(stems[raw.stem])!r} and {str(raw)!r} share the name {raw.stem!r}: "
                f"their outputs would collide in one OUT_DIR"
            )
        stems[raw.stem] = raw
        try:
            sha, slices = sha256_file(raw), list_slices(raw)
        except (OSError, ValueError, KeyError) as err:
            manifest.add(input=str(raw), status="failed", error=f"{type(err).__name__}: {err}")
            continue
        parts = {s: out_dir / ".parts" / f"{raw.stem}.slice{s:04d}.h5" for s in slices}
        files.append(_File(raw, sha, slices, out_dir / f"{raw.stem}.h5", parts))
    return files


def run_batch(
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    method: str = "spectral",
    options: dict | None = None,
    executor: str | Executor = "local",
    workers: int | None = None,
    address: str | None = None,
    gpus_per_task: float = 0,
    device: str = "cpu",
    console: Console | None = None,
    fail_first: Sequence[tuple[str, int]] = (),
) -> BatchReport:
    """Reconstruct every slice of every input; see the module docstring for the layout.

    Args:
        inputs: ISMRMRD files.
        out_dir: output folder (created if missing).
        method, options: reconstruction method and its options (as ``recon run``).
        executor: "local" (process pool), "ray", or an Executor instance.
        workers: local processes (default: CPU count) or CPUs of a Ray cluster started here.
        address: Ray cluster address ("auto", "ray://host:10001"); None starts a local one.
        gpus_per_task: GPUs reserved per Ray task (use with ``device="auto"``).
        device: where each task computes ("cpu", "cuda", "auto").
        console: where the progress bar goes.
        fail_first: fault injection (tests, benchmarks): ``(input stem, slice)`` pairs
            whose first attempt kills its worker process.
    """
    options = dict(options or {})
    check_choice("method", method, METHODS)
    if METHODS[method].needs_field_map:
        raise ValueError(
            f"method {method!r} needs a field map for each file, which recon batch does not "
            f"take; reconstruct such files one by one with recon run --field-map FILE"
        )
    check_request(method, options, False)
    if not isinstance(executor, Executor) and executor not in EXECUTOR_NAMES:
        raise ValueError(f"--executor must be one of {list(EXECUTOR_NAMES)}, got {executor!r}")
    if gpus_per_task < 0:
        raise ValueError(f"--gpus-per-task must be >= 0, got {gpus_per_task}")
    if workers is not None and (isinstance(workers, bool) or workers < 1):
        raise ValueError(f"--workers must be >= 1, got {workers!r}")
    if not inputs:
        raise ValueError("inputs must name at least one ISMRMRD file, got none")
    out = Path(out_dir)
    (out / ".parts").mkdir(parents=True, exist_ok=True)
    manifest = Manifest(out / MANIFEST)
    key = _batch_key(method, options)
    files = _plan(inputs, out, manifest)
    tasks: list[tuple[_File, SliceTask]] = []
    for f in files:
        if _verified(f.output, f.sha, key, f.slices):
            f.done = set(f.slices)
        for s in f.slices:
            if s in f.done or _verified(f.parts[s], f.sha, key, [s]):
                f.done.add(s)
                manifest.add(input=str(f.input), slice=s, status="skipped", output=str(f.output))
            else:
                part = str(f.parts[s])
                task = SliceTask(
                    str(f.input), s, part, f.sha, method, options, key, device, str(manifest.path)
                )
                tasks.append((f, task))
    outputs = [f.output for f in files if f.done == set(f.slices) and f.output.is_file()]
    for f in files:  # parts left by an interrupted run
        if f.done == set(f.slices) and not f.output.is_file():
            _assemble(f, key)
            outputs.append(f.output)
    interrupted = False
    if tasks:
        if isinstance(executor, Executor):
            pool, owned = executor, False
        else:
            pool, owned = make_batch_executor(executor, workers, address, gpus_per_task), True
        try:
            _execute(pool, tasks, manifest, key, outputs, console, set(map(tuple, fail_first)))
        except KeyboardInterrupt:
            interrupted = True
        finally:
            if owned:
                pool.shutdown()
    return BatchReport(manifest.records, outputs, manifest.path, interrupted)


def _execute(pool, tasks, manifest, key, outputs, console, fail_first) -> None:
    """Run ``tasks`` on ``pool`` (retrying once), record and assemble; on Ctrl-C stop the
    tasks in flight, record each of them once and raise KeyboardInterrupt."""
    run = _Run(pool, manifest, key, outputs, fail_first)
    # Ctrl-C only sets a flag that the loop reads between waits: a KeyboardInterrupt raised
    # wherever the signal lands can be swallowed ("Exception ignored in" a weakref callback,
    # and the run goes on) or leave a lock held. Signal handlers belong to the main thread.
    main = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGINT, run.interrupt) if main else None
    try:
        run.loop(tasks, console or Console(stderr=True))
        if run.interrupted:
            run.stop()
            raise KeyboardInterrupt
    finally:
        if main:
            signal.signal(signal.SIGINT, previous)


@dataclass
class _Run:
    """The tasks in flight (handle -> file, task, start time) and the attempts made."""

    pool: Executor
    manifest: Manifest
    key: str
    outputs: list[Path]
    fail_first: set
    running: dict = field(default_factory=dict)
    attempts: dict = field(default_factory=dict)
    interrupted: bool = False

    def interrupt(self, signum: int, frame) -> None:
        """SIGINT handler: the loop stops at its next wait."""
        self.interrupted = True

    def submit(self, file: _File, task: SliceTask) -> None:
        where = (task.input, task.slice)
        n = self.attempts[where] = self.attempts.get(where, 0) + 1
        kill = n == 1 and (file.input.stem, task.slice) in self.fail_first
        task = replace(task, attempt=n)
        handle = self.pool.submit(run_slice_task, task, fail=kill)
        self.running[handle] = (file, task, time.perf_counter())

    def loop(self, tasks: list, console: Console) -> None:
        columns = (
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[info]}"),
        )
        with Progress(*columns, console=console, transient=False) as bar:
            progress = bar.add_task("batch", total=len(tasks), info="")
            for file, task in tasks:
                self.submit(file, task)
            failed = 0
            while self.running and not self.interrupted:
                done, _ = self.pool.wait(list(self.running), num_returns=1, timeout=POLL_S)
                for handle in done:
                    finished = self.finish(handle)
                    if finished is None:  # resubmitted
                        continue
                    failed += finished == "failed"
                    bar.update(progress, advance=1, info=f"failed={failed}" if failed else "")

    def finish(self, handle) -> str | None:
        """Record a finished task: "done", "failed", or None when it was resubmitted."""
        file, task, started = self.running.pop(handle)
        try:
            record = self.pool.result(handle)
        except WorkerFailure as err:
            record = {"status": "failed", "error": f"worker failed: {err}", "device": None}
            record["wall_s"] = time.perf_counter() - started
        base = {"input": task.input, "slice": task.slice, "attempt": task.attempt}
        recorded = record.pop("recorded", False)
        if record["status"] == "done":
            file.done.add(task.slice)
            if not recorded:
                self.manifest.add(**base, **record, output=task.part)
            if file.done == set(file.slices):
                self.assemble(file, task.input)
            return "done"
        if task.attempt < MAX_ATTEMPTS:
            self.manifest.add(**base, **{**record, "status": "retry"})
            self.submit(file, task)
            return None
        self.manifest.add(**base, **record)
        return "failed"

    def stop(self) -> None:
        """Stop the tasks in flight and record each once: "done" when it finished as Ctrl-C
        came (its worker may have recorded that already), else "interrupted"."""
        handles = list(self.running)
        if not handles:
            return
        finished, _ = self.pool.wait(handles, num_returns=len(handles), timeout=0)
        results = {}
        for handle in finished:
            try:
                results[handle] = self.pool.result(handle)
            except WorkerFailure:
                pass  # stopped before its retry: interrupted
        self.pool.cancel(handles)  # queued tasks never start, running ones are killed
        # read after cancel: no stopped worker writes to the manifest any more
        recorded = {
            (r["input"], r["slice"]) for r in self.manifest.records if r["status"] == "done"
        }
        for handle, (_, task, started) in self.running.items():
            if (task.input, task.slice) in recorded:
                continue
            base = {"input": task.input, "slice": task.slice, "attempt": task.attempt}
            record = results.get(handle, {})
            if record.get("status") == "done":  # its worker could not record it
                record.pop("recorded", None)
                self.manifest.add(**base, **record, output=task.part)
            else:
                wall_s = time.perf_counter() - started
                self.manifest.add(**base, status="interrupted", wall_s=wall_s)

    def assemble(self, file: _File, input_name: str) -> None:
        try:
            _assemble(file, self.key)
        except (OSError, ValueError) as err:  # parts stay for a rerun
            error = f"{type(err).__name__}: {err}"
            self.manifest.add(input=input_name, status="failed", error=error)
        else:
            self.outputs.append(file.output)
            self.manifest.add(input=input_name, status="assembled", output=str(file.output))
