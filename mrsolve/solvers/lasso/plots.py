"""Figures of the lasso family, returned as matplotlib ``Figure`` objects (no pyplot state)."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure


def plot_cv_lambda(est) -> Figure:
    """CV deviance +- one standard error against log(lambda) of a fitted ``LassoCV``,
    with lambda_min and lambda_1se marked."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    lam = np.asarray(est.penalties_)
    ax.errorbar(np.log(lam), est.cv_mean_, yerr=est.cv_se_, fmt="o", ms=3, capsize=2)
    for value, style in ((est.lambda_min_, "--"), (est.lambda_1se_, ":")):
        ax.axvline(np.log(value), color="k", ls=style)
    ax.set_xlabel("log(lambda)")
    ax.set_ylabel("CV deviance")
    fig.tight_layout()
    return fig


def plot_cv_alpha(model) -> Figure:
    """CV error against alpha of a fitted ``PretrainedLassoCV``: the size-weighted mean
    over tasks (thick) and each task (thin); the chosen alpha dashed."""
    fig = Figure(figsize=(5, 3.5))
    ax = fig.add_subplot()
    for t, task in enumerate(model.tasks_):
        ax.plot(
            model.pretrain_alphas_,
            model.cv_error_per_task_[:, t],
            lw=0.8,
            alpha=0.6,
            label=f"task {task}",
        )
    ax.plot(model.pretrain_alphas_, model.cv_error_, "k-o", lw=2, ms=4, label="overall")
    ax.axvline(model.pretrain_alpha_, color="k", ls="--")
    ax.set_xlabel("alpha (0: overall model, 1: separate models)")
    ax.set_ylabel("CV deviance")
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def plot_coefficient_map(model, max_features: int = 60) -> Figure:
    """Heat map of the common (overall) and the task-specific coefficients of a fitted
    ``PretrainedLasso``: one row per model, one column per feature used anywhere."""
    common = np.asarray(model.overall_coef_)
    common = common if common.ndim == 1 else np.abs(common).max(axis=1)
    rows = np.vstack([common, model.group_coef_])
    used = np.flatnonzero(np.any(rows != 0, axis=0))[:max_features]
    fig = Figure(figsize=(max(4, 0.15 * len(used) + 2), 0.4 * len(rows) + 1.5))
    ax = fig.add_subplot()
    vmax = float(np.abs(rows[:, used]).max()) if used.size else 1.0
    im = ax.imshow(rows[:, used], cmap="RdBu_r", vmin=-vmax, vmax=vmax, aspect="auto")
    ax.set_yticks(range(len(rows)), ["common"] + [f"task {t}" for t in model.tasks_])
    ax.set_xticks(range(len(used)), [str(j) for j in used], fontsize=6, rotation=90)
    ax.set_xlabel("feature")
    fig.colorbar(im, ax=ax, label="coefficient")
    fig.tight_layout()
    return fig
