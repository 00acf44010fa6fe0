"""Calibration of the fat-fraction and field-map stds of ``--preset fatwater`` (issue 18, part 4).

Runs ``--preset fatwater`` with its std maps on the scans of benchmarks/generalization.py
and compares the errors with the predicted stds inside the benchmark's masks (fat
fraction: object mask; field map: water mask). Per scan: RMS(error / std), 1 when
calibrated, and the coverage of |error| <= 1.96 std, 95 % when calibrated (the same for
a Gaussian error). The calibrated std is sqrt((factor * s)^2 + floor^2), s the noise-only
std of ``uncertainty.water_fat_std``; factor and floor are chosen on the development set
(scans weighted equally: pooled RMS^2 the mean of the scans' mean squares, coverage the
mean of theirs), separately for the scans whose echoes resolve fat and for the others;
the development sets are generalization.py's "dev" and "echo-dev" (multi-echo), the
held-out ones "heldout" and "echo-heldout", all reported with the defaults of
``WaterFatConfig``.
Each scan's fit is cached under benchmarks/.cache/water_fat_calibration/ (``--refresh``
recomputes). Writes docs/uncertainty_calibration.md.

    .venv/bin/python benchmarks/water_fat_calibration.py [--set dev|heldout|both] [--n 8]
        [--refresh] [--quick]
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path

import _harness as h
import generalization as g
import numpy as np

from mrsolve.data.ismrmrd_io import read_ismrmrd
from mrsolve.data.scan_space import ScanSpace, read_truth_file, scan_files
from mrsolve.propeller.fat import fat_separation, fat_spectrum
from mrsolve.recon.spectral import reconstruct
from mrsolve.recon.spectral.config import FrequencyConfig
from mrsolve.recon.spectral.stages.water_fat import StdCalibration, WaterFatConfig
from mrsolve.recon.spectral.uncertainty import FAT_FRACTION_PRIOR_STD

CACHE = Path(__file__).resolve().parent / ".cache" / "water_fat_calibration"
#: coverage of |error| <= Z std for a calibrated Gaussian error
Z, COVERAGE = 1.96, 0.95
#: the maps compared: (key of the cached arrays, label, unit)
MAPS = (("ff", "fat fraction", ""), ("psi", "field map", " Hz"))


def fit_scan(raw: Path, truth_path: Path, device) -> dict:
    """Errors, noise-only stds (inside the masks) and the cap of one fatwater run."""
    scan, truth = read_ismrmrd(raw), read_truth_file(truth_path)
    plain = asdict(StdCalibration())  # factor 1, floor 0: the noise-only std
    noise_only = {"std_maps": True, "std_echo_resolved": plain, "std_otherwise": plain}
    start = time.perf_counter()
    rec = reconstruct(scan, "fatwater", device=device, waterfat=noise_only)
    seconds = time.perf_counter() - start
    t = truth.truth
    mask, wmask = t.mask.numpy(), truth.water_mask
    return {
        "ff_err": (rec.fat_fraction.numpy() - t.fat_fraction.numpy())[mask],
        "ff_std": rec.fat_fraction_std.numpy()[mask],
        "psi_err": (rec.field_map_hz.numpy() - t.field_map_hz.numpy())[wmask],
        "psi_std": rec.field_map_std_hz.numpy()[wmask],
        "psi_cap": rec.config["waterfat"]["max_abs_hz"] / np.sqrt(3),
        "time_s": seconds,
    }


def collect(which: str, n: int, device, refresh: bool) -> dict[str, dict]:
    """{scan name: fit_scan's arrays} of a set, from the cache where present."""
    space = g.MULTI_ECHO_SPACE if which.startswith("echo") else ScanSpace()
    files = scan_files(range(g.SEEDS[which], g.SEEDS[which] + n), g.CACHE / which, space)
    (CACHE / which).mkdir(parents=True, exist_ok=True)
    out = {}
    for raw, truth in files:
        name = raw.stem.split("_")[0]
        path = CACHE / which / f"{raw.stem}.npz"
        if refresh or not path.is_file():
            np.savez(path, **fit_scan(raw, truth, device))
        out[name] = {**np.load(path), "echo_resolved": echo_resolved(read_ismrmrd(raw))}
        print(f"{which} {name}: fatwater with std maps {float(out[name]['time_s']):.1f} s")
    return out


def echo_resolved(scan) -> bool:
    """The calibration class of a scan: its echoes separate fat (as in ``reconstruct``)."""
    spectrum = fat_spectrum(scan.field_strength_t, FrequencyConfig().fat_model)
    cycles, _ = fat_separation(scan.times, scan.center_sample, scan.echo, spectrum)
    return cycles >= WaterFatConfig().min_echo_cycles


def calibrated(res: dict, key: str, factor: float, floor: float) -> np.ndarray:
    """The std of ``water_fat_std`` with ``factor`` and ``floor`` (its cap included)."""
    cap = FAT_FRACTION_PRIOR_STD if key == "ff" else float(res["psi_cap"])
    return np.minimum(np.hypot(factor * res[f"{key}_std"], floor), cap)


def scores(res: dict, key: str, factor: float, floor: float) -> tuple[float, float]:
    """(mean of (error / std)^2, coverage of |error| <= Z std) of one scan."""
    ratio = res[f"{key}_err"] / calibrated(res, key, factor, floor)
    return float(np.mean(ratio**2)), float(np.mean(np.abs(ratio) <= Z))


def pooled(results: dict, key: str, factor: float, floor: float) -> tuple[float, float]:
    """(RMS ratio, coverage) over the scans of a set, each scan weighted equally."""
    ms, cov = zip(*(scores(r, key, factor, floor) for r in results.values()), strict=True)
    return float(np.sqrt(np.mean(ms))), float(np.mean(cov))


def choose(results: dict, key: str) -> tuple[float, float]:
    """(factor, floor) on a grid with pooled RMS ratio nearest 1 and coverage nearest 95 %
    (both deviations weighted alike: log RMS ratio, (coverage - 95 %) / 5 %)."""
    cap = FAT_FRACTION_PRIOR_STD if key == "ff" else 200 / np.sqrt(3)
    factors = np.logspace(0, 3, 31)
    floors = np.concatenate([[0.0], cap * np.logspace(-3, 0, 31)])
    best, choice = np.inf, (1.0, 0.0)
    for factor in factors:
        for floor in floors:
            rms, cov = pooled(results, key, factor, floor)
            loss = np.log(rms) ** 2 + ((cov - COVERAGE) / 0.05) ** 2
            if loss < best:
                best, choice = loss, (float(factor), float(floor))
    return choice


def defaults(echo_resolved: bool) -> dict[str, tuple[float, float]]:
    """(factor, floor) of each map at the fatwater preset's defaults."""
    wf = WaterFatConfig()
    cal = wf.std_echo_resolved if echo_resolved else wf.std_otherwise
    return {
        "ff": (cal.fat_fraction_factor, cal.fat_fraction_floor),
        "psi": (cal.field_map_factor, cal.field_map_floor_hz),
    }


def split(results: dict) -> dict[bool, dict]:
    """The scans of ``results`` by whether their echoes resolve fat (calibrated apart)."""
    out = {True: {}, False: {}}
    for name, res in results.items():
        out[res["echo_resolved"]][name] = res
    return out


def table(results: dict) -> str:
    """Per scan and pooled: noise-only and calibrated RMS(error / std), coverage."""
    rows = []
    for name, res in results.items():
        constants = defaults(res["echo_resolved"])
        row = {"scan": name, "echoes resolve fat": "yes" if res["echo_resolved"] else "no"}
        for key, label, _ in MAPS:
            row[f"{label}: noise-only RMS(err/std)"] = np.sqrt(scores(res, key, 1.0, 0.0)[0])
            rms, cov = scores(res, key, *constants[key])
            row[f"{label}: RMS(err/std)"] = np.sqrt(rms)
            row[f"{label}: coverage"] = f"{100 * cov:.0f} %"
        rows.append(row)
    for flag, part in split(results).items():
        if not part:
            continue
        constants = defaults(flag)
        row = {"scan": "pooled", "echoes resolve fat": "yes" if flag else "no"}
        for key, label, _ in MAPS:
            row[f"{label}: noise-only RMS(err/std)"] = pooled(part, key, 1.0, 0.0)[0]
            rms, cov = pooled(part, key, *constants[key])
            row[f"{label}: RMS(err/std)"] = rms
            row[f"{label}: coverage"] = f"{100 * cov:.0f} %"
        rows.append(row)
    return h.table(rows, spec=".3g")


def main() -> None:
    p = h.parser(__doc__, threads=2, quick="3 scans per set, print only")
    p.add_argument("--set", choices=("dev", "heldout", "both"), default="both")
    p.add_argument("--n", type=int, default=8, help="scans per set")
    p.add_argument("--refresh", action="store_true", help="recompute cached fits")
    args = p.parse_args()
    device = h.setup(args)
    groups = {"dev": ("dev", "echo-dev"), "heldout": ("heldout", "echo-heldout")}
    sets = groups["dev"] + groups["heldout"] if args.set == "both" else groups[args.set]
    n = min(args.n, 3) if args.quick else args.n
    results = {which: collect(which, n, device, args.refresh) for which in sets}
    parts = []
    development = {
        f"{w} {k}": r for w in groups["dev"] if w in results for k, r in results[w].items()
    }
    if development:
        lines = []
        for flag, part in split(development).items():
            kind = "echoes resolve fat" if flag else "otherwise"
            for key, label, unit in MAPS:
                factor, floor = choose(part, key) if part else (float("nan"), float("nan"))
                ours = defaults(flag)[key]
                lines.append(
                    f"- {label}, {kind} ({len(part)} dev scans): chosen factor {factor:.3g}, "
                    f"floor {floor:.3g}{unit}; WaterFatConfig's {ours[0]:.3g}, {ours[1]:.3g}{unit}"
                )
        print("\n".join(lines))
        parts += ["## Constants", "\n".join(lines)]
    for which, res in results.items():
        parts += [f"## {which} set (WaterFatConfig defaults)", table(res)]
    h.write_doc(
        "uncertainty_calibration",
        "Calibration of the fat-fraction and field-map stds (issue 18, part 4)",
        __doc__.split("\n\n")[1],
        *parts,
        out=h.out_dir(args),
    )


if __name__ == "__main__":
    main()
