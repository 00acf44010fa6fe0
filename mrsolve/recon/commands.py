"""What the ``recon`` subcommands do, as plain functions (the CLI only parses arguments).

Every function validates its input up front and raises ValueError/TypeError/OSError
with a message naming the problem; outputs are written atomically.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from rich.table import Table

from mrsolve.data.exam import simulate_exam_to_files, stack_results
from mrsolve.data.files import atomic_output, sha256_file
from mrsolve.data.ismrmrd_io import read_slices, scan_affine, write_ismrmrd
from mrsolve.data.results import (
    GroundTruth,
    Reconstruction,
    read_result,
    read_truth,
    write_result,
    write_truth,
)
from mrsolve.data.simulate import simulate
from mrsolve.propeller.scan import Scan
from mrsolve.recon import metrics
from mrsolve.recon.config import load_method_options
from mrsolve.recon.describe import describe_file
from mrsolve.recon.methods import (
    DEFAULT_METHOD,
    METHODS,
    check_request,
    load_field_map,
    reconstruct,
    resolve_options,
)
from mrsolve.recon.progress import progress_callback
from mrsolve.solvers.validation import check_choice, resolve_device

__all__ = [
    "DEFAULT_METHOD",
    "METHODS",
    "compare_files",
    "demo",
    "describe",
    "method_options",
    "parse_slices",
    "reconstruct_file",
    "reconstruct_scan",
    "scores_table",
    "simulate_to_files",
]

describe = describe_file


def _check_output(path: Path, name: str, inputs: tuple[Path, ...] = ()) -> Path:
    """Fail early (before any work) when ``path`` cannot be written or would overwrite an input."""
    path = Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"{name} folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise ValueError(f"{name} {str(path)!r} is a folder, expected a file name")
    if not os.access(path.parent, os.W_OK):
        raise ValueError(f"{name} folder {str(path.parent)!r} is not writable")
    for source in inputs:
        if source.exists() and path.exists() and path.samefile(source):
            raise ValueError(f"{name} {str(path)!r} is the input file; choose another name")
    return path


def parse_echo_times(text: str | None) -> list[float] | None:
    """Echo times in seconds from "1.15,2.3" (milliseconds); None -> None."""
    if text is None:
        return None
    try:
        values = [float(v) * 1e-3 for v in str(text).split(",")]
    except ValueError:
        raise ValueError(f"--echo-times-ms must be numbers like 1.15,2.3, got {text!r}") from None
    if any(not v >= 0 for v in values):
        raise ValueError(f"--echo-times-ms must be non-negative, got {text!r}")
    return values


def simulate_to_files(raw: Path, truth: Path, **options) -> None:
    """Simulate a scan; write the raw ISMRMRD file and the ground-truth file (both or neither).

    ``n_slices``, ``n_averages`` or ``echo_times_s`` among ``options`` simulate a whole
    exam (:func:`mrsolve.data.exam.simulate_exam`).
    """
    raw, truth = _check_output(raw, "raw output"), _check_output(truth, "truth output")
    if raw.resolve() == truth.resolve():
        raise ValueError(f"--truth must differ from the raw file, got {str(truth)!r} for both")
    if {"n_slices", "n_averages", "echo_times_s"} & set(options):
        simulate_exam_to_files(raw, truth, **options)
        return
    sim = simulate(**options)
    with atomic_output(raw) as tmp_raw, atomic_output(truth) as tmp_truth:
        write_ismrmrd(tmp_raw, sim.scan)
        write_truth(tmp_truth, sim.truth)


def parse_sequence(text: str) -> str:
    """The simulator's sequence name from the command line's ("spin-echo", "gradient-echo")."""
    names = {"spin-echo": "spin_echo", "gradient-echo": "gradient_echo"}
    if text not in names:
        raise ValueError(f"--sequence must be one of {list(names)}, got {text!r}")
    return names[text]


def parse_slices(text: str | None) -> list[int] | None:
    """Slice indices from "0,3-5" (-> [0, 3, 4, 5]); None or "" -> None (all slices)."""
    if text is None or not str(text).strip():
        return None
    out: list[int] = []
    for part in str(text).split(","):
        lo, sep, hi = part.strip().partition("-")
        try:
            first, last = int(lo), int(hi) if sep else int(lo)
        except ValueError:
            raise ValueError(
                f"--slices must be indices and ranges like 0,3-5, got {text!r}"
            ) from None
        if first < 0 or last < first:
            raise ValueError(f"--slices ranges must be non-negative and increasing, got {part!r}")
        out.extend(range(first, last + 1))
    return sorted(set(out))


def reconstruct_scan(
    scan: Scan,
    method: str,
    field_map: torch.Tensor | None,
    device: torch.device,
    options: dict,
    callback=None,
) -> Reconstruction:
    """Reconstruct one slice; classical methods see each echo separately ("echo" axis).
    The result carries the slice's scanner geometry and the raw header's patient fields."""
    if scan.n_echoes > 1 and METHODS[method].per_frame:
        recs = [
            reconstruct(
                scan.select_blades(scan.echo == e), method, field_map, device, callback, **options
            )
            for e in range(scan.n_echoes)
        ]
        rec = stack_results(recs, "echo")
    else:
        rec = reconstruct(
            scan, method, field_map=field_map, device=device, callback=callback, **options
        )
    rec.affine_lps = scan_affine(scan)
    rec.source_header = scan.extra.get("source_header", {})
    return rec


def method_options(method: str, config: Path | None, flags: dict | None) -> dict:
    """Options of ``method``: the ``[method]`` table of the TOML ``config``, then ``flags``
    (command-line values) on top, resolved once into the form the method runs with (for
    "spectral": a typed SpectralConfig with the checkpoint settings). A table of the
    config that names no method is an error (a misspelt ``[conjugate_phase]`` would
    otherwise be ignored)."""
    check_choice("method", method, METHODS)
    options = load_method_options(config, method, METHODS) if config is not None else {}
    if flags and method != "spectral":
        raise ValueError(
            f"--{next(iter(flags))} applies to method 'spectral' only, got --method {method}"
        )
    options.update(flags or {})
    return resolve_options(method, options)


def reconstruct_file(
    raw: Path,
    output: Path,
    method: str = DEFAULT_METHOD,
    field_map: Path | None = None,
    device: str = "cpu",
    config: Path | None = None,
    console: Console | None = None,
    flags: dict | None = None,
    slices: list[int] | None = None,
    warn: Callable[[str], None] | None = None,
) -> Reconstruction:
    """Read ``raw``, reconstruct with ``method`` and write ``output`` (the output format).

    Options come from the ``[method]`` table of the TOML ``config``, then ``flags``
    (command-line values) on top. ``slices`` (None: all) picks slices of a multi-slice
    file; the output has a leading "slice" axis when the file holds several slices.
    Every output path (``output``, a spectral checkpoint) is checked before any work;
    ``warn(message)`` hears about options the run ignores or a preset that does not
    fit the scan (frames).
    """
    warn = warn or (lambda message: None)
    options = method_options(method, config, flags)
    if field_map is not None and not METHODS[method].needs_field_map:
        warn(f"--field-map is ignored by method {method!r} (only conjugate-phase uses it)")
        field_map = None
    check_request(method, options, field_map is not None)
    output = _check_output(output, "output", inputs=(Path(raw),))
    _check_checkpoint(options, Path(raw))
    dev = resolve_device(device)
    scans = read_slices(raw, slices)
    first = next(iter(scans.values()))
    if method == "spectral":
        _check_frames(first, options["config"], warn)
    fmap = load_field_map(field_map, first.image_shape) if field_map is not None else None
    start = time.perf_counter()
    recs = []
    for index, scan in scans.items():
        label = method if len(scans) == 1 else f"{method} slice {index}"
        slice_options = options if len(scans) == 1 else _slice_checkpoint(options, index)
        with progress_callback(label, console) as callback:
            recs.append(reconstruct_scan(scan, method, fmap, dev, slice_options, callback))
    multi = len(first.extra.get("slices_in_file", [0])) > 1
    rec = stack_results(recs, "slice", list(scans)) if multi else recs[0]
    rec.runtime_s = time.perf_counter() - start
    rec.device = str(dev)
    rec.input_sha256 = sha256_file(raw)
    rec.config = {"method": method, "device": str(dev), **rec.config}
    write_result(output, rec)
    return rec


def _check_checkpoint(options: dict, raw: Path) -> None:
    """A spectral checkpoint must be writable before the run starts (it is written after
    every segment; failing at the first save would lose that work)."""
    path = options.get("checkpoint")
    if path is None:
        if options.get("resume"):
            raise ValueError("--resume needs --checkpoint FILE (the checkpoint to continue from)")
        return
    path = _check_output(Path(path), "--checkpoint", inputs=(raw,))
    if path.exists() and not os.access(path, os.W_OK):
        raise ValueError(f"--checkpoint {str(path)!r} is not writable")


def _slice_checkpoint(options: dict, index: int) -> dict:
    """One checkpoint file per slice (``run.ckpt`` -> ``run.slice0003.ckpt``): a checkpoint
    belongs to one slice's data, and the slices run one after the other."""
    path = options.get("checkpoint")
    if path is None:
        return options
    path = Path(path)
    return {**options, "checkpoint": path.with_name(f"{path.stem}.slice{index:04d}{path.suffix}")}


def _check_frames(scan: Scan, config, warn: Callable[[str], None]) -> None:
    """Warn when the spectral preset and the scan's frames do not match."""
    if scan.n_frames > 1 and not config.dynamic:
        warn(
            f"the scan has {scan.n_frames} frames; this preset reconstructs them as one "
            "static image (use --preset dynamic for one image per frame)"
        )
    elif scan.n_frames == 1 and config.dynamic:
        warn("the scan has one frame; --preset dynamic writes a (1, ny, nx) image")


def separation_warning(rec: Reconstruction) -> str | None:
    """A one-line warning when the water / fat fit reports that the sampling cannot
    separate fat from the field map (the report's ``fat_separation``), else None."""
    sep = rec.fat_separation
    if sep is None or sep["resolvable"]:
        return None
    return (
        f"fat is not resolvable from the field map in these data (echo spread "
        f"{sep['echo_cycles']:.2f} fat cycles, readout shift {sep['readout_shift_px']:.2f} px): "
        "fat fraction and field map are unreliable"
    )


def score(rec: Reconstruction, truth: GroundTruth) -> dict[str, float]:
    """NRMSE, HFEN, SSIM, fat-fraction MAE and field-map RMSE, with the all-zero
    predictors' scores; with std maps, the RMS of error / std (1 when the stds are
    calibrated, above 1 when they are optimistic)."""
    ref = truth.image_at(rec.image_time_s)
    image = _as_frames(rec.image, tuple(ref.shape), "image")
    mask = truth.mask
    scores = {
        "nrmse": metrics.nrmse(image, ref),
        "hfen": metrics.hfen(image, ref),
        "ssim": metrics.ssim(image, ref),
    }
    if rec.fat_fraction is not None:
        ff = _as_frames(rec.fat_fraction, tuple(truth.fat_fraction.shape), "fat_fraction")
        scores["fat_fraction_mae"] = metrics.fat_fraction_mae(ff, truth.fat_fraction, mask)
        scores["fat_fraction_mae_zero"] = metrics.fat_fraction_mae(
            np.zeros(tuple(truth.fat_fraction.shape)), truth.fat_fraction, mask
        )
        if rec.fat_fraction_std is not None:
            scores["fat_fraction_z_rms"] = _z_rms(
                ff, truth.fat_fraction, rec.fat_fraction_std, mask
            )
    if rec.field_map_hz is not None:
        fm_true = truth.field_map_hz
        fm_est = (
            rec.field_map_hz.expand_as(fm_true)
            if fm_true.ndim > rec.field_map_hz.ndim
            else rec.field_map_hz
        )
        water_mask = (
            mask & (truth.water.abs() > truth.fat.abs()) if mask.ndim == truth.water.ndim else mask
        )
        scores["field_map_rmse_hz"] = metrics.field_map_rmse(fm_est, fm_true, water_mask)
        scores["field_map_rmse_zero_hz"] = metrics.field_map_rmse(
            torch.zeros_like(fm_true), fm_true, water_mask
        )
        if rec.field_map_std_hz is not None:
            std = rec.field_map_std_hz
            std = std.expand_as(fm_true) if fm_true.ndim > std.ndim else std
            scores["field_map_z_rms"] = _z_rms(fm_est, fm_true, std, water_mask)
    return scores


def _as_frames(estimate: torch.Tensor, shape: tuple[int, ...], name: str) -> torch.Tensor:
    """``estimate`` in the truth's frame layout: a one-frame dynamic result (1, ny, nx)
    against a static truth, a static result against every frame of a dynamic truth."""
    if tuple(estimate.shape) == shape:
        return estimate
    if estimate.ndim == len(shape) + 1 and estimate.shape[0] == 1:
        return _as_frames(estimate[0], shape, name)
    if estimate.ndim + 1 == len(shape) and tuple(estimate.shape) == shape[1:]:
        return estimate.expand(shape)
    raise ValueError(
        f"output {name} must have the truth's shape {shape} (or one frame of it), "
        f"got {tuple(estimate.shape)}"
    )


def _z_rms(estimate, truth, std, mask) -> float:
    """sqrt(mean(((estimate - truth) / std)^2)) inside ``mask`` (std 0 counts as tiny)."""
    est, ref, sd = (np.asarray(v, dtype=np.float64) for v in (estimate, truth, std))
    m = np.broadcast_to(np.asarray(mask, dtype=bool), ref.shape)
    z = (est[m] - ref[m]) / np.maximum(sd[m], 1e-12)
    return float(np.sqrt(np.mean(z**2))) if z.size else float("nan")


def compare_files(output: Path, truth: Path) -> dict[str, float]:
    """Scores of the reconstruction in ``output`` against the ground truth in ``truth``."""
    return score(read_result(output), read_truth(truth))


def scores_table(rows: dict[str, dict[str, float]]) -> Table:
    """A rich table, one row per reconstruction, one column per metric."""
    columns = sorted({k for scores in rows.values() for k in scores}, key=_metric_order)
    zero = any("zero" in c for c in columns)
    caption = "(zero): the all-zero predictor" if zero else None
    table = Table(title="Reconstruction vs ground truth", caption=caption)
    table.add_column("reconstruction", no_wrap=True)
    for c in columns:
        table.add_column(_HEADERS.get(c, c), justify="right", no_wrap=True)
    for name, scores in rows.items():
        table.add_row(name, *(f"{scores[c]:.4g}" if c in scores else "-" for c in columns))
    return table


_HEADERS = {
    "nrmse": "NRMSE",
    "hfen": "HFEN",
    "ssim": "SSIM",
    "fat_fraction_mae": "FF MAE",
    "fat_fraction_mae_zero": "FF MAE (zero)",
    "field_map_rmse_hz": "B0 RMSE Hz",
    "field_map_rmse_zero_hz": "B0 RMSE (zero)",
    "fat_fraction_z_rms": "FF err/std",
    "field_map_z_rms": "B0 err/std",
}


def print_table(console: Console, table: Table) -> None:
    """Print ``table`` whole: wider than the console when it must (a pipe or a file is
    80 columns wide for rich, which would cut names and headers)."""
    width = console.measure(table).maximum
    console.print(table, width=max(console.width, width))


def _metric_order(name: str) -> int:
    order = list(_HEADERS)
    return order.index(name) if name in order else len(order)


def demo(
    folder: Path,
    size: int = 128,
    device: str = "cpu",
    seed: int = 0,
    console: Console | None = None,
) -> tuple[Table, Path]:
    """The README's main job: simulate, reconstruct with every method, score, draw a figure."""
    from mrsolve.recon.figures import comparison_figure

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    raw, truth_path = folder / "raw.h5", folder / "truth.h5"
    simulate_to_files(raw, truth_path, size=size, max_offres_hz=150.0, noise=0.01, seed=seed)
    truth = read_truth(truth_path)
    rows, images, maps = {}, {"truth": truth.image}, None
    for method in METHODS:
        out = folder / f"{method}.h5"
        fmap = truth_path if method == "conjugate-phase" else None
        flags = {"preset": "fatwater"} if method == "spectral" else None
        rec = reconstruct_file(raw, out, method, fmap, device, console=console, flags=flags)
        label = f"{method} (true B0 map)" if fmap is not None else method
        rows[label] = score(rec, truth)
        images[label] = rec.image
        if rec.fat_fraction is not None and rec.field_map_hz is not None:
            maps = {
                "fat fraction": (truth.fat_fraction, rec.fat_fraction),
                "field map (Hz)": (truth.field_map_hz * truth.mask, rec.field_map_hz * truth.mask),
            }
    figure = comparison_figure(images, rows, folder / "demo.png", maps)
    return scores_table(rows), figure
