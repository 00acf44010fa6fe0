"""NIfTI-1 export of a Reconstruction with nibabel: one ``<map>.nii.gz`` per map.

Voxel axes are (column, row, slice, echo x frame): NIfTI index (i, j, k) is image pixel
[k][j, i]. The affine is the slices' LPS affine turned into NIfTI's RAS (x and y
negated), stored as both sform and qform with code 1 (scanner); the qform is left unset
(code 0) when the slices are sheared, which a qform cannot represent. Slices that are
not parallel and evenly spaced go to one file per slice (``<map>_slice<k>.nii.gz``).
Complex maps are written as magnitudes; the spatial unit (mm) is set, the description names
the map and its unit.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np

import mrsolve
from mrsolve.data.export_maps import ExportMap, export_maps, slice_affines
from mrsolve.data.files import atomic_output
from mrsolve.data.results import Reconstruction
from mrsolve.propeller.scanner_geometry import stack_affine

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
SCANNER_CODE = 1  # NIFTI_XFORM_SCANNER_ANAT


def _is_orthogonal(affine: np.ndarray) -> bool:
    columns = affine[:3, :3] / np.linalg.norm(affine[:3, :3], axis=0)
    return bool(np.allclose(columns.T @ columns, np.eye(3), atol=1e-5))


def _image(values: np.ndarray, affine_lps: np.ndarray, label: str):
    """A Nifti1Image of ``values`` (S, V, ny, nx) with its LPS ``affine_lps``."""
    import nibabel as nib

    data = values.transpose(3, 2, 0, 1)  # (nx, ny, S, V)
    if data.shape[-1] == 1:
        data = data[..., 0]
    affine = LPS_TO_RAS @ affine_lps
    image = nib.Nifti1Image(np.ascontiguousarray(data), affine)
    header = image.header
    header.set_xyzt_units("mm")
    image.set_sform(affine, code=SCANNER_CODE)
    image.set_qform(affine, code=SCANNER_CODE if _is_orthogonal(affine) else 0)
    header["descrip"] = label[:79].encode()
    return image


def _save(image, path: Path) -> Path:
    with atomic_output(path) as tmp:
        tmp.write_bytes(gzip.compress(image.to_bytes(), compresslevel=6))
    return path


def _label(rec: Reconstruction, item: ExportMap) -> str:
    unit = "" if item.unit == "1" else f" ({item.unit})"
    return f"mrsolve {mrsolve.__version__} {rec.method} {item.description}{unit}"


def write_nifti(rec: Reconstruction, folder: str | os.PathLike) -> list[Path]:
    """Write every map of ``rec`` into ``folder`` (created if missing); returns the files."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for item in export_maps(rec):
        s, e, f, ny, nx = item.values.shape
        values = item.values.reshape(s, e * f, ny, nx)
        affines = slice_affines(rec, s)
        stacked = stack_affine(affines)
        if stacked is not None:
            image = _image(values, stacked, _label(rec, item))
            written.append(_save(image, folder / f"{item.name}.nii.gz"))
            continue
        for k in range(s):
            image = _image(values[k : k + 1], affines[k], _label(rec, item))
            written.append(_save(image, folder / f"{item.name}_slice{k}.nii.gz"))
    return written
