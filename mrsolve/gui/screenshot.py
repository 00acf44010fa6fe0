"""The README picture: ``python -m mrsolve.gui.screenshot docs/gui_screenshot.png``.

Simulates a water/fat phantom, reconstructs it with the spectral method's fat/water
preset, opens the result with :func:`mrsolve.gui.launch.view` and saves the window as a
PNG: image, water, fat, fat fraction and field map side by side (napari's grid; the
spectral volume hidden), the Spectrum widget at a fat pixel, the Reconstruction widget.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from qtpy.QtWidgets import QApplication

from mrsolve.data.results import write_result
from mrsolve.data.simulate import simulate
from mrsolve.gui.launch import view
from mrsolve.recon.methods import reconstruct


def save_screenshot(out: Path, size: int = 64, iterations: int = 200) -> Path:
    """Reconstruct a simulated phantom and save the viewer window to ``out``."""
    sim = simulate(size=size, n_coils=4, n_blades=12, n_lines=16, noise=0.01, seed=0)
    rec = reconstruct(sim.scan, "spectral", preset="fatwater", iterations=iterations)
    with tempfile.TemporaryDirectory() as folder:
        path = write_result(Path(folder) / "phantom.h5", rec)
        viewer = view(path, block=False)
    viewer.window.resize(1600, 900)
    volume = viewer.layers["phantom spectral volume"]
    viewer.layers.move(viewer.layers.index(volume), len(viewer.layers))  # grid: last tile
    grid = viewer.canvas.grid if hasattr(viewer, "canvas") else viewer.grid  # napari >= 0.9
    grid.enabled = True  # every map in its own tile
    grid.shape = (2, 3)
    viewer.reset_view()  # fit the tiles
    viewer.layers.selection.active = volume
    fat = sim.truth.fat.abs().numpy()
    y, x = np.unravel_index(np.argmax(fat), fat.shape)
    viewer.cursor.position = (0.0, float(y), float(x))
    for _ in range(5):  # let Qt lay out the docks and draw the plot
        QApplication.processEvents()
    viewer.reset_view()  # again, at the laid-out canvas size
    QApplication.processEvents()
    viewer.window.screenshot(str(out), canvas_only=False, flash=False)
    viewer.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=200)
    args = parser.parse_args()
    print(save_screenshot(args.out, args.size, args.iterations))


if __name__ == "__main__":
    main()
