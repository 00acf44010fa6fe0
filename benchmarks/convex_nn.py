"""Convex two-layer networks: mrsolve vs pyscnn, vs Adam-trained networks, and the MKL view.

From one run on identical gates and regularization:
1. gated ReLU (our FISTA vs pyscnn's R-FISTA) and ReLU (our interior-point method vs
   pyscnn's augmented Lagrangian): time ratio and objective (both evaluated by our code at
   both solutions, ``1/(2n) ||yhat - y||^2 + beta sum ||u_g||`` with one-hot targets for
   classes), and the lower bound on the optimum our certificate proves;
2. classification test accuracy and time: convex classifiers (logistic / multinomial
   loss) vs two-layer networks trained with Adam at several learning rates;
3. MKL: training / test error of the NTK kernel vs the reweighted (optimal) kernel.

pyscnn (PyPI ``pyscnn``, import ``scnn``) is optional: put it on ``PYTHONPATH`` (it is not
a dependency of mrsolve); without it those columns read "n/a".

Writes docs/<--name>.md and .png (default docs/convex_nn.md, docs/convex_nn.png).
``--quick`` runs two small datasets.
"""

from __future__ import annotations

from functools import partial

import _harness as h
import numpy as np
import torch
from sklearn.datasets import load_breast_cancer, load_diabetes, load_digits, load_wine
from sklearn.model_selection import train_test_split
from threadpoolctl import threadpool_limits

from mrsolve.solvers.convex_nn import (
    ConvexNNClassifier,
    ConvexProgram,
    TwoLayerNet,
    add_bias,
    certificate,
    make_datafit,
    network_objective,
    sample_gates,
    solve,
)
from mrsolve.solvers.mkl import (
    group_lasso_objective,
    kernel_predict,
    kernel_ridge,
    masked_kernel,
    ntk_gates,
    reweight,
)


def datasets(quick: bool, large_n: int, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray, str]]:
    out = {
        "diabetes": (*load_diabetes(return_X_y=True), "regression"),
        "wine": (*load_wine(return_X_y=True), "classes"),
    }
    if not quick:
        out["breast_cancer"] = (*load_breast_cancer(return_X_y=True), "classes")
        out["digits"] = (*load_digits(return_X_y=True), "classes")
        rng = np.random.default_rng(seed)
        X = rng.standard_normal((large_n, 20))
        y = (
            np.maximum(X @ rng.standard_normal(20), 0)
            - np.abs(X[:, 0])
            + 0.1 * rng.standard_normal(large_n)
        )
        out[f"synthetic_n{large_n}"] = (X, y, "regression")
    return out


def targets(y: np.ndarray, kind: str) -> np.ndarray:
    """Regression targets standardized; classes one-hot (+-1 for two classes)."""
    if kind == "regression":
        return ((y - y.mean()) / y.std())[:, None]
    classes = np.unique(y)
    if len(classes) == 2:
        return np.where(y == classes[1], 1.0, -1.0)[:, None]
    return (y[:, None] == classes[None]).astype(float)


def pyscnn_solve(Xa, Y, gates, lam, relu, max_iter=None, tol=None):
    """pyscnn on the same (bias-augmented) data and gates; returns (time, u, gates used).
    ``max_iter`` (R-FISTA's budget) and ``tol`` (R-FISTA's or the AL's tolerance) None
    keep pyscnn's defaults."""
    from scnn.metrics import Metrics
    from scnn.models import ConvexGatedReLU, ConvexReLU
    from scnn.optimize import optimize_model
    from scnn.regularizers import NeuronGL1
    from scnn.solvers import AL, RFISTA

    c = Y.shape[1]
    model = (ConvexReLU if relu else ConvexGatedReLU)(gates.T, c=c)
    options = {} if tol is None else {"tol": tol}
    if not relu and max_iter is not None:
        options["max_iters"] = max_iter
    solver = (AL if relu else RFISTA)(model, **options)
    fitted, elapsed = h.timed(
        lambda: optimize_model(
            model,
            solver,
            Metrics(),
            Xa,
            Y if c > 1 else Y[:, 0],
            regularizer=NeuronGL1(lam),
            return_convex=True,
            unitize_data=False,
            dtype="float64",
        )[0]
    )
    u = np.stack(fitted.parameters) if relu else fitted.parameters[0]
    return elapsed, u, np.ascontiguousarray(fitted.G.T)


def have_pyscnn() -> bool:
    try:
        import scnn  # noqa: F401
    except ImportError:
        return False
    return True


def compare_pyscnn(
    data, n_gates, lam, device, max_iter, pyscnn_relu_max_n, acts, gated_tol, relu_tol, seed
):
    """Both solvers on the same program; objectives and relative duality gaps (our
    certificate) evaluated by our code at both solutions.

    Our gated ReLU FISTA stops at relative duality gap ``gated_tol``, our ReLU solver at
    ``relu_tol`` (with an exactly feasible point); pyscnn's R-FISTA stops on its own rule
    (squared norm of the minimum-norm subgradient <= 1e-6), whose certified gap is reported
    next to ours; pyscnn's ReLU solutions violate the cones, so no gap certifies them:
    their objective is compared with our certified lower bound instead."""
    rows = []
    use_pyscnn = have_pyscnn()
    for name, (X, y, kind) in data.items():
        X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
        Y = targets(y, kind)
        Xa = add_bias(torch.from_numpy(X)).numpy()
        gates = sample_gates(torch.from_numpy(Xa), n_gates, seed=seed).numpy()
        c = Y.shape[1]
        beta = c * lam  # pyscnn scales the squared loss by 1/(n c)
        df = make_datafit("squared", torch.from_numpy(Y), torch.float64)
        for act in acts:
            gated = act == "gated_relu"
            kappa = None if gated else 0.0
            sol, t_ours = h.timed(
                partial(
                    solve,
                    Xa,
                    Y,
                    gates,
                    beta,
                    activation=act,
                    certify=False,
                    tol=gated_tol if gated else relu_tol,
                    max_iter=max(max_iter, 20000) if gated else max_iter,
                    device=device,
                ),
                device=device,
            )
            prog = ConvexProgram(torch.from_numpy(Xa), torch.from_numpy(gates), kappa, c, df, beta)
            u_ours = sol.weights.cpu()
            mu_ours = None if sol.multipliers is None else sol.multipliers.cpu()
            bound = getattr(sol.info, "dual", None)
            cert = certificate(prog, u_ours, mu_ours, dual_bound=bound)
            row = dict(
                dataset=name,
                n=X.shape[0],
                d=X.shape[1],
                c=c,
                P=gates.shape[0],
                activation=act,
                t_ours=t_ours,
                iters_ours=sol.info.n_iter,
                obj_ours=prog.objective(u_ours),
                gap_ours=cert["relative_gap"],
                lower_bound=cert["dual"],
                viol_ours=prog.violation(u_ours),
                t_pyscnn=np.nan,
                obj_pyscnn=np.nan,
                gap_pyscnn=np.nan,
                viol_pyscnn=np.nan,
            )
            if use_pyscnn and (gated or X.shape[0] * c <= pyscnn_relu_max_n):
                t_p, u_p, g_p = pyscnn_solve(Xa, Y, gates, lam, not gated, max_iter)
                prog_p = ConvexProgram(
                    torch.from_numpy(Xa), torch.from_numpy(g_p), kappa, c, df, beta
                )
                u_p = torch.from_numpy(u_p).reshape(prog_p.shape)
                row.update(
                    t_pyscnn=t_p,
                    obj_pyscnn=prog_p.objective(u_p),
                    gap_pyscnn=certificate(prog_p, u_p)["relative_gap"] if gated else np.nan,
                    viol_pyscnn=prog_p.violation(u_p),
                )
            rows.append(row)
            print(row, flush=True)
    return rows


def adam_net(Xtr, ytr, Xte, yte, width, beta, loss, lr, steps, seed):
    Xt, Xs = torch.from_numpy(Xtr), torch.from_numpy(Xte)
    yt = torch.from_numpy(ytr)
    k = 1 if loss == "logistic" else int(ytr.max()) + 1
    df = make_datafit(loss, yt, torch.float64)
    net = TwoLayerNet.random(Xtr.shape[1], width, k, seed=seed)
    opt = torch.optim.Adam(net.parameters(), lr=lr)

    def train():
        for _ in range(steps):
            opt.zero_grad()
            network_objective(net, Xt, df, beta).backward()
            opt.step()

    elapsed = h.timed(train)[1]
    with torch.no_grad():
        z = net(Xs)
    pred = (z[:, 0] > 0).long() if k == 1 else z.argmax(1)
    return float((pred.numpy() == yte).mean()), elapsed


def compare_adam(data, n_gates, beta, device, max_iter, steps, acts, seed):
    rows = []
    for name, (X, y, kind) in data.items():
        if kind != "classes":
            continue
        y = np.unique(y, return_inverse=True)[1]
        X = (X - X.mean(0)) / np.where(X.std(0) > 0, X.std(0), 1)
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed, stratify=y)
        row = dict(dataset=name)
        for act in ("gated_relu", "relu"):
            if act not in acts:
                row[f"t_{act}"] = row[f"acc_{act}"] = np.nan
                continue
            est = ConvexNNClassifier(
                activation=act,
                n_gates=n_gates,
                beta=beta,
                max_iter=max_iter,
                tol=1e-4 if act == "gated_relu" else 1e-6,  # FISTA: relative duality gap
                device=device,
                random_state=seed,
            )
            row[f"t_{act}"] = h.timed(partial(est.fit, Xtr, ytr), device=device)[1]
            row[f"acc_{act}"] = float(est.score(Xte, yte))
        loss = "logistic" if len(np.unique(y)) == 2 else "multinomial"
        accs, times = [], []
        for lr in (1e-3, 1e-2, 1e-1):
            a, t = adam_net(Xtr, ytr, Xte, yte, n_gates, beta, loss, lr, steps, seed)
            accs.append(a)
            times.append(t)
        row.update(acc_adam_best=max(accs), acc_adam_worst=min(accs), t_adam=sum(times))
        rows.append(row)
        print(row, flush=True)
    return rows


def compare_mkl(data, n_gates, beta, seed):
    rows = []
    for name, (X, y, kind) in data.items():
        if kind != "regression":
            continue
        X = (X - X.mean(0)) / X.std(0)
        y = (y - y.mean()) / y.std()
        Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.3, random_state=seed)
        if Xtr.shape[0] > 1500:
            Xtr, ytr = Xtr[:1500], ytr[:1500]
        A, B = add_bias(torch.from_numpy(Xtr)), add_bias(torch.from_numpy(Xte))
        yt = torch.from_numpy(ytr)
        gates, eta = ntk_gates(A, n_samples=n_gates, seed=seed)
        best = None
        for scale in 10.0 ** np.arange(-2, 7):  # best overall scale of the NTK weights
            e = eta * scale
            alpha = kernel_ridge(masked_kernel(A, gates, e), yt[:, None], beta)
            D = (A @ gates.T >= 0).double()
            u = e[:, None, None] * torch.einsum("np,nd,nk->pdk", D, A, alpha)
            obj = group_lasso_objective(A, gates, u, yt, beta)
            if best is None or obj < best[0]:
                best = (obj, e, alpha)
        obj_ntk, e_ntk, a_ntk = best
        res, t_rw = h.timed(
            lambda A=A, yt=yt, gates=gates, e_ntk=e_ntk: reweight(
                A, yt, gates, beta, eta0=e_ntk, max_iter=500, tol=1e-10
            )
        )

        def mse(e, a, Z, yy, A=A, gates=gates):
            pred = kernel_predict(A, gates, e, a, Z)[:, 0]
            return float(((pred - torch.from_numpy(yy)) ** 2).mean())

        ref = solve(A.numpy(), ytr, gates, beta, activation="gated_relu", tol=1e-7, max_iter=50000)
        rows.append(
            dict(
                dataset=name,
                P=gates.shape[0],
                obj_ntk=obj_ntk,
                obj_reweighted=res.objective[-1],
                obj_group_lasso=ref.objective,
                iters=len(res.objective),
                t_reweight=t_rw,
                train_mse_ntk=mse(e_ntk, a_ntk, A, ytr),
                test_mse_ntk=mse(e_ntk, a_ntk, B, yte),
                train_mse_rw=mse(res.eta, res.alpha, A, ytr),
                test_mse_rw=mse(res.eta, res.alpha, B, yte),
            )
        )
        print(rows[-1], flush=True)
    return rows


def fmt(v, spec=".3g"):
    return "n/a" if v is None else h.fmt(float(v), spec)


def markdown(title, cols, rows):
    """A section: the title as a heading, then the table (printed) of ``cols``:
    (header, function of a row giving the cell)."""
    print(f"\n### {title}\n")
    cells = [[f(r) for _, f in cols] for r in rows]
    return f"### {title}\n\n{h.table(cells, [name for name, _ in cols])}\n"


def main() -> None:
    ap = h.parser(__doc__, quick="two small datasets, fewer steps")
    ap.add_argument("--gates", type=int, default=50)
    ap.add_argument("--lam", type=float, default=1e-3, help="pyscnn's lambda (beta = c lambda)")
    ap.add_argument("--large-n", type=int, default=3000)
    ap.add_argument("--max-iter", type=int, default=2000)
    ap.add_argument("--adam-steps", type=int, default=1000)
    ap.add_argument(
        "--datasets",
        default=None,
        help="comma-separated subset of diabetes,wine,breast_cancer,digits,synthetic_n<large-n>",
    )
    ap.add_argument(
        "--activations", default="gated_relu,relu", help="comma-separated: gated_relu,relu"
    )
    ap.add_argument(
        "--parts", default="pyscnn,adam,mkl", help="comma-separated subset of pyscnn,adam,mkl"
    )
    ap.add_argument(
        "--name", default="convex_nn", help="stem of the markdown table and figure in --out"
    )
    ap.add_argument(
        "--gated-tol",
        type=float,
        default=2e-2,
        help="relative duality gap at which our gated ReLU FISTA stops (default: below "
        "every gap pyscnn's own solutions certify here, 2.8e-2 to 7.9e-2)",
    )
    ap.add_argument(
        "--relu-tol",
        type=float,
        default=1e-3,
        help="certified relative duality gap at which our ReLU solver stops (its points are "
        "exactly feasible; default: below the 3e-3 to 5e-3 by which pyscnn's ReLU "
        "objectives exceed the optimum here)",
    )
    ap.add_argument(
        "--pyscnn-relu-max-n",
        type=int,
        default=3000,
        help="skip pyscnn's (slow) ReLU solver when n * outputs exceeds this (digits, "
        "17970: pyscnn needs ~4 min for n * outputs = 3000 already)",
    )
    args = ap.parse_args()
    h.setup(args)
    out = h.out_dir(args)
    # numpy's BLAS (pyscnn, CVXPY) gets the same thread count as torch: a fair comparison
    threadpool_limits(args.threads)
    data = datasets(args.quick, args.large_n, args.seed)
    if args.datasets:
        keep = args.datasets.split(",")
        unknown = set(keep) - set(data)
        if unknown:
            ap.error(f"--datasets: unknown {sorted(unknown)}; choose from {sorted(data)}")
        data = {k: v for k, v in data.items() if k in keep}
    acts = args.activations.split(",")
    parts = args.parts.split(",")
    if set(acts) - {"gated_relu", "relu"} or set(parts) - {"pyscnn", "adam", "mkl"}:
        ap.error(f"--activations / --parts: unknown entries in {acts} / {parts}")
    steps = 200 if args.quick else args.adam_steps
    rows_p, rows_a, rows_m = [], [], []
    if "pyscnn" in parts:
        rows_p = compare_pyscnn(
            data,
            args.gates,
            args.lam,
            args.device,
            args.max_iter,
            args.pyscnn_relu_max_n,
            acts,
            args.gated_tol,
            args.relu_tol,
            args.seed,
        )
    if "adam" in parts:
        rows_a = compare_adam(
            data, args.gates, args.lam, args.device, args.max_iter, steps, acts, args.seed
        )
    if "mkl" in parts:
        rows_m = compare_mkl(data, args.gates, args.lam, args.seed)

    md = [
        f"{args.gates} Gaussian gates, lambda {args.lam}, {args.threads} CPU thread(s), "
        f"device {args.device}; times in seconds, ratios measured in the same run; "
        f"pyscnn's ReLU solver skipped (n/a) where n * outputs > {args.pyscnn_relu_max_n}. "
        f"Gated ReLU: our FISTA stops at relative duality gap {args.gated_tol:g}, pyscnn's "
        "R-FISTA on its own rule (squared min-norm subgradient <= 1e-6). ReLU: our interior-"
        f"point method stops at certified relative gap {args.relu_tol:g} (exactly feasible "
        "points), pyscnn's augmented Lagrangian on its own rule. 'rel. gap' is the relative "
        "duality gap our certificate proves for each solution, 'certified lower bound' the "
        "bound on the optimum behind ours (n/a: pyscnn's ReLU points are infeasible, "
        "nothing certifies them; float64 both).\n",
    ]
    cols = [
        ("dataset", lambda r: r["dataset"]),
        ("n x d, c", lambda r: f"{r['n']}x{r['d']}, {r['c']}"),
        ("P", lambda r: str(r["P"])),
        ("activation", lambda r: r["activation"]),
        ("t ours", lambda r: fmt(r["t_ours"])),
        ("t pyscnn", lambda r: fmt(r["t_pyscnn"])),
        ("speed-up", lambda r: fmt(r["t_pyscnn"] / r["t_ours"])),
        ("iterations ours", lambda r: str(r["iters_ours"])),
        ("objective ours", lambda r: fmt(r["obj_ours"], ".6g")),
        ("objective pyscnn", lambda r: fmt(r["obj_pyscnn"], ".6g")),
        ("certified lower bound", lambda r: fmt(r["lower_bound"], ".6g")),
        ("rel. gap ours", lambda r: fmt(r["gap_ours"], ".1e")),
        ("rel. gap pyscnn", lambda r: fmt(r["gap_pyscnn"], ".1e")),
        ("violation ours", lambda r: fmt(r["viol_ours"], ".1e")),
        ("violation pyscnn", lambda r: fmt(r["viol_pyscnn"], ".1e")),
    ]
    md.append(markdown("mrsolve vs pyscnn (same gates, same program)", cols, rows_p))
    cols_a = [
        ("dataset", lambda r: r["dataset"]),
        ("acc gated (ours)", lambda r: fmt(r["acc_gated_relu"])),
        ("t gated", lambda r: fmt(r["t_gated_relu"])),
        ("acc ReLU (ours)", lambda r: fmt(r["acc_relu"])),
        ("t ReLU", lambda r: fmt(r["t_relu"])),
        ("acc Adam best", lambda r: fmt(r["acc_adam_best"])),
        ("acc Adam worst", lambda r: fmt(r["acc_adam_worst"])),
        ("t Adam (3 lr)", lambda r: fmt(r["t_adam"])),
    ]
    md.append(
        markdown("Test accuracy: convex classifiers vs Adam (lr 1e-3, 1e-2, 1e-1)", cols_a, rows_a)
    )
    cols_m = [
        ("dataset", lambda r: r["dataset"]),
        ("P", lambda r: str(r["P"])),
        ("objective NTK", lambda r: fmt(r["obj_ntk"], ".6g")),
        ("objective reweighted", lambda r: fmt(r["obj_reweighted"], ".6g")),
        ("group lasso (FISTA)", lambda r: fmt(r["obj_group_lasso"], ".6g")),
        ("iterations", lambda r: str(r["iters"])),
        ("train MSE NTK", lambda r: fmt(r["train_mse_ntk"])),
        ("test MSE NTK", lambda r: fmt(r["test_mse_ntk"])),
        ("train MSE reweighted", lambda r: fmt(r["train_mse_rw"])),
        ("test MSE reweighted", lambda r: fmt(r["test_mse_rw"])),
    ]
    md.append(markdown("MKL: NTK kernel vs reweighted kernel", cols_m, rows_m))

    fig, axes = h.pyplot().subplots(1, 2 if rows_a else 1, figsize=(11 if rows_a else 6, 4))
    axes = np.atleast_1d(axes)
    for i, act in enumerate(acts):
        rr = [r for r in rows_p if r["activation"] == act]
        axes[0].bar(
            np.arange(len(rr)) + 0.4 * i, [r["t_pyscnn"] / r["t_ours"] for r in rr], 0.4, label=act
        )
        axes[0].set_xticks(np.arange(len(rr)) + 0.2, [r["dataset"] for r in rr], rotation=20)
    axes[0].axhline(1, color="k", lw=0.8)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("time pyscnn / time mrsolve")
    axes[0].legend()
    if rows_a:
        names = [r["dataset"] for r in rows_a]
        for i, (key, lab) in enumerate(
            [
                ("acc_gated_relu", "convex gated"),
                ("acc_relu", "convex ReLU"),
                ("acc_adam_best", "Adam best lr"),
                ("acc_adam_worst", "Adam worst lr"),
            ]
        ):
            axes[1].bar(np.arange(len(names)) + 0.2 * i, [r[key] for r in rows_a], 0.2, label=lab)
        axes[1].set_xticks(np.arange(len(names)) + 0.3, names)
        axes[1].set_ylabel("test accuracy")
        axes[1].set_ylim(0.5, 1.0)
        axes[1].legend(fontsize=8)
    fig.tight_layout()
    h.save_figure(fig, args.name, out=out)
    md.append(f"![convex_nn]({args.name}.png)")
    h.write_doc(args.name, "Convex two-layer networks: benchmark", *md, out=out)


if __name__ == "__main__":
    main()
