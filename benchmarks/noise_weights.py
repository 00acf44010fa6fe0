"""Regularization weights from the measured noise: the static preset on noisier scans.

The generalization benchmark's scans (benchmarks/generalization.py) carry 0.2-3 % noise
relative to the k-space RMS, so their gridded images have a noise std of 0.03-0.2 % of the
image level: weights chosen there alone would suit only very high SNR. Here every scan of
a set gets white noise of 30 %, 100 % and 300 % of its k-space RMS added (to the data and to
its noise scan, seeded per scan), and the static preset runs twice: with the weight fixed
(``tv_noise`` 0, the weight of the generalization benchmark) and with the default that
grows with the noise std measured from the noise scan (``tv_noise``,
:func:`mrsolve.recon.spectral.stages.free_volume.noise_scaled`). Columns: NRMSE and HFEN
against the scan's truth, as ratios to gridding of the same noisy data; median (worst)
over the set. ``tv_noise`` was chosen on the dev set; the held-out set reports it.

Usage: python benchmarks/noise_weights.py [--set dev|heldout|both] [--levels 0.3,1,3]
Duration: about 10 minutes for both sets on 2 CPU threads.
"""

from __future__ import annotations

import functools
from dataclasses import replace

import _harness as h
import generalization as g
import numpy as np
import torch
from rich.progress import track

from mrsolve.data.ismrmrd_io import read_ismrmrd
from mrsolve.data.scan_space import (
    ScanSpace,
    read_truth_file,
    resolution_matched_image,
    scan_files,
)
from mrsolve.propeller.scan import Scan
from mrsolve.recon.methods import reconstruct
from mrsolve.recon.spectral.config import resolve_config

VARIANTS = {"fixed weight": {"free": {"tv_noise": 0.0}}, "noise-scaled (default)": {}}


def with_added_noise(scan: Scan, level: float, seed: int) -> Scan:
    """``scan`` with white complex noise of ``level`` x its k-space RMS added to the data
    and to its noise scan (so that prewhitening sees it)."""
    gen = torch.Generator().manual_seed(seed)
    std = level * float(scan.kspace.abs().square().mean().sqrt())

    def noise(like: torch.Tensor) -> torch.Tensor:
        parts = torch.randn((2, *like.shape), generator=gen) * (std / np.sqrt(2))
        return torch.complex(parts[0], parts[1]).to(like.dtype)

    added = None if scan.noise is None else scan.noise + noise(scan.noise)
    return replace(scan, kspace=scan.kspace + noise(scan.kspace), noise=added)


def run_set(which: str, levels: list[float], device) -> list[dict]:
    """One row per (level, variant): median and worst ratios to gridding over the set."""
    seeds = range(g.SEEDS[which], g.SEEDS[which] + 8)
    files = scan_files(seeds, g.CACHE / which, ScanSpace())
    ratios: dict[tuple, list] = {}
    tv = {}
    jobs = [(f, s, lev) for f, s in zip(files, seeds, strict=True) for lev in levels]
    for (raw, truth_path), seed, level in track(jobs, description=f"{which} set"):
        truth = read_truth_file(truth_path)
        scan = with_added_noise(read_ismrmrd(raw), level, seed)
        matched = functools.cache(lambda t, p=truth.params: resolution_matched_image(p, t))
        grid = g.score(g.METHODS["gridding"](scan, truth, device), truth, matched)
        for name, overrides in VARIANTS.items():
            rec = reconstruct(scan, "spectral", device=device, **overrides)
            row = g.score(g._from_rec(rec), truth, matched)
            ratios.setdefault((level, name), []).append(
                (row["nrmse"] / grid["nrmse"], row["hfen"] / grid["hfen"])
            )
            tv.setdefault((level, name), []).append(rec.config["report"]["free"]["tv"])
    rows = []
    for (level, name), values in ratios.items():
        v = np.asarray(values)
        rows.append(
            {
                "set": which,
                "added noise": f"{level:.0%}",
                "weight": name,
                "NRMSE / gridding": f"{np.median(v[:, 0]):.3f} ({v[:, 0].max():.3f})",
                "HFEN / gridding": f"{np.median(v[:, 1]):.3f} ({v[:, 1].max():.3f})",
                "scans worse than gridding": int(np.sum(np.any(v > 1, axis=1))),
                "median tv": float(np.median(tv[(level, name)])),
            }
        )
    return rows


def main() -> None:
    p = h.parser(__doc__, quick="dev set, 100 % added noise only", threads=2)
    p.add_argument("--set", choices=("dev", "heldout", "both"), default="both")
    p.add_argument("--levels", default="0.3,1,3", help="added noise / k-space RMS")
    args = p.parse_args()
    device = h.setup(args)
    levels = [1.0] if args.quick else [float(v) for v in args.levels.split(",")]
    sets = ("dev",) if args.quick else ("dev", "heldout") if args.set == "both" else (args.set,)
    rows = [row for which in sets for row in run_set(which, levels, device)]
    free = resolve_config().free
    h.write_doc(
        "noise_weights",
        "Regularization weights from the measured noise (issue 18, part 5)",
        __doc__.split("\n\n")[1],
        f"Default: tv = hypot({free.tv:g}, {free.tv_noise:g} * noise_std^1.5), noise_std the "
        "gridding image's noise std in units of its 99th-percentile level.",
        h.table(rows, spec=".4f"),
        out=h.out_dir(args),
    )


if __name__ == "__main__":
    main()
