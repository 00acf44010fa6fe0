"""Benchmark: polar-coded computation and secure iterative sketching (issue 10).

Sections (each prints a table; all go to docs/coded_computation.md and
docs/coded_computation.png):
1. decoding-failure probability vs number of stragglers: polar (SC) vs the BEC prediction
   vs MDS vs replication;
2. anytime relative error (and its error bar) vs fraction of workers answered;
3. decode time vs N (polar O(N log N) vs MDS), as ratios to the smallest N / to MDS;
4. end-to-end time with injected shifted-exponential stragglers vs waiting for everyone
   (virtual clock, and a short real-thread run);
5. coded zeroth-order optimization: objective gap vs iteration, coded vs uncoded;
6. secure least squares: error vs iteration for each sketch and straggler count.

Run: ``.venv/bin/python benchmarks/coded_computation.py [--quick]``.
"""

from __future__ import annotations

import math
from functools import partial

import _harness as h
import numpy as np
import scipy.optimize
import torch

from mrsolve.distributed.coded_matmul import coded_matmul
from mrsolve.distributed.codes import MDSCode, ReplicationCode
from mrsolve.distributed.executors import ThreadExecutor
from mrsolve.distributed.polar import PolarCode
from mrsolve.distributed.secure_lstsq import SECURE_SKETCHES, secure_lstsq
from mrsolve.distributed.stragglers import ShiftedExponential
from mrsolve.distributed.zeroth_order import coded_zeroth_order

NOTES = """How to read this (API: `mrsolve.distributed.coded_matmul`, `secure_lstsq`,
`coded_zeroth_order`; executors: simulated virtual clock, threads, Ray).

- *Decoding failure*: exactly `s` random workers never answer. Polar = successive-
  cancellation erasure decoding (O(N log N) additions); the BEC prediction is
  `1 - prod_info (1 - Z_i(s/N))` for i.i.d. erasures with probability `s/N`, an upper-
  bound-like estimate (measured failures sit at or below it). MDS decodes any K of N but
  costs a K x K solve and, for the real Vandermonde variant, an exponentially growing
  condition number; replication needs a copy of every block.
- *Anytime estimate*: the rows of A are mixed by a random orthonormal `Q` (row-permuted
  randomized Hadamard) before encoding, so the recovered blocks give the unbiased
  estimate `(K/|R|) sum_R Q_b^T (Q A B)_b`. Its relative Frobenius error is about
  `sqrt(K/|R| - 1)`: unbiased, but above 1 when fewer than half of the blocks are in
  (returning zero would be closer in norm). It pays off when the consumer averages
  (stochastic gradients, the zeroth-order example) or most blocks are in. The error bar
  is the finite-population standard error of the per-block estimates.
- *Secure least squares*: with `q < K` responders the block gradients do not vanish at
  the solution of an inconsistent problem, so the last iterate hovers around it; the
  tail average (returned by default) converges, and consistent problems converge
  linearly (see tests). The Gaussian encoding is not orthonormal: it converges to the
  Gaussian-sketched problem's solution (visible floor). `leakage` is the largest share
  of one data row in any worker row: 1 for uncoded, `1/sqrt(n)` for Hadamard encodings.
- Times in the end-to-end table are on the executor's virtual clock (the injected
  delays); the thread table is real wall time. Ratios are against waiting for all
  workers of the uncoded scheme in the same run.
- Where the baseline wins: MDS tolerates every pattern of up to N - K stragglers and
  finishes a little earlier end to end (it needs any K answers); its decode is a single
  LAPACK call that beats the polar decoder's Python recursion for small N, and only
  loses from N of about 1000 up (K^3 growth). The polar decoder's time / (N log N) levels
  off once the blocks leave the cache; timings come from a shared, loaded 2-core machine.
"""


def table(title: str, header: list[str], rows: list[list]) -> str:
    """A section: its title as a heading, then the table (both printed)."""
    print(f"### {title}\n")
    return f"### {title}\n\n{h.table(rows, header, spec='.3g')}\n"


def failure_vs_stragglers(n: int, trials: int, rng) -> tuple[str, dict]:
    k = n // 2
    polar = PolarCode(n, k, design_erasure=0.25)
    mds = MDSCode(n, k)
    rep = ReplicationCode(n, k)
    rows, curves = [], {"s": [], "polar": [], "bec": [], "mds": [], "replication": []}
    for s in range(0, n // 2 + 1, max(1, n // 32)):
        fails = {"polar": 0, "mds": 0, "replication": 0}
        for _ in range(trials):
            known = np.ones(n, dtype=bool)
            known[rng.choice(n, size=s, replace=False)] = False
            for name, code in (("polar", polar), ("mds", mds), ("replication", rep)):
                fails[name] += not code.decodable(known)
        bec = polar.predicted_failure(s / n)
        row = [
            s,
            fails["polar"] / trials,
            bec,
            fails["mds"] / trials,
            fails["replication"] / trials,
        ]
        rows.append(row)
        for key, v in zip(["s", "polar", "bec", "mds", "replication"], row, strict=True):
            curves[key].append(v)
    text = table(
        f"Decoding failure vs stragglers (N={n}, K={k}, {trials} random patterns each)",
        ["stragglers", "polar (SC)", "BEC prediction", "MDS", "replication"],
        rows,
    )
    return text, curves


def anytime_error(n: int, trials: int, rng) -> tuple[str, dict]:
    a = rng.standard_normal((1024, 64))
    b = rng.standard_normal((64, 16))
    c = a @ b
    rows, curves = [], {"f": [], "err": [], "bar": [], "blocks": [], "decoded": []}
    for frac in (0.25, 0.375, 0.5, 0.625, 0.75, 0.875, 1.0):
        answered = round(frac * n)
        errs, bars, blocks, dec = [], [], [], 0
        for t in range(trials):
            delays = np.full(n, 10.0)
            delays[rng.choice(n, size=answered, replace=False)] = 0.0
            try:
                out, rep = coded_matmul(a, b, workers=n, delays=delays, timeout=1.0, seed=t)
            except RuntimeError:
                continue
            errs.append(np.linalg.norm(out - c) / np.linalg.norm(c))
            bars.append(rep.relative_error_estimate)
            blocks.append(rep.recovered_blocks / rep.k)
            dec += rep.decoded
        finite = [x for x in bars if math.isfinite(x)]
        row = [
            frac,
            float(np.mean(errs)),
            float(np.mean(finite)) if finite else math.inf,
            float(np.mean(blocks)),
            dec / trials,
        ]
        rows.append(row)
        for key, v in zip(["f", "err", "bar", "blocks", "decoded"], row, strict=True):
            curves[key].append(v)
    text = table(
        f"Anytime estimate, polar N={n}, K={n // 2}, A 1024x64 @ B 64x16 ({trials} sketches)",
        [
            "fraction answered",
            "mean rel. error",
            "mean error bar",
            "fraction of blocks recovered",
            "fraction decoded",
        ],
        rows,
    )
    return text, curves


def _decodable_pattern(code: PolarCode, erased: int, rng) -> np.ndarray:
    while True:
        known = np.ones(code.n, dtype=bool)
        known[rng.choice(code.n, size=erased, replace=False)] = False
        if code.decodable(known):
            return known


def decode_time(sizes: list[int], patterns: int, rng) -> tuple[str, dict]:
    rows, curves = [], {"n": [], "polar": [], "mds": []}
    base = None
    for n in sizes:
        k = n // 2
        u = torch.randn(k, 16, 64, dtype=torch.float64)
        polar = PolarCode(n, k)
        y = polar.encode(u)
        mds = MDSCode(n, k) if n <= 1024 else None
        ym = mds.encode(u) if mds else None
        tp, tm = [], []
        for _ in range(patterns):
            known = _decodable_pattern(polar, n // 8, rng)
            best_of_2 = dict(repeats=2, warmup=0, reduce="min")
            tp.append(h.timeit(partial(polar.decode, y, known), **best_of_2))
            if mds:
                tm.append(h.timeit(partial(mds.decode, ym, known), **best_of_2))
        tp = float(np.mean(tp))
        tm = float(np.mean(tm)) if tm else math.nan
        nlogn = n * math.log2(n)
        base = base or tp / nlogn
        rows.append([n, tp * 1e3, tp / nlogn / base, tm * 1e3, tm / tp])
        curves["n"].append(n)
        curves["polar"].append(tp)
        curves["mds"].append(tm)
    text = table(
        f"Decode time vs N (K = N/2, blocks 16x64 float64, N/8 erasures, mean over {patterns} "
        "decodable patterns)",
        ["N", "polar ms", "polar / (N log N), rel. to first", "MDS ms", "MDS / polar"],
        rows,
    )
    return text, curves


def end_to_end(n: int, trials: int, rng) -> tuple[str, dict]:
    a = rng.standard_normal((512, 32))
    b = rng.standard_normal((32, 8))
    model = ShiftedExponential(shift=1.0, scale=1.0)
    rows, results = [], {}
    for code in ("uncoded", "replication", "mds", "polar"):
        times = []
        for t in range(trials):
            _, rep = coded_matmul(a, b, workers=n, code=code, delays=model, seed=t)
            times.append(rep.elapsed)
        results[code] = float(np.mean(times))
    for code, v in results.items():
        rows.append([code, v, v / results["uncoded"]])
    text = table(
        f"End-to-end time, N={n}, delays 1 + Exp(1) s (virtual clock, mean of {trials})",
        ["scheme", "mean time to result (s)", "ratio to waiting for all"],
        rows,
    )
    # a real run: threads with real sleeps
    real = ShiftedExponential(shift=0.05, scale=0.1)
    rows_r = []
    wall = {}
    for code in ("uncoded", "polar"):
        ws = []
        for t in range(max(2, trials // 10)):
            with ThreadExecutor(max_workers=n) as ex:
                run = dict(workers=n, code=code, executor=ex, delays=real, seed=t)
                ws.append(h.timed(lambda run=run: coded_matmul(a, b, **run))[1])
        wall[code] = float(np.mean(ws))
    for code, v in wall.items():
        rows_r.append([code, v, v / wall["uncoded"]])
    text += table(
        f"End-to-end wall time with threads, N={n}, delays 0.05 + Exp(0.1) s",
        ["scheme", "mean wall time (s)", "ratio to waiting for all"],
        rows_r,
    )
    return text, results


def zeroth_order(iters: int, seed: int) -> tuple[str, dict]:
    rng = np.random.default_rng(seed + 5)
    x = torch.from_numpy(rng.standard_normal((200, 10)))
    y = torch.from_numpy(np.where(rng.random(200) < 0.5, 1.0, -1.0))

    def f(w):
        return float(torch.nn.functional.softplus(-y * (x @ w)).mean() + 0.01 * (w @ w))

    best = scipy.optimize.minimize(
        lambda w: f(torch.from_numpy(w)), np.zeros(10), method="BFGS", tol=1e-12
    ).fun
    model = ShiftedExponential(shift=1.0, scale=1.0)
    curves, rows = {"best": best}, []
    for code, timeout in (("polar", 2.0), ("uncoded", None)):
        _, rep = coded_zeroth_order(
            f,
            np.zeros(10),
            iters=iters,
            lr=0.5,
            workers=16,
            code=code,
            delays=model,
            timeout=timeout,
            seed=seed,
        )
        curves[code] = (np.cumsum(rep.seconds), np.array(rep.values) - best)
        waited = float(np.sum(rep.seconds))
        gap = rep.values[-1] - best
        rows.append([code, gap, float(np.mean(rep.decoded)), timeout or "none", waited])
    text = table(
        f"Coded zeroth-order logistic regression, 16 workers, delays 1 + Exp(1) s, {iters} iterations",
        [
            "scheme",
            "final objective - optimum (BFGS)",
            "fraction of iterations decoded",
            "per-iteration timeout (s)",
            "total waiting time (s)",
        ],
        rows,
    )
    return text, curves


def secure(iters: int, rng) -> tuple[str, dict]:
    n, d, k = 1024, 20, 16
    a = rng.standard_normal((n, d)) * np.linspace(1, 5, d)
    b = a @ rng.standard_normal(d) + 0.5 * rng.standard_normal(n)
    ref = np.linalg.lstsq(a, b, rcond=None)[0]
    curves, rows = {}, []
    for sketch in SECURE_SKETCHES:
        for q in (16, 12, 8, 4):
            for step in ("fixed", "adaptive"):
                theta, rep = secure_lstsq(
                    a,
                    b,
                    workers=k,
                    responders=q,
                    sketch=sketch,
                    iters=iters,
                    step=step,
                    delays=ShiftedExponential(0.0, 1.0),
                    seed=1,
                )
                errs = np.linalg.norm(rep.iterates.numpy() - ref, axis=1) / np.linalg.norm(ref)
                curves[(sketch, q, step)] = errs
                avg = np.linalg.norm(theta - ref) / np.linalg.norm(ref)
                rows.append([sketch, k - q, step, float(errs[-1]), float(avg), rep.leakage])
    text = table(
        f"Secure least squares, n={n}, d={d}, K={k} workers, {iters} iterations",
        ["sketch", "stragglers", "step", "last-iterate rel. err", "averaged rel. err", "leakage"],
        rows,
    )
    return text, curves


def figure(fail: dict, anytime: dict, dec: dict, zo: dict, sec: dict):
    fig, ax = h.pyplot().subplots(2, 3, figsize=(16, 9))
    x = fail["s"]
    ax[0, 0].plot(x, fail["polar"], "o-", label="polar (SC), measured")
    ax[0, 0].plot(x, fail["bec"], "--", label="BEC prediction")
    ax[0, 0].plot(x, fail["mds"], "s-", label="MDS")
    ax[0, 0].plot(x, fail["replication"], "^-", label="replication")
    ax[0, 0].set(xlabel="stragglers (of 64)", ylabel="P(decoding failure)", title="Decoding")
    ax[0, 0].legend()
    ax[0, 1].plot(anytime["f"], anytime["err"], "o-", label="measured")
    ax[0, 1].plot(anytime["f"], anytime["bar"], "s--", label="error bar (estimate)")
    fb = np.maximum(np.array(anytime["blocks"]), 1e-3)
    ax[0, 1].plot(anytime["f"], np.sqrt(1 / fb - 1), ":x", label="sqrt(K/|R| - 1), R recovered")
    ax[0, 1].set(xlabel="fraction of workers answered", ylabel="relative error", title="Anytime")
    ax[0, 1].legend()
    ns = np.array(dec["n"], dtype=float)
    n_log_n = dec["polar"][0] * ns * np.log2(ns) / (ns[0] * np.log2(ns[0]))
    ax[0, 2].loglog(ns, dec["polar"], "o-", label="polar SC decode")
    ax[0, 2].loglog(ns, dec["mds"], "s-", label="MDS decode")
    ax[0, 2].loglog(ns, n_log_n, ":", label="N log N")
    ax[0, 2].set(xlabel="N", ylabel="seconds", title="Decode time")
    ax[0, 2].legend()
    for code in ("polar", "uncoded"):
        t, gap = zo[code]
        ax[1, 0].semilogy(t, np.maximum(gap, 1e-16), label=code)
    ax[1, 0].set(
        xlabel="waiting time (virtual s)",
        ylabel="objective - optimum",
        title="Zeroth-order, 16 workers",
    )
    ax[1, 0].legend()
    for sketch in SECURE_SKETCHES:
        ax[1, 1].semilogy(sec[(sketch, 8, "adaptive")], label=sketch)
    ax[1, 1].set(
        xlabel="iteration",
        ylabel="||theta_t - theta*|| / ||theta*||",
        title="Secure LS, 8 of 16 stragglers, adaptive step",
    )
    ax[1, 1].legend()
    for q in (16, 12, 8, 4):
        ax[1, 2].semilogy(sec[("block-srht", q, "fixed")], label=f"{16 - q} stragglers")
    ax[1, 2].set(
        xlabel="iteration", ylabel="relative error", title="Secure LS, block SRHT, fixed step"
    )
    ax[1, 2].legend()
    fig.tight_layout()
    return fig


def main() -> None:
    parser = h.parser(__doc__, quick="small trial counts", device=None)
    # one thread by default: the blocks are small and the simulated workers share one
    # process; more threads only spin on a loaded machine
    args = parser.parse_args()
    h.setup(args)
    out, quick = h.out_dir(args), args.quick
    rng = np.random.default_rng(args.seed)
    torch.manual_seed(args.seed)
    t1, fail = failure_vs_stragglers(64, 100 if quick else 1000, rng)
    t2, anytime = anytime_error(64, 5 if quick else 30, rng)
    t3, dec = decode_time([16, 64, 256] if quick else [16, 64, 256, 1024, 4096], 5, rng)
    t4, _ = end_to_end(32, 10 if quick else 100, rng)
    t5, zo = zeroth_order(20 if quick else 80, args.seed)
    t6, sec = secure(40 if quick else 200, rng)
    h.save_figure(figure(fail, anytime, dec, zo, sec), "coded_computation", out=out, dpi=110)
    h.write_doc(
        "coded_computation",
        "Coded computation: polar codes with sketching, secure iterative sketching",
        NOTES,
        t1,
        t2,
        t3,
        t4,
        t5,
        t6,
        "![coded computation](coded_computation.png)",
        out=out,
    )


if __name__ == "__main__":
    main()
