"""Issue 20 item 17: the plugin shows the maps, a readable spectrum, Hz on the frequency
axis, the CLI's iteration default, and ``recon view`` prints no deprecation noise."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from mrsolve.gui._layers import result_layers
from mrsolve.gui._recon_widget import ReconstructionWidget
from mrsolve.gui._spectrum_widget import MIN_PLOT_PX, SpectrumWidget

pytestmark = pytest.mark.gui


def test_the_spectral_volume_opens_hidden_below_the_maps(result):
    layers = result_layers(result, "rec")
    names = [kwargs["name"] for _, kwargs, _ in layers]
    assert names[0] == "rec spectral volume" and not layers[0][1]["visible"]
    maps = ("image", "water", "fat", "fat fraction", "field map (Hz)")
    for _, kwargs, _ in layers[1:]:
        if kwargs["name"].removeprefix("rec ") in maps:
            assert kwargs.get("visible", True)


def test_spectrum_is_readable_in_a_small_dock_and_the_axis_says_hz(make_napari_viewer, result):
    viewer = make_napari_viewer()
    for data, kwargs, _ in result_layers(result, "rec"):
        viewer.add_image(data, **kwargs)
    widget = SpectrumWidget(viewer)
    assert widget.canvas.minimumWidth() >= MIN_PLOT_PX[0] >= 300
    assert widget.canvas.minimumHeight() >= MIN_PLOT_PX[1] >= 200
    widget.figure.set_size_inches(3.2, 1.2)  # squashed
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "Tight layout not applied" before
        viewer.cursor.position = (0.0, 16.0, 16.0)
        widget.canvas.draw()
    assert widget.pixel == (16, 16)
    # the frequency axis (bins -400, -300, ..., 0 Hz) is labelled with the bin's Hz
    viewer.dims.set_current_step(0, 1)
    assert viewer.dims.axis_labels[0] == "f = -300 Hz"
    viewer.dims.set_current_step(0, 4)
    assert viewer.dims.axis_labels[0] == "f = 0 Hz"


def test_reconstruction_widget_uses_the_preset_budget_like_the_cli(make_napari_viewer):
    widget = ReconstructionWidget(make_napari_viewer())
    widget.method.setCurrentText("spectral")
    assert widget.iterations.text() == "preset's"
    assert "iterations" not in widget.options()  # as `recon run` without --iterations
    widget.iterations.setValue(7)
    assert widget.options()["iterations"] == 7


def test_recon_view_prints_no_deprecation_warnings(result_file):
    root = Path(__file__).resolve().parents[2]
    code = (  # what `recon view FILE` runs, without the blocking event loop
        "from mrsolve.recon import cli\n"
        "import mrsolve.gui.launch as launch\n"
        "opened = launch.view\n"
        "launch.view = lambda path: opened(path, block=False).close()\n"
        f"cli.main(['view', {str(result_file)!r}])\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env=os.environ
    )
    assert done.returncode == 0, done.stderr
    assert "Deprecat" not in done.stderr, done.stderr[:2000]
