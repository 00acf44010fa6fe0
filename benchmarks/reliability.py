"""Every bad input we know of, fed to the ``recon`` command line: one line, exit 2, no file.

Runs each case in-process on tiny simulated files and writes ``docs/reliability.md``: the
input, the command, the message (stderr) and the exit code, and whether an output file
was left behind. Kill / Ctrl-C of ``recon batch`` is covered by
tests/recon/test_batch_signals.py (real processes); its outcome is listed at the end.

    python benchmarks/reliability.py            # about a minute on a laptop CPU
"""

from __future__ import annotations

import argparse
import contextlib
import io
import shutil
import tempfile
from pathlib import Path

import h5py
import numpy as np
import torch

from mrsolve.data import damaged
from mrsolve.recon.cli import main

TINY = ["--size", "32", "--blades", "6", "--lines", "12", "--coils", "2", "--seed", "3"]


def recon(*args) -> tuple[int, str]:
    """Exit code and stderr of ``recon ARGS`` (progress-bar lines left out)."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            main([str(a) for a in args])
            code = 0
        except SystemExit as done:
            code = done.code if isinstance(done.code, int) else 1
    lines = [line for line in err.getvalue().splitlines() if "━" not in line and line.strip()]
    return code, " / ".join(lines)


class _Payload:
    def __reduce__(self):
        return (Path.touch, (Path(tempfile.gettempdir()) / "mrsolve_crafted_code_ran",))


def cases(d: Path) -> list[tuple[str, list, Path | None]]:
    """(input described, recon arguments, output that must not exist) per bad input."""
    raw, truth, other, other_t = d / "raw.h5", d / "truth.h5", d / "b.h5", d / "b_truth.h5"
    small, small_t, dyn, dyn_t = d / "s.h5", d / "s_truth.h5", d / "dyn.h5", d / "dyn_truth.h5"
    recon("simulate", raw, "--truth", truth, *TINY)
    recon("simulate", other, "--truth", other_t, *TINY[:-1], "4")
    recon("simulate", small, "--truth", small_t, "--size", "24", *TINY[2:])
    recon("simulate", dyn, "--truth", dyn_t, "--frames", "2", *TINY)
    ckpt = d / "run.ckpt"
    recon("run", raw, "-o", d / "first.h5", "--iterations", "10", "--checkpoint", ckpt)
    (d / "text.h5").write_text("this is not HDF5")
    with h5py.File(d / "plain.h5", "w") as f:
        f["x"] = np.zeros(3)
    (d / "folder.h5").mkdir()
    (d / "trunc.h5").write_bytes(raw.read_bytes()[:20000])
    damaged.rewrite(raw, d / "zero.h5", damaged.zero_length)
    damaged.rewrite(raw, d / "nan.h5", damaged.nan_sample)
    damaged.rewrite(raw, d / "blade.h5", damaged.drop_blade)
    damaged.rewrite(raw, d / "traj.h5", damaged.one_dim_trajectory)
    (d / "corrupt.ckpt").write_bytes(b"PK\x03\x04 no checkpoint")
    torch.save({"format": "mrsolve-spectral-checkpoint", "states": _Payload()}, d / "evil.ckpt")
    with h5py.File(d / "fmap_shape.h5", "w") as f:
        f["field_map_hz"] = np.zeros((5, 5), np.float32)
    toml = {
        "bad.toml": "[gridding\n",
        "typo.toml": "[conjugate_phase]\nn_segments = 4\n",
        "opt.toml": "[gridding]\nbogus = 1\n",
        "type.toml": '[spectral]\ntv_f = "a lot"\n',
    }
    for name, text in toml.items():
        (d / name).write_text(text)
    same = d / "same"
    same.mkdir()
    shutil.copy(raw, same / "raw.h5")
    out = d / "out.h5"
    run = ["run", raw, "-o", out]
    sim = ["simulate", d / "new.h5", "--truth", d / "new_truth.h5"]
    return [
        ("missing raw file (README)", ["run", d / "missing.h5", "-o", out], out),
        ("text file as raw (README: non-ISMRMRD)", ["run", d / "text.h5", "-o", out], out),
        ("HDF5 without an ISMRMRD dataset", ["run", d / "plain.h5", "-o", out], out),
        ("a folder as raw file", ["run", d / "folder.h5", "-o", out], out),
        ("truncated HDF5", ["run", d / "trunc.h5", "-o", out], out),
        ("every acquisition zero-length", ["run", d / "zero.h5", "-o", out], out),
        ("NaN sample (README)", ["run", d / "nan.h5", "-o", out], out),
        (
            "a blade missing (README: disagrees with the header)",
            ["run", d / "blade.h5", "-o", out],
            out,
        ),
        ("trajectory with 1 dimension", ["run", d / "traj.h5", "-o", out], out),
        ("unknown method (README)", [*run, "--method", "magic"], out),
        (
            "spectral flag for a classical method",
            [*run, "--method", "gridding", "--preset", "fatwater"],
            out,
        ),
        ("unknown preset", [*run, "--preset", "fast"], out),
        ("--iterations 0", [*run, "--iterations", "0"], out),
        ("--iterations not a number", [*run, "--iterations", "many"], out),
        ("unknown device", [*run, "--device", "tpu"], out),
        ("--slices backwards", [*run, "--slices", "3-1"], out),
        ("--slices not in the file", [*run, "--slices", "7"], out),
        (
            "output folder missing (README: unwritable output)",
            ["run", raw, "-o", d / "nowhere" / "o.h5"],
            None,
        ),
        ("output is a folder", ["run", raw, "-o", d / "folder.h5"], None),
        ("output is the input", ["run", same / "raw.h5", "-o", same / "raw.h5"], None),
        ("conjugate-phase without --field-map", [*run, "--method", "conjugate-phase"], out),
        (
            "--field-map file missing",
            [*run, "--method", "conjugate-phase", "--field-map", d / "nofmap.h5"],
            out,
        ),
        (
            "--field-map of another shape",
            [*run, "--method", "conjugate-phase", "--field-map", d / "fmap_shape.h5"],
            out,
        ),
        (
            "--field-map for a method that ignores it (warning)",
            ["run", raw, "-o", d / "ignored.h5", "--method", "gridding", "--field-map", truth],
            None,
        ),
        ("config file missing", [*run, "--config", d / "none.toml"], out),
        ("config file not TOML", [*run, "--config", d / "bad.toml"], out),
        ("misspelt config table [conjugate_phase]", [*run, "--config", d / "typo.toml"], out),
        (
            "unknown option in a config table",
            [*run, "--method", "gridding", "--config", d / "opt.toml"],
            out,
        ),
        ("option of the wrong type in a config table", [*run, "--config", d / "type.toml"], out),
        ("--resume without --checkpoint", [*run, "--resume"], out),
        (
            "--resume, checkpoint file missing",
            [*run, "--resume", "--checkpoint", d / "none.ckpt"],
            out,
        ),
        (
            "--resume, checkpoint of another scan (same geometry)",
            ["run", other, "-o", out, "--iterations", "10", "--checkpoint", ckpt, "--resume"],
            out,
        ),
        (
            "--resume, checkpoint of another size",
            ["run", small, "-o", out, "--iterations", "10", "--checkpoint", ckpt, "--resume"],
            out,
        ),
        (
            "--resume, other options",
            [*run, "--iterations", "10", "--seed", "5", "--checkpoint", ckpt, "--resume"],
            out,
        ),
        (
            "--resume, corrupt checkpoint",
            [*run, "--checkpoint", d / "corrupt.ckpt", "--resume"],
            out,
        ),
        (
            "--resume, crafted pickle (code in the file)",
            [*run, "--checkpoint", d / "evil.ckpt", "--resume"],
            out,
        ),
        ("--checkpoint in a missing folder", [*run, "--checkpoint", d / "nowhere" / "c.ckpt"], out),
        (
            "dynamic scan, static preset (warning)",
            ["run", dyn, "-o", d / "dyn_static.h5", "--iterations", "5"],
            None,
        ),
        ("simulate --size 100000 (memory)", [*sim, "--size", "100000"], d / "new.h5"),
        ("simulate --size 8 (fewer pixels than lines)", [*sim, "--size", "8"], d / "new.h5"),
        ("simulate --coils 0", [*sim, "--coils", "0"], d / "new.h5"),
        ("simulate --sequence gradient_echo", [*sim, "--sequence", "gradient_echo"], d / "new.h5"),
        ("simulate --echo-times-ms a,b", [*sim, "--echo-times-ms", "a,b"], d / "new.h5"),
        ("simulate --noise -1", [*sim, "--noise", "-1"], d / "new.h5"),
        (
            "simulate, --truth is the raw file",
            ["simulate", d / "x.h5", "--truth", d / "x.h5"],
            d / "x.h5",
        ),
        ("compare with a truth of another size", ["compare", d / "first.h5", small_t], None),
        ("compare a raw file as the output", ["compare", raw, truth], None),
        ("info of a text file", ["info", d / "text.h5"], None),
        (
            "batch --method conjugate-phase",
            ["batch", raw, "-o", d / "bo", "--method", "conjugate-phase"],
            None,
        ),
        ("batch --executor foo", ["batch", raw, "-o", d / "bo", "--executor", "foo"], None),
        ("batch --workers 0", ["batch", raw, "-o", d / "bo", "--workers", "0"], None),
        ("batch, two inputs with one name", ["batch", raw, same / "raw.h5", "-o", d / "bo"], None),
        ("batch without inputs", ["batch", "-o", d / "bo"], None),
        ("unknown subcommand", ["reconstruct", raw], None),
    ]


R, G, S = (
    "tests/recon/test_hardening.py",
    "tests/gui/test_gui_hardening.py",
    "test_batch_signals.py",
)
ISSUE_20 = [
    ("1 resume from another scan / options", "refused, names what differs", R),
    ("2 kill -KILL of batch", "workers + forkserver die with it; workers record their slice", S),
    ("3 Ctrl-C on batch", "stops in ~1 s, records done / interrupted, exit 130", S),
    ("4 unwritable --checkpoint", "refused before any iteration", R),
    ("5 fat/water coarse steps", "checkpointed every check_every steps, resume exact", R),
    ("6 corrupt / crafted checkpoint", "weights_only load, one line, no code runs", R),
    ("7 simulate --size 100000", "memory estimate vs available, refused before allocating", R),
    ("8 zero-length / truncated / folder", "one line naming the file or the problem", R),
    ("9 batch + conjugate-phase", "says batch takes no field map, points to run", R),
    ("10 frames vs preset", "warning; compare accepts (1, N, N) and static vs dynamic", R),
    ("11 ignored --field-map, misspelt table", "warning; error with the nearest name", R),
    ("12 recon --help 6-7 s", "lazy imports: 1.78 s -> 0.14 s here (under load)", R),
    ("13 progress on stdout", "progress, warnings, failures on stderr", R),
    ("14 help text, internal names, --motion", "plain metavars, defaults, flag names", R),
    ("15 compare caption / cut names, info truth", "caption only with (zero) columns", R),
    ("16 fat/water bar 660 -> 140", "ends at steps taken (140/140, 'stopped at')", "test_progress"),
    ("17 napari layers, spectrum, slider, 50 it.", "volume hidden below, Hz label, preset's", G),
]


def main_(out: Path) -> None:
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        d = Path(folder)
        for text, args, output in cases(d):
            code, message = recon(*args)
            left = output is not None and output.exists()
            shown = " ".join(str(a).replace(folder, "$D") for a in ["recon", *args])
            message = message.replace(folder, "$D").replace("|", "\\|")
            rows.append(f"| {text} | `{shown}` | {message} | {code} | {'yes' if left else 'no'} |")
    crafted = Path(tempfile.gettempdir()) / "mrsolve_crafted_code_ran"
    rows.append(
        "| `kill -KILL` of the `recon batch` driver | `recon batch ... --workers 1` | "
        "(killed) workers, forkserver and resource tracker gone within 1 s; every finished "
        "slice has its manifest line (tests/recon/test_batch_signals.py) | -9 | no |"
    )
    rows.append(
        "| Ctrl-C (SIGINT to the process group) during `recon batch` | `recon batch ...` | "
        'recon: interrupted; finished slices recorded "done", the rest "interrupted" '
        "(tests/recon/test_batch_signals.py) | 130 | no |"
    )
    head = [
        "# Reliability: every bad input tried",
        "",
        "Written by `python benchmarks/reliability.py` (tiny simulated files in a temporary",
        "folder `$D`). *Left*: whether the output named by the command exists afterwards.",
        "Exit code 2 is a bad input, 0 a success (warnings on stderr), 130 an interrupt.",
        f"The crafted checkpoint's code ran: {'YES' if crafted.exists() else 'no'}.",
        "",
        "| input | command | message (stderr) | exit | left |",
        "|---|---|---|---|---|",
    ]
    tail = [
        "",
        "## Failure modes of issue 20 and the tests that hold them",
        "",
        "| item | now | test |",
        "|---|---|---|",
        *(f"| {a} | {b} | {c} |" for a, b, c in ISSUE_20),
    ]
    out.mkdir(parents=True, exist_ok=True)
    (out / "reliability.md").write_text("\n".join(head + rows + tail) + "\n")
    print(f"{len(rows)} cases -> {out / 'reliability.md'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    main_(parser.parse_args().out)
