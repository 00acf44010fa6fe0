"""``recon view FILE.h5``: open napari with a raw or result file and the plugin's widgets."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from mrsolve.gui._reader import file_kind


def view(path: str | os.PathLike, block: bool = True):
    """Open ``path`` in a new napari viewer with the spectrum and reconstruction widgets.

    Returns the viewer (after the window closes when ``block``). Raises
    FileNotFoundError for a missing file and ValueError for a file the plugin cannot read.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"file {str(path)!r} does not exist")
    if file_kind(path) is None:
        raise ValueError(
            f"file {str(path)!r} is neither an mrsolve output file nor PROPELLER ISMRMRD raw data"
        )
    with warnings.catch_warnings():
        # napari's and npe2's use of deprecated pydantic APIs: ~40 lines that are not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        import napari  # only here: `import mrsolve` must work without napari

        from mrsolve.gui._recon_widget import ReconstructionWidget
        from mrsolve.gui._spectrum_widget import SpectrumWidget

        viewer = napari.Viewer(title=f"mrsolve - {path.name}")
        viewer.open(str(path), plugin="mrsolve")
        # the Spectrum widget's minimum size keeps its plot readable beside the other dock
        viewer.window.add_dock_widget(SpectrumWidget(viewer), name="Spectrum", area="right")
        viewer.window.add_dock_widget(
            ReconstructionWidget(viewer), name="Reconstruction", area="right"
        )
    if block:
        napari.run()
    return viewer
