"""Pretrained vs overall vs separate lassos, and lasso-path fit times against sklearn and glum.

1. The authors' simulation design (n = 300, K = 5 groups, p = 140, 10 common features,
   group-specific features 50/40/20/10/10, noise sd 20): test MSE and recall of the
   common features (fraction of (group, common feature) pairs with a nonzero effective
   coefficient) and false-positive rate, across alpha, averaged over replicates.
2. A real bundled data set (scikit-learn's diabetes, grouped by sex, the sex column
   removed; 2/3 train, 1/3 test): test MSE across alpha.
3. Fit time of a 100-lambda gaussian and binomial lasso path: ours vs scikit-learn's
   (``lasso_path`` / warm-started ``LogisticRegression``) vs glum, as ratios to scikit-learn
   measured in the same run; the largest coefficient difference to ours is reported too.

Writes docs/pretrained_lasso.md and docs/pretrained_lasso.png.
Usage: python benchmarks/pretrained_lasso.py [--quick]
"""

from __future__ import annotations

import warnings

import _harness as h
import numpy as np
from glum import GeneralizedLinearRegressor
from sklearn.datasets import load_diabetes
from sklearn.linear_model import LogisticRegression, lasso_path

from mrsolve.solvers.lasso import PretrainedLasso, fit_path, simulate_groups

ALPHAS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def _effective(m):
    return m.group_coef_ + (1 - m.alpha) * m.overall_coef_


def simulation(reps: int, kw: dict, seed: int) -> dict:
    """Rows: method -> (mse, recall of common, false-positive rate) averaged over reps."""
    out: dict[str, list] = {}
    for r in range(seed, seed + reps):
        tr = simulate_groups(seed=100 + r)
        te = simulate_groups(n=3000, seed=200 + r)
        truth = tr.beta != 0
        for a in ALPHAS:
            m = PretrainedLasso(alpha=a, seed=r, **kw).fit(tr.X, tr.y, tr.groups)
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
        m = PretrainedLasso(alpha=a, **kw).fit(X[~test], y[~test], groups[~test])
        res[a] = np.mean((m.predict(X[test], groups[test]) - y[test]) ** 2)
        if a == ALPHAS[0]:
            pred = m.overall_.eta(m._augment(X[test], groups[test]))
            res["overall"] = np.mean((pred - y[test]) ** 2)
    return res


def timing(n: int, p: int, repeat: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p))
    beta = np.zeros(p)
    beta[:10] = rng.standard_normal(10)
    y = X @ beta + rng.standard_normal(n)
    yb = (X @ beta + rng.standard_normal(n) > 0).astype(float)
    rows = []
    lams = fit_path(X, y, n_lambdas=100, lambda_min_ratio=1e-2).lambdas
    ours, t_ours = h.best_of(lambda: fit_path(X, y, lambdas=lams, tol=1e-12), repeat)
    Xc, yc = X - X.mean(0), y - y.mean()
    (_, sk, _), t_sk = h.best_of(lambda: lasso_path(Xc, yc, alphas=lams, tol=1e-10), repeat)
    glum = GeneralizedLinearRegressor(
        family="normal", alphas=lams, alpha_search=True, l1_ratio=1.0, gradient_tol=1e-10
    )
    g, t_gl = h.best_of(lambda: glum.fit(X, y), repeat)
    diff_sk, diff_gl = np.abs(ours.coef - sk.T).max(), np.abs(ours.coef - g.coef_path_).max()
    rows.append(("gaussian", t_ours, t_sk, t_gl, diff_sk, diff_gl))
    lamb = fit_path(X, yb, family="binomial", n_lambdas=100, lambda_min_ratio=1e-2).lambdas
    ours, t_ours = h.best_of(
        lambda: fit_path(X, yb, family="binomial", lambdas=lamb, tol=1e-12), repeat
    )

    def sk_logistic():
        m = LogisticRegression(
            l1_ratio=1.0, solver="saga", warm_start=True, tol=1e-6, max_iter=10_000
        )
        coefs = []
        for lam in lamb:
            m.set_params(C=1 / (lam * n)).fit(X, yb)
            coefs.append(m.coef_[0].copy())
        return np.array(coefs)

    skc, t_sk = h.best_of(sk_logistic, repeat)
    glum = GeneralizedLinearRegressor(
        family="binomial", alphas=lamb, alpha_search=True, l1_ratio=1.0, gradient_tol=1e-10
    )
    g, t_gl = h.best_of(lambda: glum.fit(X, yb), repeat)
    diff_sk, diff_gl = np.abs(ours.coef - skc).max(), np.abs(ours.coef - g.coef_path_).max()
    rows.append(("binomial", t_ours, t_sk, t_gl, diff_sk, diff_gl))
    return rows


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
    args = h.parser(
        __doc__, quick="one replicate, small timing problem", device=None, threads=None
    ).parse_args()
    out = h.out_dir(args)
    warnings.simplefilter("ignore")
    reps = 1 if args.quick else 5
    kw = dict(n_lambdas=50 if args.quick else 100, n_folds=5 if args.quick else 10, tol=1e-8)
    sim = simulation(reps, kw, args.seed)
    real = real_data(kw, args.seed)
    n, p = (300, 50) if args.quick else (1000, 200)
    times = timing(n, p, repeat=1 if args.quick else 3, seed=args.seed)

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
    time_table = h.table(
        [(fam, to, ts, tg, to / ts, tg / ts, ds, dg) for fam, to, ts, tg, ds, dg in times],
        [
            "family",
            "ours (s)",
            "sklearn (s)",
            "glum (s)",
            "ours/sklearn",
            "glum/sklearn",
            "max diff sklearn",
            "max diff glum",
        ],
        formats={
            "ours (s)": ".3f",
            "sklearn (s)": ".3f",
            "glum (s)": ".3f",
            "ours/sklearn": ".2f",
            "glum/sklearn": ".2f",
            "max diff sklearn": ".1e",
            "max diff glum": ".1e",
        },
    )
    h.write_doc(
        "pretrained_lasso",
        "Pretrained lasso benchmark",
        f"Simulation (authors' design, {reps} replicate(s)): test MSE, recall of the common "
        "features, false-positive rate.",
        sim_table,
        "Diabetes (scikit-learn), grouped by sex: test MSE.",
        real_table,
        f"Lasso path fit time, 100 lambdas, n={n}, p={p} (ratio to scikit-learn; "
        "max |coef difference| to ours); best of the timed fits after one warm-up fit.",
        time_table,
        out=out,
    )
    h.save_figure(figure(sim), "pretrained_lasso", out=out)


if __name__ == "__main__":
    main()
