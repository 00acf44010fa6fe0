"""Spectrum dock widget: |x(r, f)| against frequency at the cursor, water and fat marked."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from mrsolve.propeller.fat import SINGLE_PEAK_PPM, ppm_to_hz

DEFAULT_FIELD_T = 3.0  # when neither the layer nor its source says the field strength
MIN_PLOT_PX = (320, 240)  # below this the axes, ticks and legend no longer fit


def _info(layer) -> dict:
    return layer.metadata.get("mrsolve", {})


class SpectrumWidget(QWidget):
    """Plots the magnitude spectrum of the spectral-volume layer at the mouse position.

    The layer is the selected one when it is a spectral volume, else the last spectral
    volume in the viewer. Water is marked at the field-map value of that pixel (a
    field-map layer of the same size, else 0 Hz), fat at water + the main fat peak
    (-3.4 ppm) at the field strength the layer records (else 3 T).
    Attributes after an update: ``frequencies_hz``, ``magnitude``, ``peaks`` (Hz), ``pixel``.
    napari's slider of the frequency axis shows a bin index; the widget writes the bin's
    frequency into that axis's label ("f = -150 Hz").
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.frequencies_hz = np.empty(0)
        self.magnitude = np.empty(0)
        self.peaks: dict[str, float] = {}
        self.pixel: tuple[int, int] | None = None
        # constrained layout copes with a small dock, where tight_layout gives up (warning)
        self.figure = Figure(figsize=(4, 3), layout="constrained")
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.canvas.setMinimumSize(*MIN_PLOT_PX)
        self.axes = self.figure.add_subplot()
        self.label = QLabel("move the mouse over a spectral volume")
        layout = QVBoxLayout(self)
        layout.addWidget(self.canvas)
        layout.addWidget(self.label)
        self.viewer.cursor.events.position.connect(self._on_cursor)
        # napari rewrites the labels from the layers' own when layers change: label again
        for event in ("current_step", "axis_labels", "ndim"):
            getattr(self.viewer.dims.events, event).connect(self.label_frequency)
        self.label_frequency()

    def spectral_layer(self):
        """The spectral-volume layer to read, or None."""
        active = self.viewer.layers.selection.active
        if active is not None and _info(active).get("role") == "spectral_volume":
            return active
        volumes = [ly for ly in self.viewer.layers if _info(ly).get("role") == "spectral_volume"]
        return volumes[-1] if volumes else None

    def label_frequency(self, event=None) -> None:
        """Label the frequency axis with the frequency (Hz) of the bin on display."""
        layer = self.spectral_layer()
        dims = self.viewer.dims
        if layer is None or dims.ndim < 3:
            return
        axis = dims.ndim - 3  # (..., f, y, x)
        labels = list(dims.axis_labels)
        labels[axis] = f"f = {dims.point[axis]:.0f} Hz"
        if labels != list(dims.axis_labels):
            dims.axis_labels = labels

    def _on_cursor(self, event=None) -> None:
        self.update_at(self.viewer.cursor.position)

    def update_at(self, world_position) -> bool:
        """Show the spectrum at a world position; False (plot unchanged) outside the data."""
        layer = self.spectral_layer()
        if layer is None:
            return False
        coords = np.round(np.asarray(layer.world_to_data(world_position), dtype=float))
        volume = _info(layer).get("complex", layer.data)
        lead = tuple(
            int(np.clip(c, 0, n - 1)) for c, n in zip(coords[:-3], volume.shape[:-3], strict=True)
        )
        y, x = int(coords[-2]), int(coords[-1])
        ny, nx = volume.shape[-2:]
        if not (0 <= y < ny and 0 <= x < nx):
            return False
        self.pixel = (y, x)
        self.magnitude = np.abs(np.asarray(volume[(*lead, slice(None), y, x)]))
        self.frequencies_hz = np.asarray(_info(layer)["frequencies_hz"], dtype=float)
        water = self._field_map_at(y, x, (ny, nx))
        field_t = float(_info(layer).get("field_strength_t", DEFAULT_FIELD_T))
        self.peaks = {"water": water, "fat": water + ppm_to_hz(SINGLE_PEAK_PPM, field_t)}
        self._draw(layer.name)
        return True

    def _field_map_at(self, y: int, x: int, shape: tuple[int, int]) -> float:
        for layer in reversed(self.viewer.layers):
            if _info(layer).get("role") == "field_map_hz" and layer.data.shape[-2:] == shape:
                return float(np.asarray(layer.data)[..., y, x].reshape(-1)[0])
        return 0.0

    def _draw(self, name: str) -> None:
        ax = self.axes
        ax.clear()
        ax.plot(self.frequencies_hz, self.magnitude, color="k", marker=".")
        for label, freq in self.peaks.items():
            color = "tab:blue" if label == "water" else "tab:orange"
            ax.axvline(freq, color=color, linestyle="--", label=f"{label} {freq:.0f} Hz")
        ax.set_xlabel("frequency (Hz)")
        ax.set_ylabel("|x(r, f)|")
        ax.set_title(f"{name} at (y={self.pixel[0]}, x={self.pixel[1]})", fontsize=9)
        ax.legend(fontsize=8, loc="upper right")
        self.canvas.draw_idle()
        self.label.setText(f"peak at {self.frequencies_hz[np.argmax(self.magnitude)]:.0f} Hz")
