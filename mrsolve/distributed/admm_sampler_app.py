"""User entry point: local datasets (or log-densities) + a graph + a step budget -> samples,
with a progress bar. The algorithms only call a callback; the bar lives here."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import networkx as nx
import numpy as np
import torch
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from mrsolve.distributed.admm_sampler import ENGINES, run_agents
from mrsolve.solvers.sampling import LocalDensities, Target, make_graph, run
from mrsolve.solvers.validation import check_choice


def sample(
    target: Target | Sequence[Callable[[torch.Tensor], torch.Tensor]],
    graph: nx.Graph | str,
    n_iter: int,
    *,
    method: str = "dadmms",
    n_chains: int = 100,
    seed: int | np.random.Generator | torch.Generator = 0,
    engine: str = "vectorized",
    dim: int | None = None,
    progress: bool = True,
    console: Console | None = None,
    **options: Any,
) -> torch.Tensor | np.ndarray:
    """Sample the posterior exp(-sum_i f_i) with one agent per graph node.

    Args:
        target: a Target (e.g. ``BayesianLinearRegression(X_parts, y_parts, ...)``) or one
            callable per agent giving f_i(x) for x (n_chains, dim) (then ``dim`` is needed).
        graph: a networkx graph on 0..N-1 or a name from ``GRAPH_KINDS``.
        n_iter: iterations; method: see ``mrsolve.solvers.sampling.METHODS``.
        n_chains: independent chains per agent; seed: int or generator.
        engine: "vectorized" (one tensor for all agents), "local" (one object per agent,
            in-process) or "ray" (one Ray actor per agent). Same chains for the same seed.
        progress: show a rich progress bar on stderr.
        options: method parameters and the rest of ``run`` / ``run_agents``' keywords.

    Returns:
        samples per agent, (n_iter + 1, n_agents, n_chains, dim).
    """
    check_choice("engine", engine, ("vectorized", *ENGINES))
    if not isinstance(target, Target):
        if dim is None:
            raise ValueError("dim must be given when target is a list of local log-densities")
        target = LocalDensities(list(target), dim)
    if isinstance(graph, str):
        graph = make_graph(graph, target.n_agents)
    user_callback = options.pop("callback", None)
    kwargs = dict(method=method, target=target, graph=graph, n_iter=n_iter, n_chains=n_chains)
    kwargs["seed"] = seed
    runner = run if engine == "vectorized" else run_agents
    if engine != "vectorized":
        options["engine"] = engine
    if not progress:
        return runner(**kwargs, callback=user_callback, **options)
    columns = (
        TextColumn(f"[bold]{method}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console or Console(stderr=True)) as bar:
        task = bar.add_task(method, total=n_iter)

        def callback(iteration: int, total: int, x: torch.Tensor) -> None:
            bar.update(task, completed=iteration)
            if user_callback is not None:
                user_callback(iteration, total, x)

        return runner(**kwargs, callback=callback, **options)
