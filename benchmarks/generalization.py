"""Generalization benchmark (issue 18): every method on scans drawn at random, not hand-picked.

Scans come from :mod:`mrsolve.data.scan_space` (spin / gradient echo, 1-4 echoes, dwell
5-50 us, readout 64-256, 1.5 / 3 T, 8-24 blades, 4-32 coils, 0.2-3 % correlated noise,
textured ellipse and real-brain anatomies, field maps with bumps and steps), simulated
on a 2x finer object grid with the explicit per-sample signal equation and written with
the ``ismrmrd`` package. A DEVELOPMENT set (seeds 0..n-1) and a HELD-OUT set (seeds
1000..1000+n-1) are cached under benchmarks/.cache/generalization/ (simulated once).
Choose defaults on dev only; report both. ``--set fresh`` (seeds 2000..) is a second
held-out draw, never looked at while choosing, written to docs/generalization_fresh.*.
``--set echo-both`` draws multi-echo gradient-echo scans only, a development set (seeds
3000..) and a held-out set (seeds 4000..) of their own for the water / fat head where
the echoes separate fat, written to docs/generalization_multiecho.*.

Per scan and method: NRMSE and HFEN (NRMSE of Laplacian-of-Gaussian filtered magnitudes,
sigma 1.5 px, after the NRMSE's least-squares scale) against the truth at the time the
result says its image was read out (``image_time_s``), fat-fraction MAE (object mask)
and field-map RMSE (water mask) next to the all-zero predictors, wall time. Classical
methods see the first echo of a multi-echo scan. Writes docs/generalization.md and
docs/generalization.png.

Two image truths: the box average of the fine object (what it holds inside each pixel,
detail beyond the sampled band included), and the resolution-matched image (what a
noiseless, blur-free, fully sampled Cartesian scan at N px would give:
``scan_space.resolution_matched_image``). The "band-limit oracle" row is the latter
scored against the former: the error no reconstruction at N px avoids.

    .venv/bin/python benchmarks/generalization.py [--set dev|heldout|both|fresh|echo-dev|echo-heldout|echo-both] [--n 8]
        [--quick] [--methods gridding,spectral,fatwater] [--threads 2] [--out docs/]
"""

from __future__ import annotations

import functools
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import _harness as h
import numpy as np
import torch

from mrsolve.data.ismrmrd_io import read_ismrmrd
from mrsolve.data.scan_space import (
    QUICK_SPACE,
    ScanSpace,
    read_truth_file,
    resolution_matched_image,
    scan_files,
)
from mrsolve.propeller.noise import prewhiten
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import echo_time
from mrsolve.recon import metrics
from mrsolve.recon.methods import reconstruct

sys.path.insert(0, str(Path(__file__).resolve().parent / "generalization"))

CACHE = Path(__file__).resolve().parent / ".cache" / "generalization"
SEEDS = {"dev": 0, "heldout": 1000, "fresh": 2000, "echo-dev": 3000, "echo-heldout": 4000}
#: multi-echo gradient-echo scans only (the "echo-*" sets): fat separated by the echoes
MULTI_ECHO_SPACE = ScanSpace(gradient_echo=1.0, multi_echo=1.0)


@dataclass
class Output:
    """What one method returned, reduced to what the metrics need."""

    image: np.ndarray
    image_time_s: float
    fat_fraction: np.ndarray | None = None
    field_map_hz: np.ndarray | None = None


def _first_echo(scan: Scan) -> Scan:
    return scan.select_blades(scan.echo == 0) if scan.n_echoes > 1 else scan


def _numpy(x) -> np.ndarray | None:
    return None if x is None else torch.as_tensor(x).detach().cpu().numpy()


def _from_rec(rec) -> Output:
    return Output(
        _numpy(rec.image),
        float(getattr(rec, "image_time_s", 0.0) or 0.0),
        _numpy(rec.fat_fraction),
        _numpy(rec.field_map_hz),
    )


def classical(name: str) -> Callable:
    def run(scan: Scan, truth, device) -> Output:
        fmap = truth.truth.field_map_hz if name == "conjugate-phase" else None
        return _from_rec(reconstruct(_first_echo(scan), name, field_map=fmap, device=device))

    return run


def _prewhitened(scan: Scan) -> Scan:
    if scan.noise is None:
        return scan
    return replace(scan, kspace=prewhiten(scan.kspace, scan.noise), noise=None)


def gridding_espirit(scan: Scan, truth, device) -> Output:
    import bart_baselines  # bench extra (bartorch)

    first = _prewhitened(_first_echo(scan))
    maps = bart_baselines.espirit_maps(first)
    return _from_rec(reconstruct(first, "gridding", coil_maps=maps, device=device))


def pics(regularizer: str) -> Callable:
    def run(scan: Scan, truth, device) -> Output:
        import bart_baselines  # bench extra (bartorch)

        first = _prewhitened(_first_echo(scan))
        maps = bart_baselines.espirit_maps(first)
        weight = pics_weights().get(regularizer, DEFAULT_PICS_WEIGHT)
        image = bart_baselines.pics(first, maps, regularizer, weight)
        return Output(image, echo_time(first.times, first.center_sample, first.echo))

    return run


def pics_weights() -> dict[str, float]:
    """BART pics weights chosen on the dev set (``--tune-pics``), else the default."""
    return json.loads(WEIGHTS_FILE.read_text()) if WEIGHTS_FILE.is_file() else {}


def tune_pics(files, grid=(1e-3, 1e-2, 1e-1)) -> dict[str, float]:
    """Per regularizer, the weight of ``grid`` with the lowest median NRMSE on ``files``."""
    import bart_baselines

    chosen = {}
    for reg in bart_baselines.REGULARIZERS:
        scores = {w: [] for w in grid}
        for raw, truth_path in files:
            scan, truth = read_ismrmrd(raw), read_truth_file(truth_path)
            first = _prewhitened(_first_echo(scan))
            maps = bart_baselines.espirit_maps(first)
            target, _ = truth.image_at(echo_time(first.times, first.center_sample, first.echo))
            for w in grid:
                scores[w].append(metrics.nrmse(bart_baselines.pics(first, maps, reg, w), target))
        medians = {w: float(np.median(v)) for w, v in scores.items()}
        print(f"pics {reg}: median NRMSE by weight {medians}", flush=True)
        chosen[reg] = min(medians, key=medians.get)
    WEIGHTS_FILE.write_text(json.dumps(chosen, indent=1) + "\n")
    return chosen


def spectral(preset: str) -> Callable:
    def run(scan: Scan, truth, device) -> Output:
        return _from_rec(reconstruct(scan, "spectral", device=device, preset=preset))

    return run


METHODS: dict[str, Callable] = {
    "gridding": classical("gridding"),
    "pipe": classical("pipe"),
    "conjugate-phase": classical("conjugate-phase"),  # with the TRUE field map
    "spectral": spectral("static"),
    "fatwater": spectral("fatwater"),
    "gridding-espirit": gridding_espirit,  # BART ecalib maps: the coil-map reference
    "pics-l1": pics("l1-wavelet"),
    "pics-tv": pics("tv"),
}
DEFAULT_METHODS = tuple(METHODS)
WEIGHTS_FILE = Path(__file__).resolve().parent / "generalization" / "pics_weights.json"
DEFAULT_PICS_WEIGHT = 0.01
ORACLE = "band-limit oracle"
IMAGE_METRICS = ("nrmse", "hfen", "nrmse_matched", "hfen_matched")


def score(out: Output, truth, matched: Callable[[float], np.ndarray]) -> dict:
    """Metrics of one output against a truth file's maps (``matched(t)``: the
    resolution-matched image at time t)."""
    target, exact = truth.image_at(out.image_time_s)
    mask = truth.truth.mask.numpy()
    row = {
        "nrmse": metrics.nrmse(out.image, target),
        "hfen": metrics.hfen(out.image, target),
        "nrmse_matched": metrics.nrmse(out.image, matched(out.image_time_s)),
        "hfen_matched": metrics.hfen(out.image, matched(out.image_time_s)),
        "image_time_ms": out.image_time_s * 1e3,
        "truth_exact": exact,
    }
    if out.fat_fraction is not None:
        row["ff_mae"] = metrics.fat_fraction_mae(out.fat_fraction, truth.truth.fat_fraction, mask)
    if out.field_map_hz is not None:
        fmap = np.broadcast_to(out.field_map_hz, mask.shape)
        row["field_rmse"] = metrics.field_map_rmse(fmap, truth.truth.field_map_hz, truth.water_mask)
    return row


def describe(params) -> str:
    echoes = "/".join(f"{te * 1e3:.1f}" for te in params.echo_times_s)
    seq = f"GRE TE {echoes} ms" if params.sequence == "gradient_echo" else "SE"
    return (
        f"{params.anatomy} {params.size}px {params.field_strength_t:g}T {seq}, "
        f"dwell {params.dwell_s * 1e6:.0f}us, {params.n_blades}x{params.n_lines} blades, "
        f"{params.n_coils} coils, noise {params.noise * 100:.1f}%, "
        f"|psi|<={params.max_offres_hz:.0f}Hz"
    )


def run_scan(raw: Path, truth_path: Path, methods, device) -> tuple[dict, dict]:
    """(per-method rows, images for the montage) of one scan."""
    scan, truth = read_ismrmrd(raw), read_truth_file(truth_path)
    mask = truth.truth.mask.numpy()
    zero = {
        "ff_mae": metrics.fat_fraction_mae(np.zeros(mask.shape), truth.truth.fat_fraction, mask),
        "field_rmse": metrics.field_map_rmse(
            np.zeros(mask.shape), truth.truth.field_map_hz, truth.water_mask
        ),
    }
    matched = functools.cache(lambda t: resolution_matched_image(truth.params, t))
    rows, images = {}, {"truth": np.abs(truth.truth.image.numpy())}
    for name in methods:
        out, seconds = h.timed(lambda name=name: METHODS[name](scan, truth, device), device=device)
        rows[name] = {**score(out, truth, matched), "time_s": seconds}
        images[name] = np.abs(out.image)
        if out.fat_fraction is not None:
            images[f"{name} ff"] = out.fat_fraction
    t_image = next(iter(rows.values()))["image_time_ms"] * 1e-3 if rows else 0.0
    oracle = Output(matched(t_image), t_image)
    rows[ORACLE] = {**score(oracle, truth, matched), "time_s": float("nan")}
    images["truth ff"] = truth.truth.fat_fraction.numpy()
    return {"zero": zero, "methods": rows, "params": truth.params}, images


def per_scan_table(name: str, result: dict) -> str:
    rows = []
    for method, r in result["methods"].items():
        rows.append(
            {
                "method": method,
                "NRMSE": r["nrmse"],
                "HFEN": r["hfen"],
                "NRMSE (matched)": r["nrmse_matched"],
                "HFEN (matched)": r["hfen_matched"],
                "image t (ms)": r["image_time_ms"],
                "FF MAE": r.get("ff_mae", float("nan")),
                "field RMSE (Hz)": r.get("field_rmse", float("nan")),
                "time (s)": r["time_s"],
            }
        )
    zero = result["zero"]
    rows.append(
        {
            "method": "all-zero predictor",
            "FF MAE": zero["ff_mae"],
            "field RMSE (Hz)": zero["field_rmse"],
        }
    )
    print(f"\n{name}: {describe(result['params'])}", flush=True)
    return f"**{name}**: {describe(result['params'])}\n\n" + h.table(rows, spec=".3g")


def ratios(results: dict, method: str) -> dict[str, list[float]]:
    """Per scan: NRMSE and HFEN over gridding's, FF MAE and field RMSE over the zero predictor."""
    out = {key: [] for key in (*IMAGE_METRICS, "ff_mae", "field_rmse")}
    for res in results.values():
        r, grid = res["methods"].get(method), res["methods"].get("gridding")
        if r is None:
            continue
        for key in IMAGE_METRICS:
            if grid is not None:
                out[key].append(r[key] / grid[key])
        for key in ("ff_mae", "field_rmse"):
            if key in r and res["zero"][key] > 0:
                out[key].append(r[key] / res["zero"][key])
    return out


def summary_table(results: dict, methods) -> str:
    rows = []
    for method in (*methods, ORACLE):
        ratio = ratios(results, method)
        row = {"method": method}
        for key, label in (
            ("nrmse", "NRMSE / gridding"),
            ("hfen", "HFEN / gridding"),
            ("nrmse_matched", "NRMSE / gridding (matched)"),
            ("hfen_matched", "HFEN / gridding (matched)"),
            ("ff_mae", "FF MAE / zero"),
            ("field_rmse", "field RMSE / zero"),
        ):
            v = ratio[key]
            row[label] = f"{np.median(v):.3g} (worst {max(v):.3g})" if v else ""
        times = [res["methods"][method]["time_s"] for res in results.values()]
        row["median time (s)"] = "" if method == ORACLE else float(np.median(times))
        rows.append(row)
    return h.table(rows, spec=".3g")


def figure(results: dict, images: dict, methods, out: Path | None, doc: str) -> None:
    plt = h.pyplot()
    montage = list(images)[:3]
    cols = ["truth", "gridding", "spectral", "fatwater ff", "truth ff"]
    fig = plt.figure(figsize=(12, 3.6 + 2.4 * len(montage)), layout="constrained")
    grid = fig.add_gridspec(1 + len(montage), len(cols), height_ratios=[1.3] + [1] * len(montage))
    ax = fig.add_subplot(grid[0, :])
    names = list(results)
    x = np.arange(len(names))
    for i, method in enumerate([*(m for m in methods if m != "gridding"), ORACLE]):
        vals = [
            res["methods"][method]["nrmse"] / res["methods"]["gridding"]["nrmse"]
            if method in res["methods"] and "gridding" in res["methods"]
            else np.nan
            for res in results.values()
        ]
        style = {"marker": "_", "color": "k", "ms": 14} if method == ORACLE else {"marker": "o"}
        ax.plot(x + 0.08 * i, vals, ls="none", label=method, **style)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    short = [
        n.replace("heldout ", "held-out ").replace("scan", "").replace(" 0", " ") for n in names
    ]
    ax.set_xticks(x, short, rotation=30, ha="right")
    ax.set_ylabel("NRMSE / gridding")
    ax.legend(ncol=4)
    for r, name in enumerate(montage):
        for c, col in enumerate(cols):
            axc = fig.add_subplot(grid[1 + r, c])
            axc.axis("off")
            if col not in images[name]:
                continue
            img = images[name][col]
            if col.endswith("ff"):
                axc.imshow(img, cmap="magma", vmin=0, vmax=1)
            else:
                axc.imshow(
                    metrics.scale_fit(img, images[name]["truth"]),
                    cmap="gray",
                    vmin=0,
                    vmax=np.percentile(images[name]["truth"], 99.5),
                )
            axc.set_title(f"{name} {col}" if c == 0 else col)
    h.save_figure(fig, doc, out=out)


def main() -> None:
    p = h.parser(__doc__, quick="3 small scans (64 px readout, <= 8 coils)", threads=2)
    p.add_argument("--set", choices=(*SEEDS, "both", "echo-both"), default="dev")
    p.add_argument("--n", type=int, default=8, help="scans per set")
    p.add_argument(
        "--methods",
        default=",".join(DEFAULT_METHODS),
        help=f"comma-separated, from {list(METHODS)}",
    )
    p.add_argument(
        "--tune-pics",
        action="store_true",
        help="choose the BART pics weights on the dev set first (writes "
        "benchmarks/generalization/pics_weights.json)",
    )
    args = p.parse_args()
    device = h.setup(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        p.error(f"unknown methods {unknown}; known: {list(METHODS)}")
    both = {"both": ("dev", "heldout"), "echo-both": ("echo-dev", "echo-heldout")}
    sets = both.get(args.set, (args.set,))
    space = MULTI_ECHO_SPACE if args.set.startswith("echo") else ScanSpace()
    space, n = (QUICK_SPACE, min(args.n, 3)) if args.quick else (space, args.n)
    parts, results_all, images = [], {}, {}
    for which in sets:
        folder = CACHE / (("quick_" if args.quick else "") + which)
        start = time.perf_counter()
        files = scan_files(range(SEEDS[which], SEEDS[which] + n), folder, space)
        print(f"{which}: {n} scans ready in {folder} ({time.perf_counter() - start:.0f} s)")
        if args.tune_pics and which == "dev":
            print(f"pics weights chosen on dev: {tune_pics(files)}", flush=True)
        results, tables = {}, []
        for raw, truth in files:
            name = f"{which} {raw.stem.split('_')[0]}"
            results[name], images[name] = run_scan(raw, truth, methods, device)
            tables.append(per_scan_table(name, results[name]))
        print(f"\nsummary ({which}): median (worst) ratio over the {n} scans", flush=True)
        parts += [
            f"## {which} set: summary",
            summary_table(results, methods),
            f"## {which} set: per scan",
            *tables,
        ]
        results_all.update(results)
    out = h.out_dir(args)
    # a fresh draw (seeds 2000..) is a second held-out set and the multi-echo sets a
    # development / held-out pair of their own, each written beside the main tables
    doc = "generalization_fresh" if args.set == "fresh" else "generalization"
    doc += "_multiecho" if args.set.startswith("echo") else ""
    h.write_doc(
        doc,
        "Generalization benchmark (issue 18)",
        __doc__.split("\n\n")[1],
        *parts,
        out=out,
    )
    figure(results_all, images, methods, out, doc)


if __name__ == "__main__":
    main()
