"""Classical PROPELLER reconstructions on simulated phantoms, and the NUFFT against sigpy.

For phantoms with 0, 100 and 200 Hz maximum off-resonance, with and without fat, at
1.5 T and 3 T: NRMSE / SSIM of gridding, Pipe's PROPELLER and conjugate phase given
the true field map. Then forward + adjoint NUFFT time of ours against sigpy's on the
same trajectory, as a ratio from one run. Writes docs/propeller_baselines.md and
docs/propeller_baselines.png (truth, gridding, Pipe, conjugate phase on the hardest case).

    .venv/bin/python benchmarks/propeller_baselines.py [--quick] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import itertools
import time
from pathlib import Path

import torch
from nufft_speed import run as nufft_speed
from rich.console import Console
from rich.table import Table

from mrsolve.data.simulate import simulate
from mrsolve.recon import metrics
from mrsolve.recon.figures import comparison_figure
from mrsolve.recon.methods import reconstruct
from mrsolve.solvers.validation import resolve_device

DOCS = Path(__file__).resolve().parent.parent / "docs"
METHODS = ("gridding", "pipe", "conjugate-phase")


def run_cases(size: int, device: torch.device, noise: float) -> tuple[list[dict], dict]:
    rows, hardest = [], {}
    cases = itertools.product((1.5, 3.0), (False, True), (0.0, 100.0, 200.0))
    for field, fat, offres in cases:
        sim = simulate(
            size=size, field_strength_t=field, fat=fat, max_offres_hz=offres, noise=noise, seed=1
        )
        truth = sim.truth
        row = {"field_t": field, "fat": fat, "offres_hz": offres}
        images = {"truth": truth.image}
        for method in METHODS:
            fmap = truth.field_map_hz if method == "conjugate-phase" else None
            start = time.perf_counter()
            rec = reconstruct(sim.scan, method, field_map=fmap, device=device)
            row[f"{method} s"] = time.perf_counter() - start
            row[f"{method} nrmse"] = metrics.nrmse(rec.image, truth.image)
            row[f"{method} ssim"] = metrics.ssim(rec.image, truth.image)
            images[method] = rec.image
        rows.append(row)
        if field == 3.0 and fat and offres == 200.0:
            hardest = images
    return rows, hardest


def table(rows: list[dict]) -> Table:
    t = Table(title="Classical reconstructions: NRMSE / SSIM against the truth")
    for c in ("B0 (T)", "fat", "max off-res (Hz)", *METHODS):
        t.add_column(c, justify="right")
    for r in rows:
        cells = [f"{r[f'{m} nrmse']:.3f} / {r[f'{m} ssim']:.3f}" for m in METHODS]
        t.add_row(str(r["field_t"]), "yes" if r["fat"] else "no", f"{r['offres_hz']:.0f}", *cells)
    return t


def markdown(rows: list[dict], setting: str, speed_rows: list[dict], speed_setting: str) -> str:
    lines = [
        "# Classical PROPELLER baselines",
        "",
        f"Produced by `benchmarks/propeller_baselines.py`. {setting}",
        "",
        "NRMSE / SSIM of |image| against the truth after a least-squares scale fit "
        "(conjugate phase is given the true field map: an oracle).",
        "",
        "| B0 (T) | fat | max off-res (Hz) | " + " | ".join(METHODS) + " |",
        "|---|---|---|" + "---|" * len(METHODS),
    ]
    for r in rows:
        cells = [f"{r[f'{m} nrmse']:.3f} / {r[f'{m} ssim']:.3f}" for m in METHODS]
        fat = "yes" if r["fat"] else "no"
        lines.append(
            f"| {r['field_t']} | {fat} | {r['offres_hz']:.0f} | " + " | ".join(cells) + " |"
        )
    lines += [
        "",
        "## NUFFT forward + adjoint against sigpy (same trajectory, same run)",
        "",
        speed_setting,
        "",
        "| implementation | time / sigpy (os 1.25, width 4) | rel. error fwd vs DFT |",
        "|---|---|---|",
    ]
    for r in speed_rows:
        lines.append(f"| {r['name']} | {r['ratio']:.3f} | {r['err_fwd']:.1e} |")
    lines += ["", "![truth, gridding, Pipe, conjugate phase](propeller_baselines.png)", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="64 x 64 phantoms, print only")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = resolve_device(args.device)
    size, noise = (64, 0.01) if args.quick else (128, 0.01)
    rows, hardest = run_cases(size, device, noise)
    speed_rows, speed_setting = nufft_speed(args.quick, device)
    console = Console()
    console.print(table(rows))
    for r in speed_rows:
        console.print(f"{r['name']:45s} time ratio {r['ratio']:.3f}  error {r['err_fwd']:.1e}")
    if args.quick:
        return
    setting = (
        f"Phantom {size} x {size}, 16 blades x 32 lines, 8 coils, noise {noise}, device {device}."
    )
    scores = {
        m: {
            "nrmse": metrics.nrmse(hardest[m], hardest["truth"]),
            "ssim": metrics.ssim(hardest[m], hardest["truth"]),
        }
        for m in METHODS
    }
    comparison_figure(hardest, scores, DOCS / "propeller_baselines.png")
    (DOCS / "propeller_baselines.md").write_text(markdown(rows, setting, speed_rows, speed_setting))
    console.print(f"wrote {DOCS / 'propeller_baselines.md'}")


if __name__ == "__main__":
    main()
