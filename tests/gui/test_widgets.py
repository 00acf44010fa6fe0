"""Widgets and viewer under Xvfb (pytest-xvfb) with napari's make_napari_viewer fixture."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from mrsolve.data.phantom import Phantom
from mrsolve.data.simulate import simulate
from mrsolve.gui import _recon_widget
from mrsolve.gui._layers import result_layers, spectral_layer
from mrsolve.gui._recon_widget import ReconstructionWidget
from mrsolve.gui._spectrum_widget import SpectrumWidget
from mrsolve.gui._worker import Cancelled, reconstruction_steps
from mrsolve.gui.launch import view
from mrsolve.recon.methods import reconstruct

pytestmark = pytest.mark.gui


def _correlation(a, b) -> float:
    a, b = np.ravel(a) - np.mean(a), np.ravel(b) - np.mean(b)
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def _add(viewer, layers) -> None:
    for data, kwargs, _ in layers:
        viewer.add_image(data, **kwargs)


def test_viewer_opens_both_file_kinds(make_napari_viewer, result_file, raw_file):
    viewer = make_napari_viewer()
    viewer.open(str(result_file), plugin="mrsolve")
    viewer.open(str(raw_file), plugin="mrsolve")
    names = [layer.name for layer in viewer.layers]
    assert names == [
        "rec spectral volume",  # first: at the bottom, and hidden (it would cover the maps)
        "rec image",
        "rec water",
        "rec fat",
        "rec fat fraction",
        "rec field map (Hz)",
        "rec fat fraction std",
        "rec field map std (Hz)",
        "scan gridding",
        "scan blades",
    ]
    volume = viewer.layers["rec spectral volume"]
    assert not volume.visible
    np.testing.assert_allclose(volume.scale, [100.0, 1.0, 1.0])
    np.testing.assert_allclose(volume.translate, [-400.0, 0.0, 0.0])
    assert viewer.layers["rec fat fraction"].colormap.name == "magma"
    np.testing.assert_allclose(viewer.layers["rec fat fraction"].contrast_limits, [0, 1])
    assert viewer.layers["rec field map (Hz)"].colormap.name == "coolwarm"
    for name in ("rec fat fraction std", "rec field map std (Hz)"):
        assert not viewer.layers[name].visible and viewer.layers[name].colormap.name == "viridis"
    assert viewer.layers["scan blades"].data.shape == (6, 32, 32)


def test_worker_generator_progress_and_result(small_sim):
    steps = reconstruction_steps(small_sim.scan, "gridding", threading.Event(), preview_every=3)
    items = []
    while True:
        try:
            item = next(steps)
        except StopIteration as stop:
            rec = stop.value
            break
        if item is not None:
            items.append(item)
    assert [(p.step, p.total) for p in items] == [(1, 3), (2, 3), (3, 3)]
    assert items[0].preview is None and items[-1].preview.shape == (32, 32)
    truth = small_sim.truth.image.abs().numpy()
    assert _correlation(rec.image.abs().numpy(), truth) > 0.97
    np.testing.assert_allclose(items[-1].preview, rec.image.abs().numpy(), rtol=1e-5)


def test_worker_generator_cancel_stops_the_algorithm(small_sim):
    calls = []

    def endless(scan, method, callback, **options):
        for step in range(1, 10**6):
            calls.append(step)
            callback(step, 10**6)
            time.sleep(0.005)

    cancel = threading.Event()
    steps = reconstruction_steps(small_sim.scan, "x", cancel, run=endless)
    first = next(item for item in steps if item is not None)
    cancel.set()
    with pytest.raises(Cancelled):
        for _ in steps:
            pass
    count = len(calls)
    time.sleep(0.05)
    assert first.step == 1 and len(calls) == count < 10**6


def test_widget_runs_two_iterations_and_adds_layers(
    make_napari_viewer, qtbot, small_sim, small_raw_layers
):
    viewer = make_napari_viewer()
    _add(viewer, small_raw_layers)
    widget = ReconstructionWidget(viewer)
    assert widget.source.currentText() == "scan gridding"
    widget.method.setCurrentText("spectral")
    widget.iterations.setValue(2)
    widget.preview_every.setValue(1)
    inserted = []
    viewer.layers.events.inserted.connect(lambda event: inserted.append(event.value.name))
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert widget.status.text() == "done: scan gridding spectral"
    assert widget.progress.value() == widget.progress.maximum() > 0
    image = viewer.layers["scan gridding spectral image"]
    volume = viewer.layers["scan gridding spectral spectral volume"]
    assert image.data.shape == (32, 32) and volume.data.shape[1:] == (32, 32)
    freqs = volume.metadata["mrsolve"]["frequencies_hz"]
    np.testing.assert_allclose(volume.translate[0], freqs[0], rtol=1e-5)
    np.testing.assert_allclose(volume.scale[0], freqs[1] - freqs[0], rtol=1e-3)
    assert inserted[0] == "scan gridding preview"  # live preview before the result
    assert "scan gridding preview" not in viewer.layers  # replaced by the result
    # two iterations already give an image of the object (independent reference: truth)
    assert _correlation(image.data, small_sim.truth.image.abs().numpy()) > 0.8


def test_cancel_stops_a_running_reconstruction(make_napari_viewer, qtbot, small_raw_layers):
    viewer = make_napari_viewer()
    _add(viewer, small_raw_layers)
    widget = ReconstructionWidget(viewer)
    widget.method.setCurrentText("spectral")
    widget.iterations.setValue(5000)  # minutes if Cancel did not stop it
    widget.start()
    qtbot.waitUntil(lambda: widget.progress.value() >= 1, timeout=60_000)
    widget.cancel_button.click()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert widget.status.text() == "cancelled"
    assert widget.progress.value() < 5000
    # the algorithm's own thread ends too (at its next iteration)
    qtbot.waitUntil(
        lambda: all(t.name != "mrsolve-spectral" for t in threading.enumerate()), timeout=30_000
    )
    assert [layer.name for layer in viewer.layers if "spectral" in layer.name] == []
    assert widget.run_button.isEnabled()


def test_error_is_a_notification_not_a_crash(
    make_napari_viewer, qtbot, small_sim, small_raw_layers, raw_file, monkeypatch
):
    shown = []
    monkeypatch.setattr(_recon_widget, "show_error", shown.append)
    viewer = make_napari_viewer()
    _add(viewer, small_raw_layers)
    widget = ReconstructionWidget(viewer)

    def broken(scan, method, callback, **options):
        raise RuntimeError("device out of memory")

    widget.reconstructor = broken
    widget.method.setCurrentText("gridding")
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    assert len(shown) == 1 and "device out of memory" in shown[0]
    assert widget.status.text() == "failed"
    # a method that needs a field map and has none: notification, no worker
    widget.method.setCurrentText("conjugate-phase")
    widget.start()
    assert widget.worker is None and "field map" in shown[1]
    # a raw file picked instead of a layer, reconstructed for real
    widget.reconstructor = reconstruct
    widget.add_file(raw_file)
    assert widget.source.currentText() == "file: scan.h5"
    widget.method.setCurrentText("gridding")
    assert not widget.iterations.isEnabled()  # gridding has no iterations
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    image = viewer.layers["scan.h5 gridding image"].data
    assert _correlation(image, small_sim.truth.image.abs().numpy()) > 0.97
    # conjugate phase with a field-map layer picked in the widget
    _add(viewer, [ly for ly in result_layers(small_sim.truth, "truth") if "field" in ly[1]["name"]])
    widget.field_map.setCurrentText("truth field map (Hz)")
    widget.method.setCurrentText("conjugate-phase")
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    image = viewer.layers["scan.h5 conjugate-phase image"].data
    assert _correlation(image, small_sim.truth.image.abs().numpy()) > 0.97
    assert len(shown) == 2


def _point_scan(y0: int, x0: int, f0: float):
    """A single on-grid water point at (y0, x0) with off-resonance f0 (16 x 16, 1 coil)."""
    water = torch.zeros(16, 16, dtype=torch.complex64)
    water[y0, x0] = 1.0
    phantom = Phantom(
        water=water,
        fat=torch.zeros_like(water),
        field_map_hz=torch.full((16, 16), f0),
        mask=water.abs() > 0,
        coil_maps=torch.ones(1, 16, 16, dtype=torch.complex64),
    )
    return simulate(size=16, n_coils=1, n_blades=6, n_lines=8, phantom=phantom, seed=0)


def _explicit_spectrum(scan, freqs):
    """x(r, f) = sum_j y_j e^{-i 2 pi f t_j} e^{+i 2 pi k_j . r / N}: adjoint of the
    per-sample model of methods/propeller.md by explicit sums (r = index - N/2)."""
    n = scan.image_shape[0]
    y = scan.kspace[0].reshape(-1).numpy().astype(np.complex128)
    k = scan.traj.reshape(-1, 2).numpy().astype(np.float64)
    t = scan.times.reshape(-1).numpy().astype(np.float64)
    r = np.arange(n) - n / 2
    spatial = np.exp(
        2j
        * np.pi
        * (k[:, 0, None, None] * r[None, None, :] + k[:, 1, None, None] * r[None, :, None])
        / n
    )
    temporal = np.exp(-2j * np.pi * np.outer(freqs, t))  # (F, J)
    return np.einsum("fj,j,jyx->fyx", temporal, y, spatial)


def test_spectrum_widget_peak_at_point_off_resonance(make_napari_viewer):
    f0, (y0, x0) = -150.0, (5, 10)
    sim = _point_scan(y0, x0, f0)
    freqs = np.arange(-400.0, 201.0, 25.0)
    volume = _explicit_spectrum(sim.scan, freqs)
    viewer = make_napari_viewer()
    _add(viewer, [spectral_layer(volume, freqs, "point", {"field_strength_t": 3.0})])
    widget = SpectrumWidget(viewer)
    viewer.cursor.position = (0.0, float(y0), float(x0))
    assert widget.pixel == (y0, x0)
    assert widget.frequencies_hz[np.argmax(widget.magnitude)] == pytest.approx(f0)
    line = widget.axes.lines[0]
    assert line.get_xdata()[np.argmax(line.get_ydata())] == pytest.approx(f0)
    assert widget.peaks["water"] == 0.0  # no field-map layer yet
    assert widget.peaks["fat"] == pytest.approx(-3.4e-6 * 42.577e6 * 3.0, rel=1e-3)
    # with the truth field map the water marker sits on the point's off-resonance
    _add(
        viewer,
        [layer for layer in result_layers(sim.truth, "truth") if "field" in layer[1]["name"]],
    )
    viewer.layers.selection.active = viewer.layers["point"]
    viewer.cursor.position = (0.0, float(y0) + 0.2, float(x0) - 0.3)  # same pixel
    assert widget.peaks["water"] == pytest.approx(f0)
    peak = widget.magnitude.max()
    viewer.cursor.position = (0.0, float(y0), float(x0 - 6))  # moves with the mouse
    assert widget.pixel == (y0, x0 - 6) and widget.magnitude.max() < 0.5 * peak


def test_view_shows_result_with_widgets_and_screenshot_is_not_blank(result_file, qtbot):
    viewer = view(result_file, block=False)
    try:
        assert "rec spectral volume" in viewer.layers
        assert {"Spectrum", "Reconstruction"} <= set(viewer.window.dock_widgets)
        viewer.cursor.position = (0.0, 16.0, 16.0)
        shot = viewer.screenshot(canvas_only=False, flash=False)
        assert shot.ndim == 3 and shot.shape[0] > 100 and shot.shape[1] > 100
        canvas = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
        for layer in viewer.layers:
            layer.visible = False
        empty = viewer.screenshot(canvas_only=True, flash=False)[..., :3].astype(float)
        assert empty.std() < 1.0  # the measure can fail: an empty canvas is uniform
        assert canvas.std() > 10 and np.abs(canvas - empty).mean() > 10
    finally:
        viewer.close()


def test_view_rejects_other_files(tmp_path):
    other = tmp_path / "other.txt"
    other.write_text("x")
    with pytest.raises(ValueError, match="neither an mrsolve output"):
        view(other)
    with pytest.raises(FileNotFoundError):
        view(tmp_path / "missing.h5")
