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

import json
import tempfile
import time
from pathlib import Path

import _harness as h
import torch
from rich.console import Console

from mrsolve.data.exam import simulate_exam
from mrsolve.data.ismrmrd_io import read_slices, write_exam
from mrsolve.data.results import read_result
from mrsolve.recon.batch import ProcessExecutor, _batch_key, run_batch
from mrsolve.recon.commands import reconstruct_scan


def make_inputs(folder: Path, n_files: int, n_slices: int, size: int, seed: int) -> list[Path]:
    paths = []
    for i in range(n_files):
        sim = simulate_exam(
            n_slices=n_slices,
            seed=seed + 100 * i,
            size=size,
            n_blades=8,
            n_lines=size // 4,
            n_coils=4,
            noise=0.01,
        )
        path = folder / f"exam{i}.h5"
        write_exam(path, [s[0] for s in sim.slices])
        paths.append(path)
    return paths


def baseline(paths: list[Path], method: str, options: dict, device: str) -> tuple[float, int]:
    """Wall time of reconstructing every slice serially in this process."""

    def serial() -> int:
        n = 0
        for path in paths:
            for scan in read_slices(path).values():
                reconstruct_scan(scan, method, None, torch.device(device), dict(options))
                n += 1
        return n

    n, wall = h.timed(serial, device=device)
    return wall, n


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
    report, wall = h.timed(
        lambda: run_batch(
            paths,
            out,
            method,
            options,
            executor=executor,
            workers=workers,
            console=Console(quiet=True),
            **kw,
        )
    )
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
    parser = h.parser(__doc__, quick="2 files x 2 slices of 32 px", device=None, threads=None)
    parser.add_argument("--method", default="spectral")
    parser.add_argument("--iterations", type=int, default=10, help="spectral iterations")
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--files", type=int, default=3)
    parser.add_argument("--slices", type=int, default=4)
    args = parser.parse_args()
    docs = h.out_dir(args)
    if args.quick:
        args.size, args.files, args.slices, args.iterations = 32, 2, 2, 5
    options = {"iterations": args.iterations} if args.method == "spectral" else {}
    import ray

    torch.set_num_threads(1)  # every backend computes with one thread per worker
    rows = []

    def row(backend: str, workers: int, out: Path, executor: str, **kw) -> None:
        result = timed_batch(paths, out, args.method, options, executor, workers, **kw)
        rows.append({"backend": backend, "workers": workers, **result})

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        paths = make_inputs(folder, args.files, args.slices, args.size, args.seed)
        # the forkserver imports torch + mrsolve once per process
        _, pool_start = h.timed(
            lambda: timed_batch(paths[:1], folder / "warm", args.method, options, "local", 1)
        )
        wall, n = baseline(paths, args.method, options, "cpu")
        rows.append(
            {
                "backend": "serial (baseline)",
                "workers": 1,
                "wall_s": wall,
                "tasks": n,
                "slices_per_min": 60 * n / wall,
                "overhead_s": 0.0,
                "device": "cpu",
            }
        )
        for workers in (1, 2):
            row("local", workers, folder / f"local{workers}", "local")
        for workers in (1, 2):
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            warm_ray(workers)
            try:
                row("ray", workers, folder / f"ray{workers}", "ray")
            finally:
                ray.shutdown()
        if torch.cuda.is_available():
            row("local + GPU", 1, folder / "local_gpu", "local", device="cuda")
            ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, log_to_driver=False)
            warm_ray(1)
            try:
                row(
                    "ray + 1 GPU/task", 1, folder / "ray_gpu", "ray", gpus_per_task=1, device="auto"
                )
            finally:
                ray.shutdown()
    base = rows[0]["slices_per_min"]
    title = (
        f"recon batch throughput: {args.files} files x {args.slices} slices, {args.size} px, "
        f"method {args.method} {options or ''}"
    )
    print(title)
    table = h.table(
        [{**r, "speed_up": r["slices_per_min"] / base} for r in rows],
        {
            "backend": "backend",
            "workers": "workers",
            "device": "device",
            "slices_per_min": "slices/min",
            "speed_up": "speed-up vs serial",
            "overhead_s": "overhead/task (s)",
            "wall_s": "wall (s)",
        },
        formats={"slices_per_min": ".1f", "speed_up": ".2f", "overhead_s": ".2f", "wall_s": ".1f"},
    )
    print(f"one-time local pool start (forkserver + first batch): {pool_start:.1f} s")
    h.write_doc(
        "batch_throughput",
        title,
        table,
        "Overhead per task = (workers x wall - sum of task times) / tasks (worker start, "
        "scheduling, reading and writing files). Local runs fork their workers from a "
        "forkserver that imported torch and mrsolve once per process; that one-time start "
        f"(with a first warm-up batch of {args.slices} slices) took {pool_start:.1f} s and is "
        "not in the table. Ray clusters were started and their workers warmed before the "
        "clock, as for an existing cluster. Every backend computes with one torch thread per "
        "worker (the serial baseline too). Shared machine: timings are noisy.",
        "```json\n" + json.dumps(rows, indent=1) + "\n```",
        out=docs,
    )
    fig, ax = h.pyplot().subplots(figsize=(7, 3.5))
    labels = [f"{r['backend']}\n x{r['workers']}" for r in rows]
    ax.bar(labels, [r["slices_per_min"] for r in rows], color="tab:blue")
    ax.set_ylabel("slices per minute")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    h.save_figure(fig, "batch_throughput", out=docs)


if __name__ == "__main__":
    main()
