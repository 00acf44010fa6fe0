"""What the ``recon`` subcommands do, as plain functions (the CLI only parses arguments).

Every function validates its input up front and raises ValueError/TypeError/OSError
with a message naming the problem; outputs are written atomically.
"""

from __future__ import annotations

import os
import time
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
from mrsolve.solvers.validation import resolve_device

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
    "spectral": a typed SpectralConfig with the checkpoint settings)."""
    options = load_method_options(config, method) if config is not None else {}
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
) -> Reconstruction:
    """Read ``raw``, reconstruct with ``method`` and write ``output`` (the output format).

    Options come from the ``[method]`` table of the TOML ``config``, then ``flags``
    (command-line values) on top. ``slices`` (None: all) picks slices of a multi-slice
    file; the output has a leading "slice" axis when the file holds several slices.
    """
    options = method_options(method, config, flags)
    check_request(method, options, field_map is not None)
    output = _check_output(output, "output", inputs=(Path(raw),))
    dev = resolve_device(device)
    scans = read_slices(raw, slices)
    first = next(iter(scans.values()))
    fmap = load_field_map(field_map, first.image_shape) if field_map is not None else None
    start = time.perf_counter()
    recs = []
    for index, scan in scans.items():
        label = method if len(scans) == 1 else f"{method} slice {index}"
        with progress_callback(label, console) as callback:
            recs.append(reconstruct_scan(scan, method, fmap, dev, options, callback))
    multi = len(first.extra.get("slices_in_file", [0])) > 1
    rec = stack_results(recs, "slice", list(scans)) if multi else recs[0]
    rec.runtime_s = time.perf_counter() - start
    rec.device = str(dev)
    rec.input_sha256 = sha256_file(raw)
    rec.config = {"method": method, "device": str(dev), **rec.config}
    write_result(output, rec)
    return rec


def separation_warning(rec: Reconstruction) -> str | None:
    """A one-line warning when the water / fat fit reports that the sampling cannot
    separate fat from the field map (the report's ``fat_separation``), else None."""
    sep = rec.config.get("report", {}).get("waterfat", {}).get("fat_separation")
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
    if tuple(rec.image.shape) != tuple(ref.shape):
        raise ValueError(
            f"output image must have the truth's shape {tuple(ref.shape)}, got {tuple(rec.image.shape)}"
        )
    mask = truth.mask
    scores = {
        "nrmse": metrics.nrmse(rec.image, ref),
        "hfen": metrics.hfen(rec.image, ref),
        "ssim": metrics.ssim(rec.image, ref),
    }
    if rec.fat_fraction is not None:
        scores["fat_fraction_mae"] = metrics.fat_fraction_mae(
            rec.fat_fraction, truth.fat_fraction, mask
        )
        scores["fat_fraction_mae_zero"] = metrics.fat_fraction_mae(
            np.zeros(tuple(truth.fat_fraction.shape)), truth.fat_fraction, mask
        )
        if rec.fat_fraction_std is not None:
            scores["fat_fraction_z_rms"] = _z_rms(
                rec.fat_fraction, truth.fat_fraction, rec.fat_fraction_std, mask
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
    table = Table(title="Reconstruction vs ground truth", caption="(zero): the all-zero predictor")
    table.add_column("reconstruction")
    for c in columns:
        table.add_column(_HEADERS.get(c, c), justify="right")
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
