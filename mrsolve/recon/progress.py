"""Progress bars for the application layer (algorithms only call ``callback``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Callback = Callable[..., None]
_LABELS = {"loss": "residual"}


@contextmanager
def progress_callback(description: str, console: Console | None = None) -> Iterator[Callback]:
    """Yield ``callback(step, total, *_, **info)`` that drives a rich progress bar.

    ``total`` is a budget: a run that ends early (a stopping rule) ends its bar at the
    steps it took ("140/140", noting the budget), not at a total it never reached.
    Extra scalar keyword values are shown beside the bar; others (``image`` previews,
    None) are not; ``loss`` is shown as ``residual``: the spectral stages report the
    relative data-consistency residual sqrt(2 f / y^H W y), comparable across presets.
    """
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[info]}"),
    )
    with Progress(*columns, console=console or Console(), transient=False) as bar:
        task = bar.add_task(description, total=None, info="")

        def callback(step: int, total: int, *_, **info) -> None:
            text = "  ".join(
                f"{_LABELS.get(k, k)}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in info.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            )
            bar.update(task, completed=step, total=total, info=text)

        yield callback
        state = bar.tasks[0]
        if state.total is not None and state.completed < state.total:
            note = f"stopped at {state.completed:g} of {state.total:g} (stopping rule)"
            bar.update(task, total=state.completed, info=f"{state.fields['info']}  {note}")
