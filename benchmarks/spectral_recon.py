"""Spectral-volume reconstruction against gridding, Pipe and conjugate phase (oracle field map).

One table over simulated phantoms (static with fat; dynamic; 1.5 T and 3 T; two noise
levels): NRMSE, SSIM, fat-fraction MAE and field-map RMSE (next to the all-zero
predictors), wall time and peak memory. Then the engines of the forward model (error
against the explicit per-sample model, time), the time of one spectral iteration over
the time of one forward + adjoint NUFFT of the same data, and the wall time of the
128 x 128 / 16 blades / 8 coils / 32 bins static case. Writes docs/spectral_recon.md and
docs/spectral_recon.png (truth, gridding, spectral, water, fat, fat fraction, field map).

    .venv/bin/python benchmarks/spectral_recon.py [--quick] [--size 48] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import _harness as h
import torch
from spectral_speed import engine_rows, speed_case

from mrsolve.data.simulate import simulate
from mrsolve.propeller.conjugate_phase import conjugate_phase
from mrsolve.propeller.gridding import gridding
from mrsolve.propeller.pipe import pipe_reconstruct
from mrsolve.recon.metrics import fat_fraction_mae, field_map_rmse, nrmse, ssim
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.solvers.validation import resolve_device

STATIC_METHODS = [
    "gridding",
    "pipe",
    "conjugate phase (oracle field map)",
    "spectral static (dense grid)",
    "spectral static (planes)",
    "spectral static (hash grid)",
    "spectral fatwater (parametric)",
]
DYNAMIC_METHODS = [
    "gridding per frame",
    "spectral dynamic (dense grid)",
    "spectral dynamic (planes)",
]
FIGURE_FIELDS = ("image", "water", "fat", "fat_fraction", "field_map_hz")


def _status_kib(field):
    """A ``/proc/self/status`` field in KiB (VmRSS: resident now, VmHWM: peak resident)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _memory_start(device):
    """Reset the peak-memory counter; return the current usage (bytes) as the baseline."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    # Linux: writing 5 resets the process's peak RSS (VmHWM) to its current RSS
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kib("VmRSS") * 1024


def _memory_peak_mib(device, base):
    """Peak usage above ``base`` since :func:`_memory_start`, in MiB."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - base) / 2**20
    return (_status_kib("VmHWM") * 1024 - base) / 2**20


def _static_sim(size, field_t, noise, seed, quick):
    return simulate(
        size=size,
        n_blades=8 if quick else 12,
        n_lines=size // 4,
        n_coils=4,
        field_strength_t=field_t,
        max_offres_hz=150.0,
        noise=noise,
        seed=seed,
    )


def _dynamic_sim(size, field_t, noise, seed, quick):
    return simulate(
        size=size,
        n_blades=6 if quick else 8,
        n_lines=size // 4,
        n_coils=4,
        n_frames=3,
        field_strength_t=field_t,
        max_offres_hz=100.0,
        noise=noise,
        seed=seed,
    )


def _reconstruction(method, scan, truth, device, quick):
    """The call that reconstructs ``scan`` with ``method`` (no arguments; timed and measured)."""
    bins = {"frequency": {"n_bins": 16 if quick else 32}}
    its = 30 if quick else 100
    calls = {
        "gridding": lambda: gridding(scan, coil_maps="walsh", device=device),
        "pipe": lambda: pipe_reconstruct(scan, coil_maps="walsh", device=device).image,
        "conjugate phase (oracle field map)": lambda: conjugate_phase(
            scan, truth.field_map_hz, coil_maps="walsh", device=device
        ),
        "spectral static (dense grid)": lambda: reconstruct_spectral(
            scan, "static", device=device, iterations=its, **bins
        ),
        "spectral static (planes)": lambda: reconstruct_spectral(
            scan, "static", device=device, iterations=its, free={"encoding": "planes"}, **bins
        ),
        "spectral static (hash grid)": lambda: reconstruct_spectral(
            scan, "static", device=device, iterations=its, free={"encoding": "hash_grid"}, **bins
        ),
        "spectral fatwater (parametric)": lambda: reconstruct_spectral(
            scan, "fatwater", device=device, iterations=100 if quick else None, **bins
        ),
        "gridding per frame": lambda: [
            gridding(scan.select_blades(scan.frame == t), coil_maps="walsh", device=device)
            for t in range(scan.n_frames)
        ],
        "spectral dynamic (dense grid)": lambda: reconstruct_spectral(
            scan, "dynamic", device=device, iterations=its, **bins
        ),
        "spectral dynamic (planes)": lambda: reconstruct_spectral(
            scan, "dynamic", device=device, iterations=its, free={"encoding": "planes"}, **bins
        ),
    }
    return calls[method]


def measure(kind, method, size, field_t, noise, seed, quick, device, threads):
    """One reconstruction in this (fresh) process: its metrics row, wall time, peak memory.

    Returns (row, rec); rec: the fat/water result's FIGURE_FIELDS (numpy), else None.
    """
    torch.set_num_threads(threads)
    device = resolve_device(device)
    _warm_up(device)
    sim = (_static_sim if kind == "static" else _dynamic_sim)(size, field_t, noise, seed, quick)
    scan, truth = sim.scan, sim.truth
    call = _reconstruction(method, scan, truth, device, quick)
    base = _memory_start(device)
    out, wall = h.timed(call, device=device)
    mib = _memory_peak_mib(device, base)
    case = f"{kind} {field_t} T, noise {noise}"
    if kind == "dynamic":
        images = out if isinstance(out, list) else out.image
        return _mean_frames(case, method, images, truth, wall, mib), None
    if isinstance(out, torch.Tensor):
        return _row(case, method, out, truth, wall, mib), None
    row = _row(case, method, out.image, truth, wall, mib, out.fat_fraction, out.field_map_hz)
    if method != "spectral fatwater (parametric)":
        return row, None
    # numpy, not torch tensors: torch would pass them through shared memory of this process
    return row, {k: getattr(out, k).cpu().numpy() for k in FIGURE_FIELDS}


def _warm_up(device):
    """First-call costs of torch, sparse kernels and FFT plans, on a tiny problem."""
    warm = simulate(size=16, n_blades=4, n_lines=4, n_coils=2, seed=0).scan
    gridding(warm, coil_maps="walsh", device=device)
    reconstruct_spectral(warm, "static", iterations=2, device=device)


def _in_fresh_process(*args):
    """:func:`measure` in a new process, so memory freed (but kept) by earlier runs is not
    reused and the peak counter starts from this reconstruction alone."""
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(1, mp_context=ctx, max_tasks_per_child=1) as pool:
        return pool.submit(measure, *args).result()


def _row(case, method, image, truth, wall, mib, ff=None, fm=None, frame=None):
    ref = truth.image if frame is None else truth.image[frame]
    mask = truth.mask & (truth.water.abs() > 0 if truth.water.ndim == 2 else truth.mask)
    return {
        "case": case,
        "method": method,
        "nrmse": nrmse(image, ref),
        "ssim": ssim(image, ref),
        "ff_mae": None if ff is None else fat_fraction_mae(ff, truth.fat_fraction, truth.mask),
        "fm_rmse": None if fm is None else field_map_rmse(fm, truth.field_map_hz, mask),
        "time_s": wall,
        "mem_mib": mib,
    }


def case_rows(size, field_t, noise, device, threads, quick, seed):
    """Static (``seed``) and dynamic (``seed + 1``) rows of one field strength and noise level."""
    truth = _static_sim(size, field_t, noise, seed, quick).truth
    zero = torch.zeros_like(truth.field_map_hz)
    case = f"static {field_t} T, noise {noise}"
    zero_row = _row(case, "zero predictors", truth.image, truth, 0, 0, zero, zero)
    rows = [{**zero_row, "nrmse": None, "ssim": None}]
    rec = None
    kinds = [("static", STATIC_METHODS, seed), ("dynamic", DYNAMIC_METHODS, seed + 1)]
    for kind, methods, kind_seed in kinds:
        for method in methods:
            row, out = _in_fresh_process(
                kind, method, size, field_t, noise, kind_seed, quick, str(device), threads
            )
            rows.append(row)
            if out is not None:
                rec = SimpleNamespace(**{k: torch.from_numpy(v) for k, v in out.items()})
    return rows, rec


def _mean_frames(case, method, images, truth, wall, mib):
    per = [_row(case, method, images[t], truth, wall, mib, frame=t) for t in range(len(images))]
    out = dict(per[0])
    for key in ("nrmse", "ssim"):
        out[key] = sum(p[key] for p in per) / len(per)
    return out


def markdown(rows, keys):
    """The table of ``keys`` (None and missing values as "-"), not printed."""
    cells = [{k: "-" if r.get(k) is None else r[k] for k in keys} for r in rows]
    return h.table(cells, keys, spec=".3g", echo=False) + "\n"


def figure(sim, rec):
    truth = sim.truth
    grid = gridding(sim.scan, coil_maps="walsh")
    panels = [
        ("truth", truth.image.abs()),
        ("gridding", grid.abs()),
        ("spectral (water + fat)", rec.image.abs()),
        ("water", rec.water.abs()),
        ("fat", rec.fat.abs()),
        ("fat fraction", rec.fat_fraction),
        ("field map (Hz)", rec.field_map_hz),
        ("true field map (Hz)", truth.field_map_hz),
    ]
    fig, axes = h.pyplot().subplots(2, 4, figsize=(13, 6.5))
    for ax, (title, img) in zip(axes.flat, panels, strict=True):
        kw = {"cmap": "RdBu_r", "vmin": -150, "vmax": 150} if "Hz" in title else {"cmap": "gray"}
        if title == "fat fraction":
            kw = {"cmap": "magma", "vmin": 0, "vmax": 1}
        im = ax.imshow(img.cpu().numpy(), **kw)
        ax.set_title(title)
        ax.axis("off")
        if "Hz" in title or title == "fat fraction":
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return fig


def main():
    parser = h.parser(__doc__, threads=2)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--speed-size", type=int, default=128)
    args = parser.parse_args()
    device, out = h.setup(args), h.out_dir(args)
    size = 32 if args.quick else args.size
    fields_t = [3.0] if args.quick else [1.5, 3.0]
    noises = [0.02] if args.quick else [0.01, 0.03]
    _warm_up(device)  # for the engine and speed rows measured in this process
    rows, shown = [], None
    for field_t in fields_t:
        for noise in noises:
            r, rec = case_rows(size, field_t, noise, device, args.threads, args.quick, args.seed)
            rows += r
            if field_t == 3.0:
                shown = (_static_sim(size, field_t, noise, args.seed, args.quick), rec)
            print(markdown(r, list(r[0])))
    keys = ["case", "method", "nrmse", "ssim", "ff_mae", "fm_rmse", "time_s", "mem_mib"]
    table = markdown(rows, keys)
    engines = markdown(
        engine_rows(24 if args.quick else 48, device),
        ["sequence", "engine", "rel_error", "time_s", "rank"],
    )
    if args.quick:
        speed = [speed_case(32, 8, 4, 16, device, 10)]
    else:
        speed = [
            speed_case(64, 16, 8, 32, device, 20),
            speed_case(args.speed_size, 16, 8, 32, device, 20),
        ]
    speed_table = markdown(speed, list(speed[0]))
    print(table, engines, speed_table, sep="\n")
    h.save_figure(figure(*shown), "spectral_recon", out=out, dpi=110)
    text = (
        f"{args.threads} CPU threads ({device}), size {size}, "
        "4 coils, 3 T / 1.5 T, noise = std relative to the k-space RMS. Zero predictors: "
        "fat fraction 0 and field map 0 everywhere. Conjugate phase is given the true field "
        "map (oracle). Dynamic rows: mean over frames. Each reconstruction runs in a fresh "
        "process (after a tiny warm-up); time_s is its wall time and mem_mib its peak memory "
        "above the usage just before it: on CPU the peak resident set (Linux VmHWM, reset "
        "through /proc/self/clear_refs) minus the resident set at the start, on CUDA "
        "torch.cuda.max_memory_allocated minus memory_allocated at the start. The fat/water "
        "head fits its field map coarse to fine (grids 16x, 8x, 4x coarser than the image) "
        "from a zero map, then up to 600 L-BFGS steps with the held-out stop; nothing is "
        "chosen with the truth. Spectral rows use the default operator (coils compressed "
        "to the virtual coils that keep 99.9 % of the k-space energy).\n\n"
        f"{table}\n## Forward-model engines (error vs explicit per-sample model)\n\n{engines}\n"
        "## Speed (static preset, simulated 3 T scan with 2 % noise, fixed iteration count, "
        "default operator; ratio = iteration / NUFFT forward + adjoint on all coils; the "
        f"all-coil rows are in spectral_speed.md)\n\n{speed_table}\n"
        "![spectral reconstruction](spectral_recon.png)\n"
    )
    h.write_doc("spectral_recon", "Spectral-volume reconstruction benchmark", text, out=out)


if __name__ == "__main__":
    main()
