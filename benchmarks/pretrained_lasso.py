"""Pretrained lasso: our PretrainedLassoCV against the authors' ``ptlasso``, and across alpha.

1. CV time and test MSE against the ``ptlasso`` Python package (adelie underneath; it
   pins numpy < 2, so it runs in its own environment through benchmarks/ptlasso_worker.py,
   exchanging .npz files) on simulations of the paper's design, the same data and folds
   for both, mean and spread over seeds (10 per design; ``--quick``: 2 seeds, one design).
2. The authors' simulation design (n = 300, K = 5 groups, p = 140, 10 common features,
   group-specific features 50/40/20/10/10, noise sd 20): test MSE and recall of the
   common features (fraction of (group, common feature) pairs with a nonzero effective
   coefficient) and false-positive rate, across alpha, averaged over replicates.
3. A real bundled data set (scikit-learn's diabetes, grouped by sex, the sex column
   removed; 2/3 train, 1/3 test): test MSE across alpha.

Writes docs/pretrained_lasso.md and docs/pretrained_lasso.png.
Usage: python benchmarks/pretrained_lasso.py [--quick] [--ptlasso-python PATH]
(PATH: the python of an environment with ``pip install ptlasso``; default
/work/ptlasso-venv/bin/python). Durations on a quiet machine: see docs/lasso_design.md.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import _harness as h
import numpy as np
from rich.console import Console
from rich.progress import track
from sklearn.datasets import load_diabetes
from threadpoolctl import threadpool_limits

from mrsolve.solvers.lasso import PretrainedLasso, PretrainedLassoCV, simulate_groups

CONSOLE = Console(stderr=True)
N_TEST = 3000
#: simulation designs of the comparison (the paper's layout: common + group-specific
#: features, standard normal X); noise sd sets the difficulty
DESIGNS = {
    "300 x 140, sd 20 (authors' test)": dict(n=300),
    "400 x 160, sd 5 (low noise)": dict(n=400, n_individual=(50, 40, 30, 20, 10), noise_sd=5.0),
    "400 x 160, sd 20 (high noise)": dict(n=400, n_individual=(50, 40, 30, 20, 10)),
}
ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _effective(m):
    return m.group_coef_ + (1 - m.pretrain_alpha) * m.overall_coef_


def simulation(reps: int, kw: dict, seed: int) -> dict:
    """Rows: method -> (mse, recall of common, false-positive rate) averaged over reps."""
    out: dict[str, list] = {}
    for r in range(seed, seed + reps):
        tr = simulate_groups(seed=100 + r)
        te = simulate_groups(n=3000, seed=200 + r)
        truth = tr.beta != 0
        for a in ALPHAS:
            m = PretrainedLasso(pretrain_alpha=a, random_state=r, **kw).fit(tr.X, tr.y, tr.groups)
            mse = np.mean((m.predict(te.X, te.groups) - te.y) ** 2)
            eff = _effective(m) != 0
            name = {0.0: "pretrained a=0", 1.0: "separate (a=1)"}.get(a, f"pretrained a={a}")
            out.setdefault(name, []).append(
                (mse, eff[:, tr.common].mean(), (eff & ~truth).sum() / (~truth).sum())
            )
            if a == ALPHAS[0]:  # the overall model alone (stage 1 at its lambda)
                Xa = m._augment(te.X, te.groups)
                pred = m.overall_.eta(Xa)
                ov = np.broadcast_to(m.overall_coef_ != 0, eff.shape)
                fpr = (ov & ~truth).sum() / (~truth).sum()
                out.setdefault("overall only", []).append(
                    (np.mean((pred - te.y) ** 2), ov[:, tr.common].mean(), fpr)
                )
    return {k: np.mean(v, axis=0) for k, v in out.items()}


def real_data(kw: dict, seed: int) -> dict:
    X, y = load_diabetes(return_X_y=True)
    groups = (X[:, 1] > 0).astype(int)
    X = np.delete(X, 1, axis=1)
    X = (X - X.mean(0)) / X.std(0)
    rng = np.random.default_rng(seed)
    test = rng.random(len(y)) < 1 / 3
    res = {}
    for a in ALPHAS:
        m = PretrainedLasso(pretrain_alpha=a, **kw).fit(X[~test], y[~test], groups[~test])
        res[a] = np.mean((m.predict(X[test], groups[test]) - y[test]) ** 2)
        if a == ALPHAS[0]:
            pred = m.overall_.eta(m._augment(X[test], groups[test]))
            res["overall"] = np.mean((pred - y[test]) ** 2)
    return res


def ptlasso_comparison(designs, seeds, ptlasso_python: str) -> list[tuple]:
    """Per design: our PretrainedLassoCV and ptlasso's on the same data and folds.

    Both: alphas 0, 0.1, ..., 1, 10 folds, standardized features, lambda.1se for the
    overall model and lambda.min in the groups, one thread. Returns rows (design, ours
    seconds per seed, ptlasso seconds, our test MSE, ptlasso test MSE, our alphas,
    ptlasso alphas), each an array over seeds.
    """
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, params in designs.items():
            ours_t, ours_mse, ours_a, pairs, tests = [], [], [], [], []
            for s in track(seeds, description=f"ours, {name}", console=CONSOLE):
                tr = simulate_groups(seed=1000 + s, **params)
                te = simulate_groups(seed=2000 + s, **{**params, "n": N_TEST})
                m = PretrainedLassoCV(standardize=True, random_state=s)
                with threadpool_limits(1):
                    t0 = time.perf_counter()
                    m.fit(tr.X, tr.y, tr.groups)
                    ours_t.append(time.perf_counter() - t0)
                ours_mse.append(np.mean((m.predict(te.X, te.groups) - te.y) ** 2))
                ours_a.append(m.pretrain_alpha_)
                src, dst = f"{tmp}/{name}_{s}_in.npz", f"{tmp}/{name}_{s}_out.npz"
                np.savez(
                    src,
                    X=tr.X,
                    y=tr.y,
                    groups=tr.groups,
                    X_test=te.X,
                    groups_test=te.groups,
                    foldid=m.foldid_,  # the same folds for both
                    n_folds=10,
                    standardize=True,
                    alphas=np.asarray(m.pretrain_alphas_),
                )
                pairs += [src, dst]
                tests.append(te.y)
            CONSOLE.print(f"ptlasso, {name}: {len(seeds)} fits in a subprocess")
            env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
            worker = str(Path(__file__).with_name("ptlasso_worker.py"))
            subprocess.run([ptlasso_python, worker, *pairs], check=True, env=env)
            outs = [np.load(dst) for dst in pairs[1::2]]
            pt_t = [float(o["seconds"]) for o in outs]
            pt_mse = [np.mean((o["pred"] - yt) ** 2) for o, yt in zip(outs, tests, strict=True)]
            pt_a = [float(o["alpha"]) for o in outs]
            rows.append((name, *map(np.array, (ours_t, pt_t, ours_mse, pt_mse, ours_a, pt_a))))
    return rows


def comparison_table(rows) -> str:
    def ms(a, spec):
        return f"{np.mean(a):{spec}} ± {np.std(a):{spec}}"

    return h.table(
        [
            (
                name,
                ms(t_o, ".2f"),
                ms(t_p, ".2f"),
                f"{np.mean(t_o / t_p):.2f}",
                ms(e_o, ".1f"),
                ms(e_p, ".1f"),
                f"{100 * (np.mean(e_o) / np.mean(e_p) - 1):+.1f} %",
                f"{np.mean(e_o < e_p):.0%}",
                f"{np.mean(a_o):.2f} / {np.mean(a_p):.2f}",
            )
            for name, t_o, t_p, e_o, e_p, a_o, a_p in rows
        ],
        [
            "design",
            "ours CV time (s)",
            "ptlasso CV time (s)",
            "time ratio",
            "ours test MSE",
            "ptlasso test MSE",
            "MSE vs ptlasso",
            "seeds ours better",
            "mean alpha ours / ptlasso",
        ],
    )


def figure(sim: dict):
    fig, (ax1, ax2) = h.pyplot().subplots(1, 2, figsize=(10, 3.5))
    pre = [k for k in sim if k.startswith("pretrained") or k.startswith("separate")]
    ax1.plot(ALPHAS, [sim[k][0] for k in pre], "o-", label="pretrained")
    ax1.axhline(sim["overall only"][0], color="k", ls="--", label="overall only")
    ax1.set_xlabel("alpha")
    ax1.set_ylabel("test MSE")
    ax1.set_title("simulation")
    ax1.legend()
    ax2.plot(ALPHAS, [sim[k][1] for k in pre], "o-", label="common recall")
    ax2.plot(ALPHAS, [sim[k][2] for k in pre], "s-", label="false-positive rate")
    ax2.set_xlabel("alpha (1 = separate lassos)")
    ax2.set_title("support recovery")
    ax2.legend()
    fig.tight_layout()
    return fig


def main() -> None:
    parser = h.parser(
        __doc__, quick="2 seeds of one design, 1 replicate", device=None, threads=None
    )
    parser.add_argument("--ptlasso-python", default="/work/ptlasso-venv/bin/python")
    args = parser.parse_args()
    if not Path(args.ptlasso_python).exists():
        raise SystemExit(f"--ptlasso-python: no interpreter at {args.ptlasso_python}")
    out = h.out_dir(args)
    warnings.simplefilter("ignore")
    designs = dict(list(DESIGNS.items())[:1]) if args.quick else DESIGNS
    seeds = range(args.seed, args.seed + (2 if args.quick else 10))
    cmp_rows = ptlasso_comparison(designs, seeds, args.ptlasso_python)
    cmp_table = comparison_table(cmp_rows)
    reps = 1 if args.quick else 5
    kw = dict(n_penalties=50 if args.quick else 100, n_folds=5 if args.quick else 10)
    sim = simulation(reps, kw, args.seed)
    real = real_data(kw, args.seed)

    sim_table = h.table(
        [(name, *values) for name, values in sim.items()],
        ["method", "test MSE", "common recall", "false-positive rate"],
        formats={"test MSE": ".1f", "common recall": ".2f", "false-positive rate": ".3f"},
    )
    real_table = h.table(
        [(key if isinstance(key, str) else f"alpha={key}", mse) for key, mse in real.items()],
        ["model", "test MSE"],
        formats={"test MSE": ".0f"},
    )
    h.write_doc(
        "pretrained_lasso",
        "Pretrained lasso benchmark",
        f"PretrainedLassoCV against ptlasso (the authors' package, adelie underneath), "
        f"{len(seeds)} seeds per design, the same data and folds for both: alphas 0, 0.1, "
        "..., 1, 10 folds, standardized, lambda.1se overall and lambda.min in the groups, "
        f"one thread; test MSE on {N_TEST} fresh rows; mean ± sd over seeds; time ratio = "
        "mean over seeds of ours / ptlasso (ptlasso also fits its alpha-free individual "
        "models, which it reports alongside).",
        cmp_table,
        f"Simulation (authors' design, {reps} replicate(s)): test MSE, recall of the common "
        "features, false-positive rate.",
        sim_table,
        "Diabetes (scikit-learn), grouped by sex: test MSE.",
        real_table,
        out=out,
    )
    h.save_figure(figure(sim), "pretrained_lasso", out=out)


if __name__ == "__main__":
    main()
