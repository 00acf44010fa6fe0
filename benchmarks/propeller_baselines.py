"""Classical PROPELLER reconstructions on simulated phantoms, and the NUFFT against sigpy.

For phantoms with 0, 100 and 200 Hz maximum off-resonance, with and without fat, at
1.5 T and 3 T: NRMSE / SSIM of gridding, Pipe's PROPELLER and conjugate phase given
the true field map. Then forward + adjoint NUFFT time of ours against sigpy's on the
same trajectory, as a ratio from one run. Writes docs/propeller_baselines.md and
docs/propeller_baselines.png (truth, gridding, Pipe, conjugate phase on the hardest case).

    .venv/bin/python benchmarks/propeller_baselines.py [--quick] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import itertools
from functools import partial

import _harness as h
import torch
from nufft_speed import run as nufft_speed

from mrsolve.data.simulate import simulate
from mrsolve.recon import metrics
from mrsolve.recon.figures import comparison_figure
from mrsolve.recon.methods import reconstruct

METHODS = ("gridding", "pipe", "conjugate-phase")


def run_cases(size: int, device: torch.device, noise: float, seed: int) -> tuple[list[dict], dict]:
    rows, hardest = [], {}
    cases = itertools.product((1.5, 3.0), (False, True), (0.0, 100.0, 200.0))
    for field, fat, offres in cases:
        sim = simulate(
            size=size, field_strength_t=field, fat=fat, max_offres_hz=offres, noise=noise, seed=seed
        )
        truth = sim.truth
        row = {"field_t": field, "fat": fat, "offres_hz": offres}
        images = {"truth": truth.image}
        for method in METHODS:
            fmap = truth.field_map_hz if method == "conjugate-phase" else None
            rec, row[f"{method} s"] = h.timed(
                partial(reconstruct, sim.scan, method, field_map=fmap, device=device),
                device=device,
            )
            row[f"{method} nrmse"] = metrics.nrmse(rec.image, truth.image)
            row[f"{method} ssim"] = metrics.ssim(rec.image, truth.image)
            images[method] = rec.image
        rows.append(row)
        if field == 3.0 and fat and offres == 200.0:
            hardest = images
    return rows, hardest


def scores_table(rows: list[dict]) -> str:
    return h.table(
        [
            [
                r["field_t"],
                "yes" if r["fat"] else "no",
                f"{r['offres_hz']:.0f}",
                *[f"{r[f'{m} nrmse']:.3f} / {r[f'{m} ssim']:.3f}" for m in METHODS],
            ]
            for r in rows
        ],
        ["B0 (T)", "fat", "max off-res (Hz)", *METHODS],
    )


def speed_table(speed_rows: list[dict]) -> str:
    return h.table(
        speed_rows,
        {
            "name": "implementation",
            "ratio": "time / sigpy (os 1.25, width 4)",
            "err_fwd": "rel. error fwd vs DFT",
        },
        formats={"ratio": ".3f", "err_fwd": ".1e"},
    )


def main() -> None:
    args = h.parser(__doc__, quick="64 x 64 phantoms", threads=None, seed=1).parse_args()
    device, out = h.setup(args), h.out_dir(args)
    size, noise = (64, 0.01) if args.quick else (128, 0.01)
    rows, hardest = run_cases(size, device, noise, args.seed)
    speed_rows, speed_setting = nufft_speed(args.quick, device)
    print("Classical reconstructions: NRMSE / SSIM against the truth")
    scores = scores_table(rows)
    speed = speed_table(speed_rows)
    setting = (
        f"Phantom {size} x {size}, 16 blades x 32 lines, 8 coils, noise {noise}, device {device}."
    )
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        scores_hardest = {
            m: {
                "nrmse": metrics.nrmse(hardest[m], hardest["truth"]),
                "ssim": metrics.ssim(hardest[m], hardest["truth"]),
            }
            for m in METHODS
        }
        comparison_figure(hardest, scores_hardest, out / "propeller_baselines.png")
    h.write_doc(
        "propeller_baselines",
        "Classical PROPELLER baselines",
        setting,
        "NRMSE / SSIM of |image| against the truth after a least-squares scale fit "
        "(conjugate phase is given the true field map: an oracle).",
        scores,
        "## NUFFT forward + adjoint against sigpy (same trajectory, same run)",
        speed_setting,
        speed,
        "![truth, gridding, Pipe, conjugate phase](propeller_baselines.png)",
        out=out,
    )


if __name__ == "__main__":
    main()
