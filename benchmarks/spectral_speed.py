"""Speed of the spectral forward model: engines, iteration / NUFFT time ratio, profile.

Engines of the forward model (error against the explicit per-sample model, apply time);
then, per image size, the time of one spectral FISTA iteration over the time of one
forward + adjoint NUFFT of the same data (all coils, all blades; measured in the same
run), the wall time of 100 iterations, and where an iteration goes (normal operator,
data-term gradient, TV prox, the rest: FISTA bookkeeping, held-out checks), each as a
ratio to that NUFFT. Three rows per size: the basis truncated at a relative singular value
of 1e-6 on all coils; the default basis, whose rank is the smallest with an a-priori
model error (``max_error``) below 8e-5 (with the NUFFT's ~1e-5, below 1e-4), on all
coils; the default operator, which also compresses the coils to the virtual coils that
keep 99.9 % of the k-space energy. The data: a simulated 3 T fat / water scan with 2 %
noise (coil compression depends on real coil sensitivities; random k-space would not
compress). Times on the wall clock and in process CPU time (robust on a shared machine;
the parts of an iteration are CPU time). Writes
docs/spectral_speed.md and docs/spectral_speed.png; ``spectral_recon.py`` imports
``engine_rows`` and ``speed_case``.

    cd benchmarks && ../.venv/bin/python spectral_speed.py [--size 128] [--quick]
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import replace

import _harness as h
import torch

from mrsolve.data.simulate import simulate
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.noise import prewhiten
from mrsolve.propeller.nufft import NUFFT
from mrsolve.propeller.timing import readout_times
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral.config import frequency_range, resolve_config
from mrsolve.recon.spectral.operator import (
    ExplicitSpectralModel,
    ShearedSpectralModel,
    SpectralEncoding,
    temporal_basis,
)
from mrsolve.recon.spectral.problem import build_problem
from mrsolve.recon.spectral.regularizers import TVProx

PARTS = ("normal_x", "gradient_x", "tv_prox_x", "rest_x")
# (basis tol, coil energy): exact basis on all coils, default basis on all coils, default
CASES = ((1e-6, 1.0), (None, 1.0), (None, None))


def engine_rows(size, device):
    """Model error against the explicit per-sample model and apply time of each engine."""
    geom = BladeGeometry(8, max(4, size // 4), size, 2.0)
    sim = simulate(size=size, n_blades=1, n_lines=2, n_coils=4, seed=0)
    maps, water = sim.truth.coil_maps.to(device), sim.truth.image.to(device)
    freqs = torch.linspace(-635, 227, 16, device=device)
    x = water[None] * torch.linspace(0.2, 1, 16, device=device)[:, None, None]
    rows = []
    for seq in ("spin_echo", "gradient_echo"):
        rows += _engines(geom, seq, maps, freqs, x, device)
    return rows


def _engines(geom, seq, maps, freqs, x, device):
    traj, m = geom.trajectory().to(device), geom.n_readout
    dwell = 1 / (217.0 * m)
    t = readout_times(m, geom.center_sample, dwell, seq, 0.003)
    times = t.expand(traj.shape[:-1]).contiguous().to(device)
    explicit = ExplicitSpectralModel(traj, times, freqs, maps)
    ref, t_exp = h.best_of(lambda: explicit(x), device=device)
    basis = temporal_basis(times, freqs)
    enc = SpectralEncoding(traj, times, basis, maps)
    z = torch.einsum("lf,fyx->lyx", basis.coefficients(freqs).to(device), x)
    y, t_svd = h.best_of(lambda: enc(z), device=device)
    sheared = ShearedSpectralModel(
        traj, freqs, maps, dwell, 0.003 if seq == "gradient_echo" else 0.0
    )
    ys, t_sh = h.best_of(lambda: sheared(x), device=device)
    rows = []
    engines = [
        ("explicit DFT", ref, t_exp),
        ("SVD time segments", y, t_svd),
        ("sheared projection", ys, t_sh),
    ]
    for name, out, wall in engines:
        err = float((out - ref).norm() / ref.norm())
        rows.append(
            {"sequence": seq, "engine": name, "rel_error": err, "time_s": wall, "rank": basis.rank}
        )
    return rows


def _scan(size, n_blades, n_coils):
    """A simulated 3 T fat / water scan with 2 % noise (and its noise scan)."""
    n_lines = 32 if size >= 64 else size // 2
    return simulate(
        size=size,
        n_blades=n_blades,
        n_lines=n_lines,
        n_coils=n_coils,
        max_offres_hz=150.0,
        noise=0.02,
        seed=0,
    ).scan


def speed_case(
    size,
    n_blades,
    n_coils,
    n_bins,
    device,
    iterations,
    tol=None,
    coil_energy=None,
    profile=False,
):
    """Wall time of a static reconstruction and iteration / NUFFT(fwd + adj) time ratio.

    ``tol``: the temporal basis truncation (None: the default operator, whose rank comes
    from its a-priori error bound); ``coil_energy``: the virtual coils' energy share
    (None: the default). The NUFFT runs on all ``n_coils`` coils of the data. With
    ``profile``, also the parts of an iteration as ratios to the NUFFT (module doc).
    """
    operator = _operator(tol, coil_energy)
    scan = _scan(size, n_blades, n_coils)
    steps = []  # (wall, CPU) clock at each iteration's callback

    def stamp(s, t, image=None, loss=None):
        steps.append((time.perf_counter(), time.process_time()))

    rec, wall = h.timed(
        lambda: reconstruct_spectral(
            scan,
            "static",
            iterations=iterations,
            device=device,
            frequency={"n_bins": n_bins},
            stopping={"patience": 10**6},
            operator=operator,
            callback=stamp,
        ),
        device=device,
    )
    n_steps = max(1, len(steps) - 1)
    per_iter, per_iter_cpu = ((steps[-1][i] - steps[0][i]) / n_steps for i in (0, 1))
    t_nufft, cpu_nufft = _nufft_times(size, n_blades, n_coils, str(device))
    row = {
        "size": size,
        "blades": n_blades,
        "coils": n_coils,
        "bins": n_bins,
        "tol": "default" if tol is None else tol,
        "coil_energy": "default" if coil_energy is None else coil_energy,
        "virtual_coils": rec.config["report"]["virtual_coils"],
        "rank": rec.config["report"]["temporal_rank"],
        "iterations": iterations,
        "wall_s": wall,
        "iteration_s": per_iter,
        "wall_100_iterations_s": wall + (100 - iterations) * per_iter,
        "nufft_fwd_adj_s": t_nufft,
        "ratio": per_iter / t_nufft,
        "ratio_cpu": per_iter_cpu / cpu_nufft,
    }
    if profile:
        parts = _profile(scan, n_bins, device, operator)
        row["max_error"] = parts.pop("max_error")
        row.update({k: v / cpu_nufft for k, v in parts.items()})
        row["rest_x"] = row["ratio_cpu"] - row["gradient_x"] - row["tv_prox_x"]
    return row


@functools.cache
def _nufft_times(size, n_blades, n_coils, device):
    """Best wall and CPU time of one NUFFT forward + adjoint over all coils and blades of
    the case's scan, measured once per case and shared by its rows (the same data): a
    fresh best-of-5 per row varied by up to 40 % between rows of one run."""
    scan = _scan(size, n_blades, n_coils)
    nufft = NUFFT(scan.traj.to(device), (size, size), batch_shape=(n_coils,))
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n_coils, size, size, dtype=torch.complex64, generator=gen).to(device)

    def fwd_adj():
        return nufft.H(nufft(x))

    _, wall = h.best_of(fwd_adj, 20, device=device)
    _, cpu = h.best_of(fwd_adj, 20, device=device, clock=time.process_time)
    return wall, cpu


def _operator(tol, coil_energy):
    """Operator overrides of a speed case (None: keep the default)."""
    out = {} if tol is None else {"tol": tol, "max_error": None}
    return out if coil_energy is None else {**out, "coil_energy": coil_energy}


def _profile(scan, n_bins, device, operator):
    """Times (s) of the parts of one free-volume iteration of the static preset."""
    cfg = resolve_config("static", frequency={"n_bins": n_bins}, operator=operator)
    bins, frange = frequency_range(cfg.frequency, scan.field_strength_t)
    if scan.noise is not None:
        scan = replace(scan, kspace=prewhiten(scan.kspace, scan.noise), noise=None)
    problem = build_problem(scan, frange, cfg.operator, device=device)
    coef = problem.basis.coefficients(bins).to(device)
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(bins.numel(), *scan.image_shape, dtype=torch.complex64, generator=gen)
    x = x.to(device)
    z = torch.einsum("lf,fyx->lyx", coef, x)

    def gradient():
        xr = x.detach().requires_grad_(True)
        loss = problem.data_loss(torch.einsum("lf,fyx->lyx", coef, xr))
        return torch.autograd.grad(loss, xr)[0]

    tv = TVProx([(-3, 0.0)], cfg.free.prox_iterations)
    cpu = time.process_time
    return {
        "normal_x": h.best_of(lambda: problem.frames[0].normal(z), 5, device=device, clock=cpu)[1],
        "gradient_x": h.best_of(gradient, 5, device=device, clock=cpu)[1],
        "tv_prox_x": h.best_of(lambda: tv(x, cfg.free.tv), 5, device=device, clock=cpu)[1],
        "max_error": getattr(problem.basis, "max_error", math.nan),
    }


def markdown(rows, keys):
    return h.table(rows, keys, spec=".3g", echo=False) + "\n"


def figure(rows):
    fig, ax = h.pyplot().subplots(figsize=(9, 3.5))
    labels = [f"{r['size']} px, L={r['rank']}, {r['virtual_coils']} coils" for r in rows]
    left = [0.0] * len(rows)
    for part in PARTS:
        widths = [r[part] - (r["normal_x"] if part == "gradient_x" else 0) for r in rows]
        if part == "normal_x":
            name = "normal operator"
        elif part == "gradient_x":
            name = "rest of the data-term gradient"
        else:
            name = part.removesuffix("_x").replace("_", " ")
        ax.barh(labels, widths, left=left, label=name)
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.axvline(3, color="k", ls="--", lw=1, label="target (3)")
    ax.set_xlabel("time / NUFFT forward + adjoint (same data, same run)")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    return fig


def main():
    parser = h.parser(__doc__, quick="32 px, 4 coils, 10 iterations", threads=2, seed=None)
    parser.add_argument("--size", type=int, nargs="*", default=[64, 128])
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--no-docs", action="store_true", help="print only")
    args = parser.parse_args()
    device = h.setup(args)
    out = None if args.no_docs else h.out_dir(args)
    engines = engine_rows(24 if args.quick else 48, device)
    print(markdown(engines, list(engines[0])))
    sizes, coils, iters = ([32], 4, 10) if args.quick else (args.size, 8, args.iterations)
    rows = []
    for size in sizes:
        for tol, energy in CASES:
            rows.append(speed_case(size, 16, coils, 32, device, iters, tol, energy, profile=True))
            print(markdown(rows[-1:], list(rows[-1])))
    keys = [
        "size",
        "coils",
        "coil_energy",
        "virtual_coils",
        "tol",
        "rank",
        "max_error",
        "iteration_s",
        "nufft_fwd_adj_s",
        "ratio",
        "ratio_cpu",
        *PARTS,
        "wall_100_iterations_s",
    ]
    table = markdown(rows, keys)
    print(table)
    h.save_figure(figure(rows), "spectral_speed", out=out)
    h.write_doc(
        "spectral_speed",
        "Spectral iteration speed",
        f"{args.threads} CPU threads ({device}), 16 blades, "
        f"{coils} coils, 32 bins, static preset, a simulated 3 T scan with 2 % noise, "
        f"{iters} iterations. ratio = one FISTA iteration / one forward + adjoint NUFFT of "
        "the same data (all coils; measured in the same run) on the wall clock, ratio_cpu the "
        "same in process CPU time; *_x = parts of an iteration in CPU time over the NUFFT's "
        "(gradient includes the normal operator; rest = FISTA bookkeeping, held-out checks, "
        "callback). max_error: a-priori bound on the per-sample model error of the temporal "
        "basis.",
        table,
        "## Forward-model engines (error vs explicit per-sample model)",
        markdown(engines, list(engines[0])),
        "![iteration profile](spectral_speed.png)",
        out=out,
    )


if __name__ == "__main__":
    main()
