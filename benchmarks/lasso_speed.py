"""Lasso path time against scikit-learn, glum and skglm at a common duality-gap target.

Every solver fits the same 100-penalty path (log-spaced down to 1e-3 of lambda_max) on
the same problem, one thread (threadpoolctl limits BLAS), best of ``--repeat`` timed
runs after a warm-up. Each solver's stopping tolerance is set to its own reading of
``--tol`` (scikit-learn: its gap rule, which is ours for gaussian; glum: gradient_tol;
skglm: its KKT tol); then one independent evaluator (below) computes every returned
path's largest duality gap relative to the null deviance, which the table reports next
to the time, so the reader sees whether the accuracies matched.

Problems: dense gaussian / binomial / poisson with 20 true features, n x p from 400 x 160
to 5 000 x 2 000 (``--quick``: the two smallest, gaussian and binomial, scikit-learn's binomial saga
path only at 400 x 160), and one sparse
text-like gaussian problem (5 000 x 20 000, 0.5 % nonzeros, tf-idf-like positive values).
10 000 x 5 000 was dropped to keep the full run within about 15 minutes; problems with
more than 10^7 entries are timed once after the warm-up. scikit-learn's saga path for
binomial is skipped above 2 000 x 1 000 (it takes hours there).

Writes docs/lasso_speed.md and docs/lasso_speed.png.
Usage: python benchmarks/lasso_speed.py [--quick] [--repeat R] [--tol T]
Durations: see docs/lasso_design.md.
"""

from __future__ import annotations

import warnings

import _harness as h
import numpy as np
import scipy.sparse as sp
from glum import GeneralizedLinearRegressor
from rich.console import Console
from rich.progress import track
from sklearn.linear_model import LogisticRegression, lasso_path
from threadpoolctl import threadpool_limits

from mrsolve.solvers.lasso import fit_path
from mrsolve.solvers.lasso.glm import FAMILY_CLASSES

SIZES = [(400, 160), (2000, 1000), (5000, 2000)]
BIG = 10**7  # entries of X above which a problem is timed once
N_PENALTIES = 100
MIN_RATIO = 1e-3


def problem(n, p, family, seed, sparse=False):
    rng = np.random.default_rng(seed)
    if sparse:
        X = sp.random(n, p, density=0.005, random_state=seed, format="csr")
        X.data = np.log1p(10 * X.data)
    else:
        X = rng.standard_normal((n, p))
    beta = np.zeros(p)
    beta[:20] = rng.standard_normal(20)
    eta = np.asarray(X @ beta).ravel()
    if sparse:
        eta = eta / max(eta.std(), 1e-12)
    if family == "gaussian":
        y = eta + rng.standard_normal(n)
    elif family == "binomial":
        y = (eta + rng.standard_normal(n) > 0).astype(float)
    else:
        y = rng.poisson(np.exp(0.3 * eta / max(eta.std(), 1e-12))).astype(float)
    return X, y


def relative_gap(X, y, family, coefs, icpts, lams) -> float:
    """Largest duality gap over the path / null deviance, for any solver's output.

    Dual point: ``w (y - mean(eta + c))`` with ``c`` the exact intercept correction
    (its sum is zero, and its mean stays inside the family's domain after the scaling),
    scaled into ``|X^T theta| <= lam``; the gap is the returned fit's primal minus the
    family's dual value, a valid bound whatever the solver's own intercept accuracy.
    """
    n = X.shape[0]
    w = np.full((n, 1), 1.0 / n)
    fam = FAMILY_CLASSES[family](y[:, None], w, 0.0)
    ybar = np.full((n, 1), y.mean())
    link = {"gaussian": ybar, "binomial": np.log(ybar / (1 - ybar)), "poisson": np.log(ybar)}
    null = fam.deviance(link[family])
    worst = 0.0
    for coef, b0, lam in zip(coefs, icpts, lams, strict=True):
        eta = np.asarray(X @ coef).reshape(n, 1) + b0
        c = 0.0
        for _ in range(100):  # 1-D Newton: the intercept that zeroes the gradient's sum
            g, hess = fam.grad_hess(eta + c)
            step = g.sum() / hess.sum()
            c -= step
            if abs(step) < 1e-14 * max(1.0, abs(c)):
                break
        theta = -fam.grad_hess(eta + c)[0]
        corr = np.abs(np.asarray(X.T @ theta)).max()
        s = min(1.0, lam / corr) if corr > 0 else 1.0
        primal = fam.value(eta) + lam * np.abs(coef).sum()
        worst = max(worst, (primal - fam.dual_value(s * theta)) / null)
    return float(worst)


def lambda_grid(X, y, family):
    n = X.shape[0]
    mu = y.mean()
    lam_max = np.abs(np.asarray(X.T @ (y - mu))).max() / n
    return lam_max * np.logspace(0, np.log10(MIN_RATIO), N_PENALTIES)


def solvers(family, tol, sparse):
    """name -> fit(X, y, lams) returning (coefs (L, p), intercepts (L,))."""

    def ours(X, y, lams):
        r = fit_path(X, y, family=family, penalties=lams, tol=tol)
        return r.coef, r.intercept

    def glum(X, y, lams):
        fam = {"gaussian": "normal"}.get(family, family)
        m = GeneralizedLinearRegressor(
            family=fam, alphas=lams, alpha_search=True, l1_ratio=1.0, gradient_tol=tol
        ).fit(X, y)
        return m.coef_path_, np.asarray(m.intercept_path_)

    def skglm(X, y, lams):
        from skglm import GeneralizedLinearEstimator
        from skglm.datafits import Logistic, Poisson, Quadratic
        from skglm.penalties import L1
        from skglm.solvers import AndersonCD, ProxNewton

        datafit = {"gaussian": Quadratic(), "binomial": Logistic(), "poisson": Poisson()}[family]
        target = 2 * y - 1 if family == "binomial" else y
        solver = (
            AndersonCD(fit_intercept=True, tol=tol, warm_start=True)
            if family == "gaussian"
            else ProxNewton(fit_intercept=True, tol=tol, warm_start=True)
        )
        est = GeneralizedLinearEstimator(datafit, L1(lams[0]), solver)
        coefs, icpts = [], []
        for lam in lams:
            est.penalty = L1(lam)
            est.fit(X, target)
            coefs.append(est.coef_.ravel().copy())
            icpts.append(float(np.ravel(est.intercept_)[0]))
        return np.array(coefs), np.array(icpts)

    def sklearn(X, y, lams):
        if family == "gaussian":
            if sparse:  # lasso_path has no intercept: fit the centered target, X_offset
                xbar = np.asarray(X.mean(0)).ravel()
                _, c, _ = lasso_path(X, y - y.mean(), alphas=lams, tol=tol, X_offset=xbar)
            else:
                _, c, _ = lasso_path(X - X.mean(0), y - y.mean(), alphas=lams, tol=tol)
            c = c.T
            return c, y.mean() - np.asarray(X.mean(0)).ravel() @ c.T
        m = LogisticRegression(l1_ratio=1.0, solver="saga", warm_start=True, tol=tol)
        coefs, icpts = [], []
        for lam in lams:
            m.set_params(C=1 / (lam * len(y)), max_iter=10_000).fit(X, y)
            coefs.append(m.coef_[0].copy())
            icpts.append(float(m.intercept_[0]))
        return np.array(coefs), np.array(icpts)

    out = {"ours": ours, "glum": glum, "skglm": skglm}
    if family != "poisson":
        out["scikit-learn"] = sklearn
    return out


def main() -> None:
    args = h.parser(__doc__, quick="400x160 and 2000x1000, gaussian + binomial", device=None)
    args.add_argument("--repeat", type=int, default=3, help="timed runs (best is kept)")
    args.add_argument("--tol", type=float, default=1e-4, help="relative duality gap target")
    args = args.parse_args()
    out = h.out_dir(args)
    warnings.simplefilter("ignore")
    sizes = SIZES[:2] if args.quick else SIZES
    families = ("gaussian", "binomial") if args.quick else ("gaussian", "binomial", "poisson")
    cases = [(n, p, fam, False) for fam in families for n, p in sizes]
    if not args.quick:
        cases.append((5000, 20000, "gaussian", True))
    rows = []
    with threadpool_limits(1):
        for n, p, fam, sparse in track(
            cases, description="lasso paths", console=Console(stderr=True)
        ):
            X, y = problem(n, p, fam, args.seed, sparse)
            lams = lambda_grid(X, y, fam)
            for name, fit in solvers(fam, args.tol, sparse).items():
                saga_cap = 400 * 160 if args.quick else 2000 * 1000
                if name == "scikit-learn" and fam == "binomial" and n * p > saga_cap:
                    continue  # saga over a 100-point path: minutes at 2000 x 1000, hours above
                (coefs, icpts), secs = h.best_of(
                    lambda f=fit, X=X, y=y, lams=lams: f(X, y, lams),
                    1 if n * p > BIG else args.repeat,
                )
                gap = relative_gap(X, y, fam, coefs, icpts, lams)
                label = f"{n} x {p}" + (" sparse" if sparse else "")
                rows.append((fam, label, name, secs, gap))
    best = {}
    for fam, label, name, secs, _ in rows:
        if name in ("glum", "skglm"):
            key = (fam, label)
            best[key] = min(best.get(key, np.inf), secs)
    ours = {(f, lb): s for f, lb, nm, s, _ in rows if nm == "ours"}
    sk = {(f, lb): s for f, lb, nm, s, _ in rows if nm == "scikit-learn"}
    summary = [
        (
            f,
            lb,
            s,
            s / sk[(f, lb)] if (f, lb) in sk else float("nan"),
            s / best[(f, lb)] if (f, lb) in best else float("nan"),
        )
        for (f, lb), s in ours.items()
    ]
    detail = h.table(
        rows,
        ["family", "n x p", "solver", "time (s)", "max relative gap"],
        formats={"time (s)": ".3f", "max relative gap": ".1e"},
    )
    ratios = h.table(
        summary,
        ["family", "n x p", "ours (s)", "ours / scikit-learn", "ours / best of glum, skglm"],
        formats={
            "ours (s)": ".3f",
            "ours / scikit-learn": ".2f",
            "ours / best of glum, skglm": ".2f",
        },
    )
    h.write_doc(
        "lasso_speed",
        "Lasso path speed",
        f"100-penalty paths to 1e-3 lambda_max, tol {args.tol:g}, one thread, best of "
        f"{args.repeat} after a warm-up (problems over 10^7 entries: one timed run). "
        f"Command: `{h.command()}`.",
        ratios,
        "Every solver, with the largest duality gap (relative to the null deviance) of "
        "its path as computed by one shared evaluator.",
        detail,
        out=out,
    )
    fig, axes = h.pyplot().subplots(1, len(families), figsize=(4 * len(families), 3.2))
    for ax, fam in zip(np.atleast_1d(axes), families, strict=True):
        for name in ("ours", "scikit-learn", "glum", "skglm"):
            pts = [(lb, s) for f, lb, nm, s, _ in rows if f == fam and nm == name]
            if pts:
                ax.plot([lb for lb, _ in pts], [s for _, s in pts], "o-", label=name)
        ax.set_yscale("log")
        ax.set_title(fam)
        ax.set_ylabel("path time (s)")
        ax.tick_params(axis="x", rotation=30)
        ax.legend()
    fig.tight_layout()
    h.save_figure(fig, "lasso_speed", out=out)


if __name__ == "__main__":
    main()
