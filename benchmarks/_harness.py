"""Shared pieces of the benchmark scripts: arguments, timing, markdown tables, figures.

A script builds its parser with :func:`parser`, calls :func:`setup` for the device and
thread count, times with :func:`timeit` (repeats), :func:`best_of` (the result of a
warm-up call and the best time of the calls after it) or :func:`timed` (one call), formats
tables with :func:`table`, and writes ``<out>/<name>.md`` with :func:`write_doc` and
``<out>/<name>.png`` with :func:`save_figure`. ``--out`` defaults to ``docs/``; a
``--quick`` run writes only when ``--out`` is given, so smoke runs never overwrite the
committed tables.

    import _harness as h

    args = h.parser(__doc__, threads=2).parse_args()
    device = h.setup(args)
    seconds = h.timeit(lambda: op(x), device=device, repeats=10)
"""

from __future__ import annotations

import argparse
import math
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from mrsolve.solvers.validation import resolve_device

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.fontsize": 8,
    "legend.frameon": False,
}
_UNSET = object()


# ---------------------------------------------------------------- arguments


def parser(
    doc: str | None,
    *,
    quick: str = "small smoke run",
    device: str | None = "cpu",
    threads: int | None = 1,
    seed: int | None = 0,
) -> argparse.ArgumentParser:
    """A parser with the shared options; ``None`` leaves an option out.

    Shared: ``--quick`` (help text ``quick``), ``--device`` (cpu, cuda[:N] or auto),
    ``--threads`` (torch CPU threads), ``--seed`` and ``--out`` (the docs folder).
    The script adds its own options to the returned parser.
    """
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("shared benchmark options")
    group.add_argument("--quick", action="store_true", help=quick)
    if device is not None:
        group.add_argument("--device", default=device, help="cpu, cuda[:N] or auto")
    if threads is not None:
        group.add_argument("--threads", type=int, default=threads, help="torch CPU threads")
    if seed is not None:
        group.add_argument("--seed", type=int, default=seed, help="base random seed")
    group.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"folder for the tables and figures (default {DOCS}; --quick: print only)",
    )
    first_line = doc.strip().splitlines()[0] if doc else None
    return argparse.ArgumentParser(description=first_line, parents=[common])


def setup(args: argparse.Namespace) -> torch.device:
    """Apply ``--threads`` and return the device ``--device`` names (CPU when absent)."""
    if getattr(args, "threads", None) is not None:
        torch.set_num_threads(args.threads)
    return resolve_device(getattr(args, "device", "cpu"))


def out_dir(args: argparse.Namespace) -> Path | None:
    """Where the script writes: ``--out``, else docs/ (``None``: a quick run prints only)."""
    if args.out is not None:
        return args.out
    return None if args.quick else DOCS


def command(argv: Sequence[str] | None = None) -> str:
    """The shell command that reproduces this run (``--out`` dropped), for the docs."""
    argv = list(sys.argv if argv is None else argv)
    script = Path(argv[0]).resolve()
    try:
        script_name = str(script.relative_to(ROOT))
    except ValueError:
        script_name = str(argv[0])
    rest, skip = [], False
    for arg in argv[1:]:
        if skip:
            skip = False
        elif arg == "--out":
            skip = True
        elif not arg.startswith("--out="):
            rest.append(arg)
    return shlex.join([".venv/bin/python", script_name, *rest])


# ---------------------------------------------------------------- timing


def sync(device: torch.device | str | None) -> None:
    """Wait for the device's queued kernels (CUDA runs them asynchronously); no-op on CPU."""
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(
    fn: Callable[[], Any],
    *,
    device: torch.device | str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Any, float]:
    """(result, seconds) of one call, the device synchronized before the clock stops."""
    sync(device)
    start = clock()
    result = fn()
    sync(device)
    return result, clock() - start


def timeit(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 1,
    device: torch.device | str | None = None,
    reduce: str = "median",
    clock: Callable[[], float] = time.perf_counter,
) -> float:
    """Seconds per call of ``fn``: ``warmup`` untimed calls, then the median (or, with
    ``reduce="min"``, the best) of ``repeats`` timed calls.

    Raises ValueError for ``repeats < 1``, ``warmup < 0`` or another ``reduce``.
    """
    if isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
    reducers = {"median": statistics.median, "min": min}
    if reduce not in reducers:
        raise ValueError(f"reduce must be one of {sorted(reducers)}, got {reduce!r}")
    for _ in range(warmup):
        fn()
    sync(device)
    times = [timed(fn, device=device, clock=clock)[1] for _ in range(repeats)]
    return float(reducers[reduce](times))


def best_of(
    fn: Callable[[], Any],
    repeats: int = 1,
    *,
    device: torch.device | str | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> tuple[Any, float]:
    """(result of a warm-up call, best seconds of ``repeats`` further calls)."""
    result = fn()
    sync(device)
    return result, timeit(fn, repeats=repeats, warmup=0, device=device, reduce="min", clock=clock)


# ---------------------------------------------------------------- tables


def fmt(value: Any, spec: str = ".4g") -> str:
    """A table cell: floats with ``spec`` (NaN as "n/a"), everything else by ``str``."""
    if isinstance(value, float):
        return "n/a" if math.isnan(value) else format(value, spec)
    return str(value)


def table(
    rows: Sequence[Mapping[str, Any]] | Sequence[Sequence[Any]],
    columns: Sequence[str] | Mapping[str, str] | None = None,
    *,
    formats: Mapping[str, str | Callable[[Any], str]] | None = None,
    spec: str = ".4g",
    echo: bool = True,
) -> str:
    """A markdown table (printed when ``echo``) of dict rows or of list rows.

    ``columns``: the keys to show (a mapping gives key -> header); for dict rows it
    defaults to the keys of the first row, a missing key is an empty cell; for list
    rows it is the header, and a short row ends in empty cells. ``formats``: per key, a format spec or a function of the
    value; other cells go through :func:`fmt` with ``spec``.
    """
    if not rows and columns is None:
        raise ValueError("table needs rows or columns, got neither")
    if columns is None:
        columns = list(rows[0]) if isinstance(rows[0], Mapping) else None
        if columns is None:
            raise ValueError("columns must be given for list rows")
    headers = dict(columns) if isinstance(columns, Mapping) else {c: c for c in columns}
    keys = list(headers)
    formats = formats or {}

    def cell(key: str, value: Any) -> str:
        f = formats.get(key)
        if value is _UNSET:
            return ""
        if callable(f):
            return f(value)
        return fmt(value, f) if f is not None else fmt(value, spec)

    lines = ["| " + " | ".join(headers.values()) + " |", "|" + "---|" * len(keys)]
    for row in rows:
        if isinstance(row, Mapping):
            values = [row.get(k, _UNSET) for k in keys]
        else:
            if len(row) > len(keys):
                raise ValueError(f"rows must have <= {len(keys)} cells, got {len(row)}: {row!r}")
            values = [*row, *[_UNSET] * (len(keys) - len(row))]
        lines.append(
            "| " + " | ".join(cell(k, v) for k, v in zip(keys, values, strict=True)) + " |"
        )
    text = "\n".join(lines)
    if echo:
        print(text, flush=True)
    return text


def write_doc(name: str, title: str, *parts: str, out: Path | None) -> Path | None:
    """Write ``out/name.md``: the title, the command that reproduces it, then ``parts``
    separated by blank lines. ``out=None`` writes nothing; returns the path written."""
    if out is None:
        return None
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.md"
    body = [f"# {title}", f"Produced by `{command()}`.", *(p.strip("\n") for p in parts)]
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text("\n\n".join(body) + "\n")
    tmp.replace(path)
    print(f"wrote {path}", flush=True)
    return path


# ---------------------------------------------------------------- figures


def pyplot():
    """matplotlib.pyplot on the Agg backend with the shared style applied."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update(STYLE)
    return plt


def save_figure(fig, name: str, *, out: Path | None, dpi: int | None = None) -> Path | None:
    """Save ``fig`` as ``out/name.png`` (nothing when ``out`` is None) and close it."""
    path = None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        path = out / f"{name}.png"
        fig.savefig(path, dpi=dpi or STYLE["savefig.dpi"])
        print(f"wrote {path}", flush=True)
    pyplot().close(fig)
    return path
