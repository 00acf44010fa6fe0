"""napari reader: ISMRMRD PROPELLER raw files and mrsolve output / ground-truth files.

``get_reader(path)`` answers quickly from the HDF5 structure and returns None (never
raises) for anything it cannot read.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import h5py

from mrsolve.data.ismrmrd_io import ACCEPTED_TRAJECTORIES, parse_header, read_ismrmrd
from mrsolve.data.results import read_result, read_truth
from mrsolve.gui._layers import LayerData, raw_layers, result_layers

Reader = Callable[[str | list[str]], list[LayerData]]


def _raw_dataset(handle: h5py.File) -> str | None:
    """Name of the ISMRMRD dataset group with an accepted trajectory, else None."""
    for name, group in handle.items():
        if isinstance(group, h5py.Group) and "xml" in group and "data" in group:
            xml = group["xml"][()]
            xml = xml[0] if getattr(xml, "ndim", 0) else xml
            if parse_header(xml).trajectory in ACCEPTED_TRAJECTORIES:
                return name
    return None


def file_kind(path: str | os.PathLike) -> str | None:
    """ "reconstruction", "truth", "raw" or None for a file this plugin cannot read."""
    try:
        if not (Path(path).is_file() and h5py.is_hdf5(path)):
            return None
        with h5py.File(path, "r") as handle:
            kind = handle.attrs.get("kind", "")
            kind = kind.decode() if isinstance(kind, bytes) else str(kind)
            if "image" in handle and kind in ("reconstruction", "truth"):
                return kind
            return "raw" if _raw_dataset(handle) is not None else None
    except Exception:  # a reader must answer None for anything unreadable, never raise
        return None


def read_layers(path: str | os.PathLike) -> list[LayerData]:
    """Layers of one file (see :func:`mrsolve.gui._layers.result_layers` / ``raw_layers``)."""
    kind = file_kind(path)
    stem = Path(path).stem
    if kind == "reconstruction":
        rec = read_result(path)
        info = {"method": rec.method, "source": str(path), "axes": rec.axes}
        info.update(affine_lps=rec.affine_lps, source_header=rec.source_header)  # for exports
        return result_layers(rec, stem, info)
    if kind == "truth":
        return result_layers(read_truth(path), f"{stem} truth", {"source": str(path)})
    if kind == "raw":
        return raw_layers(read_ismrmrd(path), stem, str(path))
    raise ValueError(
        f"path {str(path)!r} is neither an mrsolve output nor a PROPELLER ISMRMRD file"
    )


def get_reader(path: str | list[str]) -> Reader | None:
    """napari reader hook: a function reading ``path`` (one file or a list), or None."""
    paths = [path] if isinstance(path, str | os.PathLike) else list(path)
    if not paths or any(file_kind(p) is None for p in paths):
        return None

    def read(path: str | list[str]) -> list[LayerData]:
        items = [path] if isinstance(path, str | os.PathLike) else list(path)
        return [layer for p in items for layer in read_layers(p)]

    return read
