"""Benchmark: two-layer ReLU training by Max-Cut rounding (arXiv 2311.10972, issue 6).

For each dataset class (orthogonally separable, negatively correlated, general) and size
``n`` (2-D data, no bias, ``beta`` fixed): the global optimum ``p*`` by exhaustive
enumeration of every activation pattern (the baseline), the random-hyperplane rounding of
:func:`mrsolve.solvers.maxcut.solve` with ``n`` hyperplanes and one round of SDP cuts, and
its certified ratios. Reported: achieved ratio ``U / p*`` (also for plain rounding: Gaussian
hyperplanes only, no SDP cuts) against the abstract's ratio for the class, certified ratios ``U / L`` with the exact-arrangement and with the SDP bound,
and time relative to exhaustive enumeration. A second table shows when the two-pattern
algorithm for orthogonally separable data is exact, as ``beta`` varies.

Run: ``.venv/bin/python benchmarks/maxcut.py [--quick]``.
"""

from __future__ import annotations

import math

import _harness as h
import numpy as np
import torch

from mrsolve.solvers import convex_nn as cnn
from mrsolve.solvers import maxcut as mc

NOTES = """Findings.

- Provenance: only the abstract (and the first paragraph of the introduction) of arXiv
  2311.10972 was obtainable. The `bound` column holds the abstract's figures (exact for
  orthogonally separable data, relative error sqrt(pi/2) - 1 for negatively correlated
  classes); the paper's geometric factor for general data (the one controlling "the
  diameter of two zonotopes intrinsic to the dataset") and the bound it gives were not,
  so the general rows have no bound and `factor_ours` is our proxy (largest cross-class
  cosine), with no guarantee attached. The algorithms and certificates are ours.
- The rounding reaches the global optimum or comes within a few percent of it on every
  class; on negatively correlated data `solve` stays far below sqrt(pi/2).
- Plain rounding (n Gaussian hyperplanes, no SDP cuts) exceeded sqrt(pi/2) once: 1.289
  on an 8-point negatively correlated set (worst of 4 seeds; 1.003-1.024 for n >= 12);
  with one round of SDP-guided cuts `solve` stayed <= 1.036 everywhere. The abstract's
  sqrt(pi/2) refers to the paper's algorithm, whose details were not obtainable, so this
  is no counterexample to it: with only n draws our plain rounding can miss a pattern the
  optimum needs.
- The exact-cell certificate is tight (certified ratio 1 whenever the network is optimal);
  the Max-Cut SDP certificate, the one available in any dimension, is valid but 1.3-2.7x
  loose: it drops the cone constraints of the ReLU patterns (the looseness the method notes
  measured). For negatively correlated classes and a class-signed dual point it is within
  sqrt(pi/2) of the true constraint (a test checks this).
- In 2-D the arrangement has only O(n) cells, so exhaustive enumeration is cheap and the
  rounding, whose time is dominated by its certificates (one SDP per sign, the exact-cell
  bound), is 5-15x slower; rounding pays off when the rank makes enumeration infeasible.
- Beyond enumeration (d = 8) the certified ratio comes from the SDP alone and is 1.2-2.4:
  the true ratio is unknown there but, by the small cases, mostly the bound's looseness.
- The two class patterns are optimal for orthogonally separable data only while the
  residual has the sign of y (large beta); at small beta the network overshoots labels and
  the two-pattern network is up to 1.7x worse. `solve_orthogonal` reports which case holds
  (`exact`), and `solve` adds the class patterns to the random ones on such data.
"""
BOUND = {"orthogonal": 1.0, "negative": math.sqrt(math.pi / 2), "general": math.nan}


def exhaustive(X, y, beta):
    gates = cnn.enumerate_gates(torch.as_tensor(X))
    return cnn.solve(X, y, gates, beta, solver="cvxpy", certify=False).objective


def ratio_rows(sizes, seeds, beta):
    rows = []
    for kind in mc.CLASSES:
        for n in sizes:
            acc = {k: [] for k in ("factor", "achieved", "plain", "arr", "rel", "t_ratio", "t")}
            for seed in seeds:
                X, y = mc.make_dataset(kind, n, 2, seed=seed)
                p_star, t_exact = h.timed(lambda X=X, y=y: exhaustive(X, y, beta))
                sol, t_round = h.timed(
                    lambda X=X, y=y, seed=seed, n=n: mc.solve(
                        X,
                        y,
                        beta,
                        n_hyperplanes=n,
                        n_rounds=1,
                        bound="both",
                        solver="cvxpy",
                        seed=seed,
                    )
                )
                plain = mc.solve(
                    X,
                    y,
                    beta,
                    n_hyperplanes=n,
                    n_rounds=0,
                    bound="arrangement",
                    solver="cvxpy",
                    seed=seed,
                )
                acc["plain"].append(plain.objective / p_star)
                acc["factor"].append(mc.geometric_factor(X, y))
                acc["achieved"].append(sol.objective / p_star)
                acc["arr"].append(sol.objective / sol.bounds["arrangement"])
                acc["rel"].append(sol.objective / sol.bounds["relaxation"])
                acc["t_ratio"].append(t_round / t_exact)
                acc["t"].append(t_round)
            rows.append(
                {
                    "class": kind,
                    "n": n,
                    "factor_ours": float(np.mean(acc["factor"])),
                    "achieved": max(acc["achieved"]),
                    "achieved_plain": max(acc["plain"]),
                    "bound": BOUND[kind] if not math.isnan(BOUND[kind]) else "n/a",
                    "certified_arrangement": max(acc["arr"]),
                    "certified_relaxation": max(acc["rel"]),
                    "time_s": float(np.mean(acc["t"])),
                    "time_vs_exhaustive": float(np.mean(acc["t_ratio"])),
                }
            )
            print(fmt_row(rows[-1]))
    return rows


def orthogonal_rows(n, seeds, betas):
    rows = []
    for beta in betas:
        exact, gap, t_ratio = [], [], []
        for seed in seeds:
            X, y = mc.make_dataset("orthogonal", n, 2, seed=seed)
            p_star, t_exact = h.timed(lambda X=X, y=y, b=beta: exhaustive(X, y, b))
            sol, t = h.timed(lambda X=X, y=y, b=beta: mc.solve_orthogonal(X, y, b, solver="cvxpy"))
            exact.append(sol.exact)
            gap.append(sol.objective / p_star)
            t_ratio.append(t / t_exact)
        rows.append(
            {
                "beta": beta,
                "certified_exact": f"{sum(exact)}/{len(seeds)}",
                "worst U/p*": max(gap),
                "time_vs_exhaustive": float(np.mean(t_ratio)),
            }
        )
        print(rows[-1])
    return rows


def beyond_rows(sizes, d, beta, seed):
    """Rank too high to enumerate: certified ratio with the Burer-Monteiro SDP bound only."""
    rows = []
    for kind in mc.CLASSES:
        for n in sizes:
            X, y = mc.make_dataset(kind, n, d, seed=seed)
            sol, t = h.timed(
                lambda X=X, y=y, n=n: mc.solve(
                    X,
                    y,
                    beta,
                    n_hyperplanes=2 * n,
                    n_rounds=1,
                    bound="relaxation",
                    sdp="burer_monteiro",
                )
            )
            rows.append(
                {
                    "class": kind,
                    "n": n,
                    "d": d,
                    "patterns": sol.n_patterns,
                    "certified": sol.ratio,
                    "time_s": t,
                }
            )
            print(fmt_row(rows[-1]))
    base = rows[0]["time_s"]
    for r in rows:
        r["time_vs_first"] = r["time_s"] / base
    return rows


def fmt_row(r):
    return " | ".join(h.fmt(v) for v in r.values())


def figure(rows):
    plt = h.pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for kind, color in zip(mc.CLASSES, ("C0", "C1", "C2"), strict=True):
        rs = [r for r in rows if r["class"] == kind]
        ns = [r["n"] for r in rs]
        axes[0].plot(ns, [r["achieved"] for r in rs], "o-", color=color, label=kind)
        axes[0].plot(
            ns, [r["achieved_plain"] for r in rs], "x--", color=color, label=f"{kind}: plain"
        )
        if not math.isnan(BOUND[kind]):
            axes[0].axhline(BOUND[kind], color=color, ls=":", lw=1)
        axes[1].plot(
            ns,
            [r["certified_arrangement"] for r in rs],
            "o-",
            color=color,
            label=f"{kind}: exact cells",
        )
        axes[1].plot(
            ns, [r["certified_relaxation"] for r in rs], "s--", color=color, label=f"{kind}: SDP"
        )
    axes[0].set(xlabel="n", ylabel="U / p* (worst seed)", title="achieved ratio (dotted: bound)")
    axes[1].set(xlabel="n", ylabel="U / L (worst seed)", title="certified ratio", yscale="log")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main() -> None:
    args = h.parser(__doc__, quick="fewer sizes and seeds", device=None).parse_args()
    h.setup(args)
    out, quick = h.out_dir(args), args.quick
    sizes, n_seeds = ([8, 12], 2) if quick else ([8, 12, 16, 24], 4)
    seeds = range(args.seed, args.seed + n_seeds)
    beta = 0.05
    print("class | n | factor | achieved | plain | bound | cert(arr) | cert(SDP) | t s | vs exh")
    rows = ratio_rows(sizes, seeds, beta)
    orth = orthogonal_rows(12, seeds, [0.005, 0.02, 0.05, 0.2])
    beyond = beyond_rows([40] if quick else [40, 80], 8, beta, args.seed)
    h.save_figure(figure(rows), "maxcut", out=out, dpi=110)
    h.write_doc(
        "maxcut",
        "Max-Cut rounding for two-layer ReLU training",
        f"2-D data, no bias, squared loss / (2n), beta = {beta}, {n_seeds} seeds; worst"
        " seed shown. `achieved` = U / p* with p* from exhaustive enumeration of the"
        " arrangement (CVXPY), for `solve` (n Gaussian hyperplanes + one round of SDP cuts);"
        " `achieved_plain` = the same with the Gaussian hyperplanes only; `bound` = the"
        " ratio the paper's abstract states for the class (1 orthogonal, sqrt(pi/2)"
        " negatively correlated; the general-data bound is in terms of a factor whose"
        " definition was not obtainable: n/a); `cert(...)` = U / L, the ratio the solver"
        " certifies without knowing p*, with L from the exact-cell dual bound or from the"
        " Max-Cut SDP relaxation; `factor_ours` = largest cross-class cosine (OUR proxy, not"
        " the paper's zonotope factor); `time_s` = time of `solve` (with both certificates),"
        " `time_vs_exhaustive` its ratio to exhaustive enumeration in the same run.",
        h.table(rows, echo=False),
        "## Two class patterns on orthogonally separable data (n = 12)",
        "`certified_exact` counts the runs whose residual had the sign of y (the closed-form"
        " certificate proves global optimality); the two-pattern network is not optimal when"
        " beta is small enough for it to overshoot labels.",
        h.table(orth, echo=False),
        f"## Beyond enumeration (d = 8, seed {args.seed})",
        "2n random hyperplanes, one round of GW cuts; the certificate is the Max-Cut SDP by"
        " Burer-Monteiro (valid for any n, d), the orthogonal closed form where it applies."
        " Times relative to the first row.",
        h.table(beyond, echo=False),
        "![ratios](maxcut.png)",
        NOTES,
        out=out,
    )


if __name__ == "__main__":
    main()
