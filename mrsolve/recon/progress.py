"""Progress bars for the application layer (algorithms only call ``callback``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

Callback = Callable[..., None]


@contextmanager
def progress_callback(description: str, console: Console | None = None) -> Iterator[Callback]:
    """Yield ``callback(step, total, *_, **info)`` that drives a rich progress bar.

    Extra scalar keyword values (e.g. ``loss=0.12``) are shown beside the bar; others
    (``image`` previews, None) are not. A run that ends early (a stopping rule) completes
    the bar when the block exits without an error.
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
                f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                for k, v in info.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            )
            bar.update(task, completed=step, total=total, info=text)

        yield callback
        total = bar.tasks[0].total
        if total is not None:
            bar.update(task, completed=total)
