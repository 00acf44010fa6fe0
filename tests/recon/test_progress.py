"""The progress bar shows scalar values only and completes when a run stops early."""

import io

import torch
from rich.console import Console

from mrsolve.recon.progress import progress_callback


def test_progress_shows_scalars_and_completes_on_early_stop():
    out = io.StringIO()
    console = Console(file=out, width=200, force_terminal=False)
    with progress_callback("spectral", console) as callback:
        callback(3, 10, image=torch.zeros(2, 2), loss=0.125, note=None)
    text = out.getvalue()
    assert "loss=0.125" in text
    assert "image=" not in text and "note=" not in text
    assert "10/10" in text
