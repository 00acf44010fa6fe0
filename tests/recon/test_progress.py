"""The progress bar shows scalar values only and ends where a run that stops early ends."""

import io

import torch
from rich.console import Console

from mrsolve.recon.progress import progress_callback


def test_progress_shows_scalars_and_ends_at_the_steps_taken_on_early_stop():
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    with progress_callback("spectral", console) as callback:
        callback(3, 10, image=torch.zeros(2, 2), loss=0.125, note=None)
    text = out.getvalue()
    assert "residual=0.125" in text
    assert "image=" not in text and "note=" not in text
    # issue 20 item 16: a budget of 10 stopped at 3 ends at 3/3, not at a 10/10 never reached
    assert "3/3" in text and "10/10" not in text and "stopped at 3 of 10" in text
