"""Multi-echo spectral reconstruction: two echoes jointly against each echo alone.

A two-echo gradient-echo PROPELLER slice (TE 1.15 ms and 2.3 ms: fat opposed and in
phase at 3 T) is simulated at a high readout bandwidth, where one echo's samples span
too little time to separate fat from water. The spectral model reconstructs each echo
alone and both jointly (echoes as blades with their own TE, ``Scan.echo``), with the
"fatwater" preset. Reported against the simulator's truth: fat-fraction MAE inside the
object, field-map RMSE inside the water, image NRMSE, wall time, and the all-zero
predictors' scores. Several seeds; mean and spread.

Writes docs/batch_multi_echo.md and docs/batch_multi_echo.png.

    python benchmarks/multi_echo.py [--quick] [--size 48] [--bandwidth 1000] [--seeds 3]
"""

from __future__ import annotations

import _harness as h
import numpy as np
import torch

from mrsolve.data.exam import simulate_exam
from mrsolve.recon import metrics
from mrsolve.recon.spectral import reconstruct_spectral

ECHOES_S = (0.00115, 0.0023)


def scores(scan, truth, iterations: int, options: dict) -> dict:
    # The simulator's truth image is water + fat at t = 0 (in phase); a gradient-echo
    # reconstruction reads its image out at the first echo's TE by default, where fat is
    # opposed at 3 T, so the NRMSE needs the image at t = 0 too.
    rec, wall = h.timed(
        lambda: reconstruct_spectral(
            scan, preset="fatwater", iterations=iterations, image_time="zero", **options
        )
    )
    mask = truth.mask
    water = mask & (truth.water.abs() > truth.fat.abs())
    image = rec.image if rec.image.ndim == 2 else rec.image[0]
    return {
        "fat_fraction_mae": metrics.fat_fraction_mae(rec.fat_fraction, truth.fat_fraction, mask),
        "field_map_rmse_hz": metrics.field_map_rmse(rec.field_map_hz, truth.field_map_hz, water),
        "nrmse": metrics.nrmse(image, truth.image),
        "wall_s": wall,
    }


def main() -> None:
    parser = h.parser(__doc__, quick="24 px, 1 seed, few iterations", device=None, threads=None)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--bandwidth", type=float, default=1000.0, help="Hz per pixel")
    parser.add_argument("--seeds", type=int, default=3, help="number of seeds from --seed on")
    parser.add_argument("--iterations", type=int, default=30)
    args = parser.parse_args()
    out = h.out_dir(args)
    options: dict = {}
    if args.quick:
        args.size, args.seeds, args.iterations = 24, 1, 8
        options = {"frequency": {"n_bins": 16}, "waterfat": {"init_cg_iterations": 8}}
    n_read = 2 * args.size
    results: dict[str, list[dict]] = {"echo 1 (1.15 ms)": [], "echo 2 (2.3 ms)": [], "joint": []}
    zeros = []
    for seed in range(args.seed, args.seed + args.seeds):
        sim = simulate_exam(
            n_slices=1,
            echo_times_s=ECHOES_S,
            seed=seed,
            size=args.size,
            n_blades=8,
            n_lines=max(12, args.size // 3),
            n_coils=4,
            noise=0.01,
            sequence="gradient_echo",
            max_offres_hz=60.0,
            dwell_s=1 / (args.bandwidth * n_read),
        )
        scan = sim.slices[0][0]
        fields = ("image", "water", "fat", "fat_fraction", "field_map_hz", "mask")
        truth = type(sim.truth)(**{k: getattr(sim.truth, k)[0] for k in fields})
        for e, name in enumerate(list(results)[:2]):
            results[name].append(
                scores(scan.select_blades(scan.echo == e), truth, args.iterations, options)
            )
        results["joint"].append(scores(scan, truth, args.iterations, options))
        water = truth.mask & (truth.water.abs() > truth.fat.abs())
        zero_ff, zero_fm = (
            torch.zeros_like(truth.fat_fraction),
            torch.zeros_like(truth.field_map_hz),
        )
        zeros.append(
            {
                "fat_fraction_mae": metrics.fat_fraction_mae(
                    zero_ff, truth.fat_fraction, truth.mask
                ),
                "field_map_rmse_hz": metrics.field_map_rmse(zero_fm, truth.field_map_hz, water),
            }
        )
    keys = ("fat_fraction_mae", "field_map_rmse_hz", "nrmse", "wall_s")
    title = (
        f"Two echoes jointly vs one: {args.size} px, {args.bandwidth:g} Hz/px, TE "
        f"{ECHOES_S[0] * 1e3:g}/{ECHOES_S[1] * 1e3:g} ms, {args.seeds} seed(s), {args.iterations} it"
    )
    header = [
        "reconstruction",
        "fat-fraction MAE",
        "field-map RMSE (Hz)",
        "NRMSE",
        "wall (s)",
        "time vs echo 1",
    ]
    base_time = np.mean([r["wall_s"] for r in results["echo 1 (1.15 ms)"]])
    means, rows = {}, []
    for name, runs in results.items():
        stats = {k: (np.mean([r[k] for r in runs]), np.std([r[k] for r in runs])) for k in keys}
        means[name] = stats
        cells = [name] + [f"{stats[k][0]:.4g} ± {stats[k][1]:.2g}" for k in keys]
        rows.append([*cells, f"{stats['wall_s'][0] / base_time:.2f}"])
    zero_ff = np.mean([z["fat_fraction_mae"] for z in zeros])
    zero_fm = np.mean([z["field_map_rmse_hz"] for z in zeros])
    rows.append(["all-zero predictor", f"{zero_ff:.4g}", f"{zero_fm:.4g}", "-", "-", "-"])
    print(title)
    note = (
        "NRMSE: |image| at t = 0 (image_time 'zero', water and fat in phase) against the "
        "simulator's truth image, after a least-squares scale fit."
    )
    h.write_doc("batch_multi_echo", title, note, h.table(rows, header), out=out)
    fig, axes = h.pyplot().subplots(1, 2, figsize=(8, 3.2))
    names = [*results, "zero"]
    for ax, key, zero in (
        (axes[0], "fat_fraction_mae", zero_ff),
        (axes[1], "field_map_rmse_hz", zero_fm),
    ):
        values = [means[n][key][0] for n in results] + [zero]
        errors = [means[n][key][1] for n in results] + [0]
        ax.bar(names, values, yerr=errors, color=["tab:gray", "tab:gray", "tab:blue", "tab:red"])
        ax.set_title(key.replace("_", " "), fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    h.save_figure(fig, "batch_multi_echo", out=out)


if __name__ == "__main__":
    main()
