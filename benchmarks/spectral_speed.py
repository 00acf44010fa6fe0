"""Speed of the spectral forward model: engines and iteration / NUFFT time ratio.

Engines of the forward model (error against the explicit per-sample model, apply time),
the time of one spectral iteration over the time of one forward + adjoint NUFFT of the
same data, and the wall time of the 128 x 128 / 16 blades / 8 coils / 32 bins static
case. Imported by ``spectral_recon.py`` (whose report includes these tables); run alone
for a quick look:

    .venv/bin/python benchmarks/spectral_speed.py [--size 128] [--device cpu|cuda|auto]
"""

from __future__ import annotations

import argparse
import time

import torch

from mrsolve.data.simulate import simulate
from mrsolve.propeller.geometry import BladeGeometry
from mrsolve.propeller.nufft import NUFFT
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import readout_times
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral_op import (
    ExplicitSpectralModel,
    ShearedSpectralModel,
    SpectralEncoding,
    temporal_basis,
)
from mrsolve.solvers.validation import resolve_device


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
    ref, t_exp = _timed(lambda: explicit(x))
    basis = temporal_basis(times, freqs)
    enc = SpectralEncoding(traj, times, basis, maps)
    z = torch.einsum("lf,fyx->lyx", basis.coefficients(freqs).to(device), x)
    y, t_svd = _timed(lambda: enc(z))
    sheared = ShearedSpectralModel(
        traj, freqs, maps, dwell, 0.003 if seq == "gradient_echo" else 0.0
    )
    ys, t_sh = _timed(lambda: sheared(x))
    rows = []
    for name, out, wall in [("explicit DFT", ref, t_exp), ("SVD time segments", y, t_svd),
                            ("sheared projection", ys, t_sh)]:  # fmt: skip
        err = float((out - ref).norm() / ref.norm())
        rows.append({"sequence": seq, "engine": name, "rel_error": err, "time_s": wall,
                     "rank": basis.rank})  # fmt: skip
    return rows


def _timed(fn, repeat=1):
    fn()
    start = time.perf_counter()
    for _ in range(repeat):
        out = fn()
    return out, (time.perf_counter() - start) / repeat


def speed_case(size, n_blades, n_coils, n_bins, device, iterations):
    """Wall time of a static reconstruction and iteration / NUFFT(fwd + adj) time ratio."""
    geom = BladeGeometry(n_blades, 32 if size >= 64 else size // 2, size, 2.0)
    m = geom.n_readout
    traj = geom.trajectory()
    times = readout_times(m, geom.center_sample, 1 / (217.0 * m)).expand(traj.shape[:-1])
    gen = torch.Generator().manual_seed(0)
    kspace = torch.randn(n_coils, *traj.shape[:-1], dtype=torch.complex64, generator=gen)
    scan = Scan(kspace=kspace, traj=traj, times=times.contiguous(), image_shape=(size, size),
                dwell_s=1 / (217.0 * m), center_sample=geom.center_sample)  # fmt: skip
    steps = []
    start = time.perf_counter()
    reconstruct_spectral(
        scan, "static", iterations=iterations, device=device, frequency={"n_bins": n_bins},
        stopping={"patience": 10**6},
        callback=lambda s, t, image=None, loss=None: steps.append(time.perf_counter()),
    )  # fmt: skip
    wall = time.perf_counter() - start
    per_iter = (steps[-1] - steps[0]) / max(1, len(steps) - 1)
    nufft = NUFFT(traj.to(device), (size, size), batch_shape=(n_coils,))
    x = torch.randn(n_coils, size, size, dtype=torch.complex64, generator=gen).to(device)
    _, t_nufft = _timed(lambda: nufft.H(nufft(x)), repeat=3)
    return {"size": size, "blades": n_blades, "coils": n_coils, "bins": n_bins,
            "iterations": iterations, "wall_s": wall, "iteration_s": per_iter,
            "wall_100_iterations_s": wall + (100 - iterations) * per_iter,
            "nufft_fwd_adj_s": t_nufft, "ratio": per_iter / t_nufft}  # fmt: skip


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    for row in engine_rows(48, device):
        print(row)
    print(speed_case(args.size, 16, 8, 32, device, args.iterations))


if __name__ == "__main__":
    main()
