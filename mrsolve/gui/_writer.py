"""napari writers: image layers -> one mrsolve output file (methods/propeller.md, Output),
a folder of NIfTI files or a folder of DICOM series (the ``recon export`` formats)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mrsolve.data.results import Reconstruction, write_result
from mrsolve.gui._layers import LayerData


def _frequencies(array: np.ndarray, attributes: dict, info: dict) -> np.ndarray:
    if "frequencies_hz" in info:
        return np.asarray(info["frequencies_hz"], dtype=np.float32)
    scale = attributes.get("scale") or (1.0,) * array.ndim
    translate = attributes.get("translate") or (0.0,) * array.ndim
    nf = array.shape[-3]
    return (translate[-3] + scale[-3] * np.arange(nf)).astype(np.float32)


def layers_to_reconstruction(layer_data: list[LayerData]) -> Reconstruction:
    """A Reconstruction from image layers: each layer's ``metadata["mrsolve"]["role"]``
    (complex data from the metadata when present) says which map it is; a layer without
    a role becomes ``image`` when no other layer is the image."""
    maps: dict = {}
    method = ""
    scanner: dict = {}  # geometry, axes and patient fields of the file the layers came from
    for data, attributes, layer_type in layer_data:
        info = (attributes.get("metadata") or {}).get("mrsolve", {})
        role = info.get("role")
        if layer_type != "image" or role == "raw":
            continue
        if role is None:
            role = "image"
        if role in maps:
            continue
        array = np.asarray(info.get("complex", data))
        maps[role] = array
        method = method or info.get("method", "")
        if not scanner and info.get("affine_lps") is not None:
            scanner = {k: info[k] for k in ("affine_lps", "axes", "source_header") if k in info}
        if role == "spectral_volume":
            maps["frequencies_hz"] = _frequencies(array, attributes, info)
    if "image" not in maps:
        roles = [(a.get("metadata") or {}).get("mrsolve", {}).get("role") for _, a, _ in layer_data]
        raise ValueError(f"layer_data must contain an image layer to write, got roles {roles}")
    return Reconstruction(**maps, method=method or "napari", **scanner)


def write_layers(path: str, layer_data: list[LayerData]) -> list[str]:
    """npe2 writer hook: write ``layer_data`` to ``path`` atomically; returns [path]."""
    write_result(path, layers_to_reconstruction(layer_data))
    return [str(path)]


def _export(fmt: str, path: str, layer_data: list[LayerData]) -> list[str]:
    from mrsolve.recon.interop_commands import export_reconstruction

    folder = Path(path)
    folder = folder.with_name(folder.name.split(".")[0])  # "scan.nii.gz" -> folder "scan"
    rec = layers_to_reconstruction(layer_data)
    return [str(p) for p in export_reconstruction(rec, [fmt], folder)]


def write_nifti_layers(path: str, layer_data: list[LayerData]) -> list[str]:
    """npe2 writer hook: one NIfTI file per map in the folder ``path`` minus its extension."""
    return _export("nifti", path, layer_data)


def write_dicom_layers(path: str, layer_data: list[LayerData]) -> list[str]:
    """npe2 writer hook: DICOM series (one folder per map) in ``path`` minus its extension."""
    return _export("dicom", path, layer_data)
