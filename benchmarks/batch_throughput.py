"""Batch throughput: slices per minute of ``recon batch`` against the number of workers.

One run measures, on the same simulated exams:

- the baseline: every slice reconstructed one after the other in this process;
- ``run_batch`` on the local process pool and on a local Ray cluster with 1 and 2
  workers (the one-time forkserver start of the local pool is measured apart; the Ray cluster
  is started and its workers warmed before the clock, as an existing cluster would be);
- with a CUDA device: the local executor with ``device="cuda"`` and Ray with one GPU per task.

Reported: slices per minute, speed-up over the baseline, and the overhead per task,
(workers x wall - sum of task times) / tasks: scheduling, process start, file I/O.
Writes docs/batch_throughput.md and docs/batch_throughput.png.

    python benchmarks/batch_throughput.py [--quick] [--method spectral] [--iterations 10]
                                          [--size 48] [--files 3] [--slices 4]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import torch
from rich.console import Console
from rich.table import Table

from mrsolve.data.exam import simulate_exam
from mrsolve.data.ismrmrd_io import read_slices, write_exam
from mrsolve.data.results import read_result
from mrsolve.recon.batch import ProcessExecutor, _batch_key, run_batch
from mrsolve.recon.commands import reconstruct_scan

DOCS = Path(__file__).resolve().parent.parent / "docs"


def make_inputs(folder: Path, n_files: int, n_slices: int, size: int) -> list[Path]:
    paths = []
    for i in range(n_files):
        sim = simulate_exam(
            n_slices=n_slices, seed=100 * i, size=size, n_blades=8, n_lines=size // 4, n_coils=4,
            noise=0.01,
        )  # fmt: skip
        path = folder / f"exam{i}.h5"
        write_exam(path, [s[0] for s in sim.slices])
        paths.append(path)
    return paths


def baseline(paths: list[Path], method: str, options: dict, device: str) -> tuple[float, int]:
    """Wall time of reconstructing every slice serially in this process."""
    start, n = time.perf_counter(), 0
    for path in paths:
        for scan in read_slices(path).values():
            reconstruct_scan(scan, method, None, torch.device(device), dict(options))
            n += 1
    return time.perf_counter() - start, n


def _warm(_: int) -> float:
    """Import the reconstruction stack in a worker (what the first task would pay)."""
    start = time.perf_counter()
    import mrsolve.recon.commands  # noqa: F401

    time.sleep(0.5)  # keep this worker busy so the others get a warm-up task too
    return time.perf_counter() - start


def warm_ray(workers: int) -> None:
    import ray

    ray.get([ray.remote(num_cpus=1)(_warm).remote(i) for i in range(workers)])


def timed_batch(paths, out: Path, method, options, executor, workers: int, **kw) -> dict:
    if executor == "local":  # one torch thread per worker, as Ray gives its workers
        executor = ProcessExecutor(workers, threads_per_worker=1)
    start = time.perf_counter()
    report = run_batch(
        paths, out, method, options, executor=executor, workers=workers,
        console=Console(quiet=True), **kw,
    )  # fmt: skip
    wall = time.perf_counter() - start
    done = [r for r in report.records if r["status"] == "done"]
    if len(done) != sum(1 for r in report.records if r["slice"] is not None):
        raise RuntimeError(f"batch {executor} x{workers} did not finish: {report.failed}")
    key = read_result(report.outputs[0]).config.get("batch_key")
    if key != _batch_key(method, options):  # the workers must run what the baseline ran
        raise RuntimeError(f"batch {executor} x{workers} ran other options than {options}")
    task_time = sum(r["wall_s"] for r in done)
    result = {
        "wall_s": wall,
        "tasks": len(done),
        "slices_per_min": 60 * len(done) / wall,
        "overhead_s": (workers * wall - task_time) / len(done),
        "device": done[0]["device"],
    }
    if isinstance(executor, ProcessExecutor):
        executor.shutdown()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 files x 2 slices of 32 px")
    parser.add_argument("--method", default="spectral")
    parser.add_argument("--iterations", type=int, default=10, help="spectral iterations")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--slices", type=int, default=4)
    args = parser.parse_args()
    if args.quick:
        args.size, args.files, args.slices, args.iterations = 32, 2, 2, 5
    options = {"iterations": args.iterations} if args.method == "spectral" else {}
    import ray

    torch.set_num_threads(1)  # every backend computes with one thread per worker
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_inputs(folder, args.files, args.slices, args.size)
        start = time.perf_counter()  # the forkserver imports torch + mrsolve once per process
        timed_batch(paths[:1], folder / "warm", args.method, options, "local", 1)
        pool_start = time.perf_counter() - start
        wall, n = baseline(paths, args.method, options, "cpu")
        rows.append({"backend": "serial (baseline)", "workers": 1, "wall_s": wall, "tasks": n,
                     "slices_per_min": 60 * n / wall, "overhead_s": 0.0, "device": "cpu"})  # fmt: skip
        for workers in (1, 2):
            out = folder / f"local{workers}"
            rows.append({"backend": "local", "workers": workers,
                         **timed_batch(paths, out, args.method, options, "local", workers)})  # fmt: skip
        for workers in (1, 2):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            warm_ray(workers)
            try:
                out = folder / f"ray{workers}"
                rows.append({"backend": "ray", "workers": workers,
                             **timed_batch(paths, out, args.method, options, "ray", workers)})  # fmt: skip
            finally:
                ray.shutdown()
        if torch.cuda.is_available():
            out = folder / "local_gpu"
            rows.append({"backend": "local + GPU", "workers": 1,
                         **timed_batch(paths, out, args.method, options, "local", 1, device="cuda")})  # fmt: skip
            ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
            warm_ray(1)
            try:
                rows.append({"backend": "ray + 1 GPU/task", "workers": 1,
                             **timed_batch(paths, folder / "ray_gpu", args.method, options, "ray", 1,
                                           gpus_per_task=1, device="auto")})  # fmt: skip
            finally:
                ray.shutdown()
    base = rows[0]["slices_per_min"]
    title = (
        f"recon batch throughput: {args.files} files x {args.slices} slices, {args.size} px, "
        f"method {args.method} {options or ''}"
    )
    table = Table(title=title)
    header = [
        "backend",
        "workers",
        "device",
        "slices/min",
        "speed-up vs serial",
        "overhead/task (s)",
        "wall (s)",
    ]
    for h in header:
        table.add_column(h, justify="right" if h not in ("backend", "device") else "left")
    lines = ["# " + title, "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["backend"], str(r["workers"]), str(r["device"]), f"{r['slices_per_min']:.1f}",
                 f"{r['slices_per_min'] / base:.2f}", f"{r['overhead_s']:.2f}", f"{r['wall_s']:.1f}"]  # fmt: skip
        table.add_row(*cells)
        lines.append("| " + " | ".join(cells) + " |")
    Console().print(table)
    print(f"one-time local pool start (forkserver + first batch): {pool_start:.1f} s")
    lines += [
        "",
        "Overhead per task = (workers x wall - sum of task times) / tasks (worker start, "
        "scheduling, reading and writing files). Local runs fork their workers from a "
        "forkserver that imported torch and mrsolve once per process; that one-time start "
        f"(with a first warm-up batch of {args.slices} slices) took {pool_start:.1f} s and is "
        "not in the table. Ray clusters were started and their workers warmed before the "
        "clock, as for an existing cluster. Every backend computes with one torch thread per worker (the serial baseline too). Shared machine: timings are noisy.",
        "",
        "```json",
        json.dumps(rows, indent=1),
        "```",
    ]
    DOCS.mkdir(exist_ok=True)
    (DOCS / "batch_throughput.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 3.5))
    labels = [f"{r['backend']}\n x{r['workers']}" for r in rows]
    ax.bar(labels, [r["slices_per_min"] for r in rows], color="tab:blue")
    ax.set_ylabel("slices per minute")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(DOCS / "batch_throughput.png", dpi=120)
    print(f"wrote {DOCS / 'batch_throughput.md'} and {DOCS / 'batch_throughput.png'}")


if __name__ == "__main__":
    main()
