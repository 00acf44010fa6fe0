"""The maps of a Reconstruction in the one layout the NIfTI and DICOM writers share.

Every map becomes float32 values of shape (S, E, F, ny, nx) (slice, echo, frame; size 1
where the output has no such axis; complex maps as their magnitude), with one (4, 4)
voxel-to-LPS affine per slice (propeller/scanner_geometry.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mrsolve.data.results import LEADING_AXES, Reconstruction, resolve_axes
from mrsolve.propeller.scanner_geometry import SliceGeometry, slice_affine

#: output dataset -> (description, UCUM unit); complex ones are exported as magnitudes
KINDS = {
    "image": ("magnitude image", "1"),
    "water": ("water", "1"),
    "fat": ("fat", "1"),
    "fat_fraction": ("fat fraction", "1"),
    "field_map_hz": ("field map", "Hz"),
    "fat_fraction_std": ("fat fraction standard deviation", "1"),
    "field_map_std_hz": ("field map standard deviation", "Hz"),
}
EXPORT_FORMATS = ("nifti", "dicom")
_DEFAULT_FOV_MM = 256.0


@dataclass
class ExportMap:
    """One map ready to export: ``values`` (S, E, F, ny, nx) float32."""

    name: str
    values: np.ndarray

    @property
    def description(self) -> str:
        return KINDS[self.name][0]

    @property
    def unit(self) -> str:
        return KINDS[self.name][1]


def _map_axes(shape: tuple[int, ...], image_axes: tuple[str, ...]) -> tuple[str, ...]:
    """Axes of a map: the image's, or (field maps) fewer: (y, x) or (slice, y, x)."""
    if len(shape) == len(image_axes):
        return image_axes
    return ("slice", "y", "x") if len(shape) == 3 else ("y", "x")


def export_maps(rec: Reconstruction) -> list[ExportMap]:
    """The maps present in ``rec`` (in :data:`KINDS` order) as (S, E, F, ny, nx) float32."""
    if not isinstance(rec, Reconstruction):
        raise TypeError(f"rec must be a Reconstruction, got {type(rec).__name__}")
    image_axes = resolve_axes(rec.axes, rec.image.ndim)
    n_slices = rec.image.shape[0] if image_axes[0] == "slice" else 1
    target = (*LEADING_AXES, "y", "x")
    out = []
    for name in KINDS:
        value = getattr(rec, name)
        if value is None:
            continue
        array = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value)
        array = np.abs(array) if np.iscomplexobj(array) else array
        axes = _map_axes(array.shape, image_axes)
        # axes are in the canonical order already: size-1 axes fill the gaps
        full = array.reshape([array.shape[axes.index(a)] if a in axes else 1 for a in target])
        full = np.broadcast_to(full, (n_slices, *full.shape[1:]))  # a field map shared by slices
        out.append(ExportMap(name, np.ascontiguousarray(full, dtype=np.float32)))
    return out


def slice_affines(rec: Reconstruction, n_slices: int) -> np.ndarray:
    """(S, 4, 4) voxel-to-LPS affines of the slices; unknown geometry: axial slices at the
    isocentre, 5 mm apart, covering a 256 mm field of view."""
    if rec.affine_lps is not None:
        affines = np.asarray(rec.affine_lps, dtype=np.float64)
        return np.broadcast_to(affines, (n_slices, 4, 4)).copy() if affines.ndim == 2 else affines
    shape = tuple(rec.image.shape[-2:])
    return np.stack(
        [
            slice_affine(SliceGeometry(position_mm=(0, 0, 5.0 * s)), shape, (_DEFAULT_FOV_MM,) * 2)
            for s in range(n_slices)
        ]
    )
