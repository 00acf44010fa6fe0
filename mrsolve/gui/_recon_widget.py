"""Reconstruction dock widget: raw layer or file -> method -> layers, off the GUI thread."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from mrsolve.data.ismrmrd_io import read_ismrmrd
from mrsolve.gui._layers import result_layers
from mrsolve.gui._worker import Cancelled, Progress, reconstruction_steps
from mrsolve.recon.methods import DEFAULT_METHOD, METHODS, check_request, reconstruct
from mrsolve.recon.spectral.config import PRESETS


def accepts(method: str, option: str) -> bool:
    """Whether ``method`` takes the keyword ``option`` (e.g. "preset", "iterations")."""
    try:
        check_request(method, {option: None}, has_field_map=True)
    except ValueError:
        return False
    return True


@dataclass
class Failure:
    """The error a reconstruction raised, returned (not raised) to the GUI thread."""

    error: Exception


def _steps(*args, **kwargs):
    """:func:`reconstruction_steps` returning a :class:`Failure` instead of raising: the
    widget shows it as a notification (raised, it would go to napari's error handler;
    returned bare, superqt takes an exception for a deleted worker and drops it)."""
    try:
        return (yield from reconstruction_steps(*args, **kwargs))
    except Exception as err:
        return Failure(err)


def _devices() -> list[str]:
    return ["cpu", "auto"] + (["cuda"] if torch.cuda.is_available() else [])


class ReconstructionWidget(QWidget):
    """Pick a raw layer (or file), method, preset, iterations and device; Run / Cancel.

    Progress goes to the bar, a magnitude preview to the layer "<source> preview" every
    ``preview_every`` steps, results arrive as layers "<source> <method> ...", errors as
    a napari notification. ``reconstructor`` is the function called (``reconstruct``).
    """

    def __init__(self, napari_viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.reconstructor = reconstruct
        self.worker = None
        self._cancel = threading.Event()
        self._files: dict[str, object] = {}
        self._source_name = ""
        self._scan_info: dict = {}

        self.source = QComboBox()
        self.browse = QPushButton("File...")
        self.method = QComboBox()
        self.method.addItems(list(METHODS))
        self.method.setCurrentText(DEFAULT_METHOD)
        self.preset = QComboBox()
        self.preset.addItems(list(PRESETS))
        self.iterations = QSpinBox()
        # 0 shows as "preset's": the budget of the preset, as `recon run` without --iterations
        self.iterations.setRange(0, 100000)
        self.iterations.setSpecialValueText("preset's")
        self.iterations.setValue(0)
        self.preview_every = QSpinBox()
        self.preview_every.setRange(1, 10000)
        self.preview_every.setValue(5)
        self.device = QComboBox()
        self.device.addItems(_devices())
        self.field_map = QComboBox()
        self.run_button = QPushButton("Run")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("")

        source_row = QHBoxLayout()
        source_row.addWidget(self.source, 1)
        source_row.addWidget(self.browse)
        form = QFormLayout()
        form.addRow("raw data", source_row)
        form.addRow("method", self.method)
        form.addRow("preset", self.preset)
        form.addRow("iterations", self.iterations)
        form.addRow("preview every", self.preview_every)
        form.addRow("device", self.device)
        form.addRow("field map", self.field_map)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button)
        buttons.addWidget(self.cancel_button)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.progress)
        layout.addWidget(self.status)
        layout.addStretch(1)

        self.browse.clicked.connect(self._browse)
        self.method.currentTextChanged.connect(self._method_changed)
        self.run_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self.refresh_sources)
        self.refresh_sources()
        self._method_changed(self.method.currentText())

    # -- inputs ------------------------------------------------------------------------

    def refresh_sources(self, *_) -> None:
        """List the layers that carry a scan (and opened files), and the field-map layers."""
        chosen, fmap = self.source.currentText(), self.field_map.currentText()
        self.source.clear()
        self.field_map.clear()
        self.field_map.addItem("none")
        for layer in self.viewer.layers:
            info = layer.metadata.get("mrsolve", {})
            if "scan" in info:
                self.source.addItem(layer.name)
            if info.get("role") == "field_map_hz" and layer.data.ndim == 2:
                self.field_map.addItem(layer.name)
        self.source.addItems(list(self._files))
        self.source.setCurrentText(chosen)
        self.field_map.setCurrentText(fmap)

    def add_file(self, path: str | Path) -> None:
        """Read a raw ISMRMRD file and offer it as a source (selected)."""
        name = f"file: {Path(path).name}"
        self._files[name] = read_ismrmrd(path)
        self.refresh_sources()
        self.source.setCurrentText(name)

    def _browse(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "PROPELLER raw data", "", "HDF5 (*.h5 *.mrd)")
        if path:
            try:
                self.add_file(path)
            except (OSError, ValueError) as err:
                show_error(f"Cannot read {path}: {err}")

    def _method_changed(self, method: str) -> None:
        self.preset.setEnabled(accepts(method, "preset"))
        self.iterations.setEnabled(accepts(method, "iterations"))

    def _scan(self):
        name = self.source.currentText()
        if name in self._files:
            return self._files[name]
        if name in self.viewer.layers:
            return self.viewer.layers[name].metadata["mrsolve"]["scan"]
        raise ValueError("raw data: open a PROPELLER file or pick a raw layer first, got none")

    def _field_map(self):
        name = self.field_map.currentText()
        if name in ("", "none"):
            return None
        return torch.as_tensor(np.asarray(self.viewer.layers[name].data), dtype=torch.float32)

    def options(self) -> dict:
        """The keyword options for the selected method (device, field map, preset, ...)."""
        method = self.method.currentText()
        options = {"device": self.device.currentText()}
        fmap = self._field_map()
        if fmap is not None or METHODS[method].needs_field_map:
            options["field_map"] = fmap
        if accepts(method, "preset"):
            options["preset"] = self.preset.currentText()
        if accepts(method, "iterations") and self.iterations.value() > 0:
            options["iterations"] = self.iterations.value()
        return options

    # -- running -----------------------------------------------------------------------

    def start(self) -> None:
        """Start the reconstruction in a napari thread worker (a generator)."""
        if self.worker is not None:
            show_info("A reconstruction is already running; cancel it first.")
            return
        method = self.method.currentText()
        try:
            scan = self._scan()
            options = self.options()
            if METHODS[method].needs_field_map and options["field_map"] is None:
                raise ValueError(f"method {method!r} needs a field map layer, got none")
        except ValueError as err:
            show_error(str(err))
            return
        self._source_name = self.source.currentText().removeprefix("file: ")
        self._scan_info = {"method": method, "field_strength_t": scan.field_strength_t}
        self._cancel = threading.Event()
        self.worker = create_worker(
            _steps,
            scan,
            method,
            self._cancel,
            preview_every=self.preview_every.value(),
            run=self.reconstructor,
            _start_thread=False,
            _connect={
                "yielded": self._on_progress,
                "returned": self._on_result,
                "errored": self._on_result,
                "finished": self._on_finished,
            },
            **options,
        )
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setRange(0, 0)
        self.status.setText(f"running {method} ...")
        self.worker.start()

    def cancel(self) -> None:
        """Stop the running reconstruction at its next step."""
        if self.worker is not None:
            self._cancel.set()
            self.worker.quit()
            self.status.setText("cancelling ...")

    def _on_progress(self, item: Progress | None) -> None:
        if item is None:
            return
        self.progress.setRange(0, item.total)
        self.progress.setValue(item.step)
        if item.preview is not None:
            name = f"{self._source_name} preview"
            if name in self.viewer.layers:
                self.viewer.layers[name].data = item.preview
            else:
                self.viewer.add_image(item.preview, name=name)

    def _on_result(self, rec) -> None:
        if isinstance(rec, Failure):
            rec = rec.error
        if rec is None or isinstance(rec, Cancelled):  # aborted or cancelled
            self.status.setText("cancelled")
            return
        if isinstance(rec, Exception):
            self.status.setText("failed")
            show_error(f"Reconstruction failed: {type(rec).__name__}: {rec}")
            return
        name = f"{self._source_name} preview"
        if name in self.viewer.layers:
            self.viewer.layers.remove(name)
        prefix = f"{self._source_name} {self._scan_info['method']}"
        for data, kwargs, _ in result_layers(rec, prefix, self._scan_info):
            self.viewer.add_image(data, **kwargs)
        self.status.setText(f"done: {prefix}")

    def _on_finished(self) -> None:
        if self._cancel.is_set():
            self.status.setText("cancelled")
        self.worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
