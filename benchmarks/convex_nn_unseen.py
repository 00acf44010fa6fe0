"""Convex two-layer networks at default settings vs pyscnn, on data no default was chosen on.

Both packages at their defaults on the same program (the same Gaussian gates, lambda
1e-3, float64, 1 thread): ours is ``ConvexNNRegressor(gates=..., beta=c lambda)`` with
its default ``tol`` and ``max_iter`` (fit time as a user sees it: validation, solver and
certificate), pyscnn's R-FISTA (gated ReLU) and augmented Lagrangian (ReLU) with theirs.
Classes are one-hot targets of the squared loss (+-1 for two classes), as pyscnn fits them.

Each set also gets time-to-accuracy curves: the relative objective gap to the optimum
versus wall time for several tolerances of both packages. The optimum is CVXPY's
(Clarabel) for gated ReLU; for ReLU it is the certified lower bound of our IPM at
``tol=1e-8`` (exact polish below its reach), a proven bound on the optimum, so the gaps
are upper bounds (CVXPY with its ``2 P n`` cone rows, up to 480,000 here, was not run;
pyscnn's ReLU points violate the cones, so their gap may be negative: plotted at its
absolute value, marked hollow).

``--sets unseen`` (default): nine sets of different shapes that chose nothing (the last two,
n << d and eight classes, added in session 10 without looking at results on them);
``--sets dev``: the two sets the defaults were chosen on (friedman1 1500 x 10, breast
cancer 569 x 30); ``--sets shapes``: eight development sets of the three blind shapes (n ~ 2 d
and n ~ 20 d regression, 6-10 classes) from other generators and seeds. ``--quick``: two small sets, default settings only, no curves.
``--datasets a,b`` runs a subset, ``--no-curves`` the default-settings table only.
pyscnn (PyPI ``pyscnn``, import ``scnn``) must be on ``PYTHONPATH``.

Writes docs/<--name>.md and .png (default convex_nn_unseen or convex_nn_dev).
"""

from __future__ import annotations

import argparse
import math
import multiprocessing as mp

import _harness as h
import numpy as np
import torch
from convex_nn import have_pyscnn, pyscnn_solve, targets
from rich.progress import Progress
from sklearn import datasets as skd
from threadpoolctl import threadpool_limits

from mrsolve.solvers.convex_nn import (
    ConvexNNRegressor,
    ConvexProgram,
    add_bias,
    make_datafit,
    sample_gates,
    solve,
)

#: our tolerances on the curves (None: the estimator's default) and pyscnn's: the default
#: and two more per package (three per package took ~30 min in all on a quiet machine)
OURS_TOLS = (None, 1e-1, 1e-4)
PYSCNN_TOLS = {"gated_relu": (None, 1e-4, 1e-7), "relu": (None, 1e-4)}
#: pyscnn's fits off the default-settings table stop at this fraction of --pyscnn-cap
CURVE_CAP = 0.4


def unseen_sets(quick: bool, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Sets that chose no default: (X, y, "regression" | "classes")."""
    s = seed + 100  # seeds the development sets do not use
    if quick:
        return {
            "iris": (*skd.load_iris(return_X_y=True), "classes"),
            "moons_300": (*skd.make_moons(300, noise=0.25, random_state=s), "classes"),
        }
    return {
        "friedman2": (*skd.make_friedman2(2000, noise=0.1, random_state=s), "regression"),
        "friedman3": (*skd.make_friedman3(1000, noise=0.05, random_state=s + 1), "regression"),
        "regression_40": (
            *skd.make_regression(800, 40, n_informative=12, noise=10.0, random_state=s + 2),
            "regression",
        ),
        "iris": (*skd.load_iris(return_X_y=True), "classes"),
        "moons": (*skd.make_moons(1200, noise=0.25, random_state=s + 3), "classes"),
        "classification_3x25": (
            *skd.make_classification(500, 25, n_informative=10, n_classes=3, random_state=s + 4),
            "classes",
        ),
        "quantiles_6d": (
            *skd.make_gaussian_quantiles(
                n_samples=1000, n_features=6, n_classes=2, random_state=s + 5
            ),
            "classes",
        ),
        # added in session 10 without looking at any result on them: n << d, and many classes
        "wide_200x100": (
            *skd.make_regression(200, 100, n_informative=15, noise=5.0, random_state=s + 6),
            "regression",
        ),
        "blobs_8x10": (
            *skd.make_blobs(600, n_features=10, centers=8, cluster_std=3.0, random_state=s + 7),
            "classes",
        ),
    }


def shape_sets(quick: bool, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """Development sets of the three blind shapes (n ~ 2 d, many classes: session 11; n ~ 20
    d regression: session 12) from other generators, seeds and sizes, so that nothing is
    chosen on the unseen ones."""
    s = seed + 300
    out = {
        "wide_150x80": (
            *skd.make_regression(150, 80, n_informative=12, noise=5.0, random_state=s),
            "regression",
        ),
        "wide_300x150": (
            *skd.make_regression(300, 150, n_informative=20, noise=8.0, random_state=s + 1),
            "regression",
        ),
        "friedman1_120x60": (*skd.make_friedman1(120, 60, random_state=s + 2), "regression"),
        "blobs_6x12": (
            *skd.make_blobs(500, n_features=12, centers=6, cluster_std=2.5, random_state=s + 3),
            "classes",
        ),
        "blobs_10x8": (
            *skd.make_blobs(700, n_features=8, centers=10, cluster_std=2.0, random_state=s + 4),
            "classes",
        ),
        "classification_10x15": (
            *skd.make_classification(
                800, 15, n_informative=8, n_classes=10, n_clusters_per_class=1, random_state=s + 5
            ),
            "classes",
        ),
        # n ~ 20 d regression (session 12)
        "regression_700x35": (
            *skd.make_regression(700, 35, n_informative=10, noise=8.0, random_state=s + 6),
            "regression",
        ),
        "friedman1_900x45": (*skd.make_friedman1(900, 45, random_state=s + 7), "regression"),
    }
    return {k: out[k] for k in ("wide_150x80", "blobs_6x12")} if quick else out


def dev_sets(quick: bool, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    """The sets the defaults were chosen on."""
    out = {
        "friedman1": (*skd.make_friedman1(1500, 10, random_state=seed), "regression"),
        "breast_cancer": (*skd.load_breast_cancer(return_X_y=True), "classes"),
    }
    return dict(list(out.items())[:1]) if quick else out


def ours(X, Y, gates, beta, act, tol):
    """The estimator (default ``tol`` when None); (seconds, weights)."""
    est = ConvexNNRegressor(activation=act, gates=gates, beta=beta, tol=tol)
    est, t = h.timed(lambda: est.fit(X, Y))
    return t, est.solution_.weights


def pyscnn_capped(Xa, Y, gates, lam, relu, tol, cap):
    """:func:`pyscnn_solve` in a forked child, killed after ``cap`` seconds: its
    (seconds, u, gates), or None when it ran out (its time is then at least ``cap``). The
    child times the fit itself, so the fork adds nothing to the time."""
    ctx = mp.get_context("fork")
    recv, send = ctx.Pipe(duplex=False)
    child = ctx.Process(
        target=lambda: send.send(pyscnn_solve(Xa, Y, gates, lam, relu, tol=tol)), daemon=True
    )
    child.start()
    send.close()
    try:
        out = recv.recv() if recv.poll(cap) else None
    except EOFError:  # the child died without an answer
        raise RuntimeError(f"pyscnn failed (exit code {child.exitcode})") from None
    finally:
        child.kill()
        child.join()
    return out


def reference(Xa, Y, gates, beta, act):
    """The optimum's value (gated ReLU: CVXPY) or a certified lower bound (ReLU: IPM)."""
    if act == "gated_relu":
        return solve(Xa, Y, gates, beta, activation=act, solver="cvxpy", certify=False).objective
    return solve(Xa, Y, gates, beta, activation=act, tol=1e-8, n_fresh=0).certificate["dual"]


def run_set(name, X, y, kind, args, curves, progress, task):
    X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
    Y = targets(y, kind)
    Xa = add_bias(torch.from_numpy(X)).numpy()
    gates = sample_gates(torch.from_numpy(Xa), args.gates, seed=args.seed).numpy()
    c = Y.shape[1]
    beta = c * args.lam  # pyscnn scales the squared loss by 1/(n c)
    df = make_datafit("squared", torch.from_numpy(Y), torch.float64)
    rows, points = [], []
    for act in args.activations.split(","):
        kappa = None if act == "gated_relu" else 0.0
        prog = ConvexProgram(torch.from_numpy(Xa), torch.from_numpy(gates), kappa, c, df, beta)
        opt = reference(Xa, Y, gates, beta, act) if curves else float("nan")

        def measure(pkg, tol, act=act, prog=prog, opt=opt, kappa=kappa):
            point = dict(dataset=name, activation=act, package=pkg, tol=tol, capped=False)
            if pkg == "ours":
                t, u = ours(X, Y, gates, beta, act, tol)
                p = prog
            else:
                cap = args.pyscnn_cap * (1.0 if tol is None else CURVE_CAP)
                fit = pyscnn_capped(Xa, Y, gates, args.lam, act == "relu", tol, cap)
                if fit is None:  # stopped: a lower bound on its time, no objective
                    point.update(t=cap, obj=math.nan, gap=math.nan, violation=math.nan)
                    point["capped"] = True
                    points.append(point)
                    progress.advance(task)
                    return point
                t, u, g = fit
                p = ConvexProgram(torch.from_numpy(Xa), torch.from_numpy(g), kappa, c, df, beta)
                u = torch.from_numpy(u).reshape(p.shape)
            obj = p.objective(u.cpu())
            point.update(t=t, obj=obj, gap=(obj - opt) / abs(opt), violation=p.violation(u.cpu()))
            points.append(point)
            progress.advance(task)
            return point

        mine, theirs = measure("ours", None), measure("pyscnn", None)
        target = 1.0 if act == "gated_relu" else 10.0
        # a stopped pyscnn fit: its time and the speed-up are lower bounds ('>='), and the
        # target counts as met on time alone (there is no objective of pyscnn to compare)
        no_worse = theirs["capped"] or mine["obj"] <= theirs["obj"]
        rows.append(
            dict(
                dataset=name,
                shape=f"{X.shape[0]}x{X.shape[1]}, {c}",
                activation=act,
                t_ours=mine["t"],
                t_pyscnn=(">= " if theirs["capped"] else "") + f"{theirs['t']:.3g}",
                speed_up=(">= " if theirs["capped"] else "") + f"{theirs['t'] / mine['t']:.3g}",
                obj_ours=mine["obj"],
                obj_pyscnn=theirs["obj"],
                gap_ours=mine["gap"],
                gap_pyscnn=theirs["gap"],
                viol_pyscnn=theirs["violation"],
                met=(
                    "unknown"  # stopped below the target: neither met nor missed
                    if theirs["capped"] and theirs["t"] / mine["t"] < target
                    else bool(no_worse and theirs["t"] / mine["t"] >= target)
                ),
            )
        )
        print(rows[-1], flush=True)
        if curves:
            for tol in OURS_TOLS[1:]:
                measure("ours", tol)
            for tol in PYSCNN_TOLS[act][1:]:
                measure("pyscnn", tol)
    return rows, points


def figure(points, names, acts, out, stem):
    plt = h.pyplot()
    fig, axes = plt.subplots(
        len(acts), len(names), figsize=(2.6 * len(names), 2.4 * len(acts)), squeeze=False
    )
    for i, act in enumerate(acts):
        for j, name in enumerate(names):
            ax = axes[i, j]
            for pkg, color in (("ours", "C0"), ("pyscnn", "C3")):
                pts = sorted(
                    (
                        p
                        for p in points
                        if (p["dataset"], p["activation"], p["package"]) == (name, act, pkg)
                        and not p["capped"]  # a stopped fit has no objective
                    ),
                    key=lambda p: p["t"],
                )
                if not pts:
                    continue
                t = [p["t"] for p in pts]
                g = [max(abs(p["gap"]), 1e-12) for p in pts]
                ax.plot(t, g, "-", color=color, lw=0.8, label=pkg if (i, j) == (0, 0) else None)
                for p, tt, gg in zip(pts, t, g, strict=True):
                    face = color if p["gap"] >= 0 else "none"
                    size = 9 if p["tol"] is None else 4  # the default: a big marker
                    ax.plot(tt, gg, "o", ms=size, mfc=face, mec=color)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"{name}, {act}", fontsize=8)
            if j == 0:
                ax.set_ylabel("(objective - optimum) / optimum")
            if i == len(acts) - 1:
                ax.set_xlabel("wall time (s)")
    axes[0, 0].legend()
    fig.tight_layout()
    h.save_figure(fig, stem, out=out)


def main() -> None:
    ap = h.parser(__doc__, quick="two small sets, defaults only, no curves", device=None)
    ap.add_argument("--sets", choices=("unseen", "dev", "shapes"), default="unseen")
    ap.add_argument("--gates", type=int, default=120)
    ap.add_argument("--lam", type=float, default=1e-3, help="pyscnn's lambda (beta = c lambda)")
    ap.add_argument("--activations", default="gated_relu,relu")
    ap.add_argument("--datasets", default=None, help="comma-separated subset of --sets")
    ap.add_argument(
        "--curves",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time-to-accuracy curves (default: on, off with --quick)",
    )
    ap.add_argument("--name", default=None, help="stem of the table and figure")
    ap.add_argument(
        "--pyscnn-cap",
        type=float,
        default=100.0,
        help="seconds after which a default-settings pyscnn fit is stopped and reported as a "
        f"lower bound ('>='); its curve fits stop at {CURVE_CAP:g} x this",
    )
    args = ap.parse_args()
    h.setup(args)
    out = h.out_dir(args)
    threadpool_limits(args.threads)  # numpy's BLAS (pyscnn, CVXPY) as torch
    if not have_pyscnn():
        ap.error("pyscnn is not importable: put it on PYTHONPATH")
    acts = args.activations.split(",")
    if set(acts) - {"gated_relu", "relu"}:
        ap.error(f"--activations: choose from gated_relu,relu, got {acts}")
    sets = {"unseen": unseen_sets, "dev": dev_sets, "shapes": shape_sets}[args.sets](
        args.quick, args.seed
    )
    if args.datasets:
        keep = args.datasets.split(",")
        if set(keep) - set(sets):
            ap.error(f"--datasets: unknown {sorted(set(keep) - set(sets))}; from {sorted(sets)}")
        sets = {k: v for k, v in sets.items() if k in keep}
    curves = not args.quick if args.curves is None else args.curves
    per_act = 2 + (len(OURS_TOLS) - 1 if curves else 0)
    total = sum(per_act + (len(PYSCNN_TOLS[a]) - 1 if curves else 0) for a in acts) * len(sets)
    rows, points = [], []
    with Progress(transient=True) as progress:  # rich writes to stderr
        task = progress.add_task("fits", total=total)
        for name, (X, y, kind) in sets.items():
            r, p = run_set(name, X, y, kind, args, curves, progress, task)
            rows += r
            points += p
    stem = args.name or f"convex_nn_{args.sets}"
    ref = "CVXPY optimum (gated ReLU) / certified IPM lower bound (ReLU)"
    cols = {
        "dataset": "dataset",
        "shape": "n x d, outputs",
        "activation": "activation",
        "t_ours": "t ours (s)",
        "t_pyscnn": "t pyscnn (s)",
        "speed_up": "speed-up",
        "obj_ours": "objective ours",
        "obj_pyscnn": "objective pyscnn",
        "gap_ours": "gap ours",
        "gap_pyscnn": "gap pyscnn",
        "viol_pyscnn": "violation pyscnn",
        "met": "target met",
    }
    fmts = {
        "obj_ours": ".7g",
        "obj_pyscnn": ".7g",
        "gap_ours": ".1e",
        "gap_pyscnn": ".1e",
        "viol_pyscnn": ".1e",
        "t_ours": ".3g",
    }
    md = [
        f"Both packages at their default settings, {args.gates} Gaussian gates (the same for "
        f"both), lambda {args.lam:g} (beta = c lambda), float64, {args.threads} thread(s); "
        f"'gap' is (objective - reference) / reference with the reference the {ref} "
        "(n/a in --quick runs). Target: gated ReLU speed-up >= 1 and ReLU >= 10 with an "
        "objective no higher than pyscnn's. A pyscnn time '>= T' is a fit stopped at T "
        f"seconds (--pyscnn-cap {args.pyscnn_cap:g}; {CURVE_CAP:g} x that for curve points): a "
        "lower bound on its time, the speed-up a lower bound too, and no objective (nan).",
        h.table(rows, cols, formats=fmts),
    ]
    if curves:
        pcols = {
            "dataset": "dataset",
            "activation": "activation",
            "package": "package",
            "tol": "tol",
            "t": "t (s)",
            "capped": "stopped at cap",
            "gap": "gap",
            "violation": "violation",
        }
        fmt_tol = {"tol": lambda v: "default" if v is None else f"{v:g}"}
        md += [
            "### Time-to-accuracy points",
            h.table(points, pcols, formats={**fmt_tol, "gap": ".2e", "violation": ".1e"}),
        ]
        figure(points, list(sets), acts, out, stem)
        md.append(f"![time to accuracy]({stem}.png)")
    h.write_doc(
        stem, f"Convex networks at default settings vs pyscnn ({args.sets} sets)", *md, out=out
    )


if __name__ == "__main__":
    main()
