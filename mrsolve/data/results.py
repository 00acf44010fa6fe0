"""The output file format (methods/propeller.md, "File conventions" -> Output).

One HDF5 file per reconstruction::

    /image            (ny, nx) complex64, or (nt, ny, nx) for dynamic scans
    /water, /fat      complex64 (optional, shape of /image)
    /fat_fraction     float32 in [0, 1] (optional)
    /field_map_hz     float32 (optional; (ny, nx) or (nt, ny, nx))
    /fat_fraction_std, /field_map_std_hz
                      float32 >= 0, per-pixel standard deviations in the map's unit
                      (optional; shapes of /fat_fraction and /field_map_hz)
    /spectral_volume  (nf, ny, nx) or (nt, nf, ny, nx) complex64 with attribute frequencies_hz
    /affine_lps       (4, 4) float64, or (S, 4, 4) with a "slice" axis: voxel (column,
                      row, 0, 1) -> LPS patient coordinates in mm, third column the slice
                      normal times the thickness (propeller/scanner_geometry.py; optional)
    root attributes   kind, method, config (JSON), mrsolve_version, input_sha256,
                      runtime_s, device, axes (names of the image axes, e.g.
                      ["slice", "frame", "y", "x"]), slices (the file's slice indices
                      along a "slice" axis), source_header (JSON of the raw header's
                      patient / study / measurement / system / sequence fields)

Whole exams add leading axes, in the order slice, echo, frame (each optional), before
(y, x); every map has the leading axes of /image (the field map may drop all but
"slice"), the spectral volume puts its bin axis just before (y, x).

The ground-truth file of a simulation has the same layout (kind "truth") plus /mask,
/coil_maps and /noise_covariance. Files are written to a temporary name in the target
folder and renamed, so a failed write leaves nothing behind.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

import mrsolve
from mrsolve.data.files import atomic_output, check_hdf5, sha256_file
from mrsolve.propeller.fat import fat_spectrum, water_fat_signal

_COMPLEX = ("image", "water", "fat", "spectral_volume")
_RESULT_MAPS = (
    "image",
    "water",
    "fat",
    "fat_fraction",
    "field_map_hz",
    "fat_fraction_std",
    "field_map_std_hz",
)
#: every array a Reconstruction may hold (the maps, then the spectral volume)
ARRAYS = (*_RESULT_MAPS, "spectral_volume")
LEADING_AXES = ("slice", "echo", "frame")
__all__ = [
    "GroundTruth",
    "Reconstruction",
    "read_result",
    "read_truth",
    "sha256_file",
    "write_result",
    "write_truth",
]


@dataclass
class Reconstruction:
    """One reconstruction result; every map but ``image`` is optional.

    Attributes:
        image: (ny, nx) or (nt, ny, nx) complex64 (sum over frequency bins).
        water, fat: complex64 maps, shape of ``image``.
        fat_fraction: float32 in [0, 1], shape of ``image``.
        field_map_hz: float32, (ny, nx) or shape of ``image``.
        spectral_volume: (nf, ny, nx) or (nt, nf, ny, nx) complex64.
        frequencies_hz: (nf,) float32 bin frequencies (required with ``spectral_volume``).
        method: name of the reconstruction method.
        config: resolved configuration (JSON-serializable).
        input_sha256: SHA-256 of the raw input file.
        runtime_s: wall time of the reconstruction.
        device: where it ran.
        mrsolve_version: package version that wrote it.
        axes: names of the image axes, a subsequence of (slice, echo, frame) then
            ("y", "x"); None -> ("y", "x") or ("frame", "y", "x") by the image's ndim.
        slices: the input file's slice index of each entry along a "slice" axis.
        image_time_s: the time (s, relative to the phase reference) at which ``image`` is
            read out: 0 for spin echo, the echo time for gradient echo.
        fat_fraction_std: float32 >= 0 per-pixel std of ``fat_fraction``, its shape.
        field_map_std_hz: float32 >= 0 per-pixel std (Hz) of ``field_map_hz``, its shape.
        affine_lps: (4, 4) or, with a leading "slice" axis, (S, 4, 4) voxel-to-LPS affines
            of the slices (None: the geometry is unknown).
        source_header: the raw header's patient / study / measurement / system / sequence
            fields as text ({section: {field: text}}), for exports.
    """

    image: torch.Tensor
    water: torch.Tensor | None = None
    fat: torch.Tensor | None = None
    fat_fraction: torch.Tensor | None = None
    field_map_hz: torch.Tensor | None = None
    spectral_volume: torch.Tensor | None = None
    frequencies_hz: torch.Tensor | None = None
    method: str = ""
    config: dict = field(default_factory=dict)
    input_sha256: str = ""
    runtime_s: float = 0.0
    device: str = "cpu"
    mrsolve_version: str = mrsolve.__version__
    axes: tuple[str, ...] | None = None
    slices: tuple[int, ...] = ()
    image_time_s: float = 0.0
    fat_fraction_std: torch.Tensor | None = None
    field_map_std_hz: torch.Tensor | None = None
    affine_lps: np.ndarray | None = None
    source_header: dict = field(default_factory=dict)

    @property
    def fat_separation(self) -> dict | None:
        """The water / fat fit's verdict on the sampling (``echo_cycles``,
        ``readout_shift_px``, ``resolvable``) from the report in ``config``; None when
        the result has no water / fat fit."""
        return self.config.get("report", {}).get("waterfat", {}).get("fat_separation")


@dataclass
class GroundTruth:
    """Reference maps of a simulation (static: (ny, nx); dynamic: leading time axis).

    Attributes:
        image: echo-time-0 object water + fat, complex64.
        water, fat: complex64 densities.
        fat_fraction: |F| / (|W| + |F|) inside the mask, 0 outside, float32.
        field_map_hz: (ny, nx) float32.
        mask: (ny, nx) bool object support.
        coil_maps: (C, ny, nx) complex64 or None.
        noise_covariance: (C, C) complex64 or None.
        config: the simulation options (JSON-serializable).
        axes: as in :class:`Reconstruction` (a multi-slice truth has a leading "slice"
            axis on every map, the mask included).
    """

    image: torch.Tensor
    water: torch.Tensor
    fat: torch.Tensor
    fat_fraction: torch.Tensor
    field_map_hz: torch.Tensor
    mask: torch.Tensor
    coil_maps: torch.Tensor | None = None
    noise_covariance: torch.Tensor | None = None
    config: dict = field(default_factory=dict)
    axes: tuple[str, ...] | None = None

    def image_at(self, time_s: float) -> torch.Tensor:
        """The object's image at time ``time_s`` (s), from water, fat, the field map and
        the fat model of the simulation (``config``: field_strength_t, fat_model)."""
        if time_s == 0:
            return self.image
        if "field_strength_t" not in self.config:
            raise ValueError(
                f"the truth's config must give field_strength_t to form the image at t = "
                f"{time_s} s, got keys {sorted(self.config)}"
            )
        spectrum = fat_spectrum(
            float(self.config["field_strength_t"]), self.config.get("fat_model", "six_peak")
        )
        psi = self.field_map_hz.expand(self.water.shape)
        return water_fat_signal(self.water, self.fat, psi, spectrum, time_s)


def _numpy(name: str, value, dtype) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    array = np.asarray(value)
    if array.size == 0:
        raise ValueError(f"{name} must not be empty, got shape {array.shape}")
    if np.iscomplexobj(array) and not np.issubdtype(np.dtype(dtype), np.complexfloating):
        raise TypeError(f"{name} must be real, got complex values of dtype {array.dtype}")
    array = array.astype(dtype)
    if array.dtype != bool and not np.isfinite(array).all():
        raise ValueError(f"{name} must be finite, got NaN or infinite values")
    return array


def resolve_axes(axes, ndim: int) -> tuple[str, ...]:
    """Check ``axes`` against an image of ``ndim`` dimensions (None: the 2D / dynamic default)."""
    if axes is None:
        if ndim not in (2, 3):
            raise ValueError(f"image must have shape (ny, nx) or (nt, ny, nx), got {ndim} axes")
        return ("frame", "y", "x")[3 - ndim :]
    axes = tuple(str(a) for a in axes)
    lead = axes[:-2]
    if (
        axes[-2:] != ("y", "x")
        or len(set(lead)) != len(lead)
        or not set(lead) <= set(LEADING_AXES)
        or list(lead) != sorted(lead, key=LEADING_AXES.index)
    ):
        raise ValueError(
            f"axes must be a subsequence of {list(LEADING_AXES)} followed by 'y', 'x', got {list(axes)}"
        )
    if len(axes) != ndim:
        raise ValueError(f"axes {list(axes)} must name each of the image's {ndim} axes")
    return axes


def _check_maps(maps: dict[str, np.ndarray], axes) -> tuple[str, ...]:
    image = maps["image"]
    axes = resolve_axes(axes, image.ndim)
    for name in ("water", "fat", "fat_fraction", "fat_fraction_std"):
        if name in maps and maps[name].shape != image.shape:
            raise ValueError(
                f"{name} must have the shape of image {image.shape}, got {maps[name].shape}"
            )
    allowed = [image.shape, image.shape[-2:]]
    if axes[0] == "slice":
        allowed.append((image.shape[0], *image.shape[-2:]))
    for name in ("field_map_hz", "field_map_std_hz"):
        if name in maps and maps[name].shape not in allowed:
            raise ValueError(
                f"{name} must have one of the shapes {allowed}, got {maps[name].shape}"
            )
    for name in ("fat_fraction_std", "field_map_std_hz"):
        if name in maps and maps[name].min() < 0:
            raise ValueError(f"{name} must be >= 0, got a minimum of {maps[name].min():.3g}")
    ff = maps.get("fat_fraction")
    if ff is not None and (ff.min() < 0 or ff.max() > 1):
        raise ValueError(f"fat_fraction must lie in [0, 1], got [{ff.min():.3g}, {ff.max():.3g}]")
    return axes


def _atomic_write(path: str | os.PathLike, fill) -> Path:
    """Call ``fill(h5py.File)`` on a temporary file next to ``path``, then rename it."""
    with atomic_output(path) as tmp, h5py.File(tmp, "w") as handle:
        fill(handle)
    return Path(path)


def _write_maps(handle: h5py.File, maps: dict[str, np.ndarray]) -> None:
    for name, array in maps.items():
        handle.create_dataset(name, data=array)


def _collect(obj, names, complex_names) -> dict[str, np.ndarray]:
    maps = {}
    for name in names:
        value = getattr(obj, name)
        if value is not None:
            dtype = np.complex64 if name in complex_names else np.float32
            maps[name] = _numpy(name, value, dtype)
    return maps


def _check_affine(affine, shape: tuple[int, ...], axes: tuple[str, ...]) -> np.ndarray | None:
    if affine is None:
        return None
    affine = np.asarray(affine, dtype=np.float64)
    want = (shape[0], 4, 4) if axes[0] == "slice" else (4, 4)
    if affine.shape != want or not np.isfinite(affine).all():
        raise ValueError(f"affine_lps must be finite with shape {want}, got shape {affine.shape}")
    if not np.allclose(affine[..., 3, :], [0, 0, 0, 1]):
        raise ValueError("affine_lps must have a last row of (0, 0, 0, 1)")
    return affine


def write_result(path: str | os.PathLike, rec: Reconstruction) -> Path:
    """Write ``rec`` atomically to ``path`` in the output format; returns the path."""
    if not isinstance(rec, Reconstruction):
        raise TypeError(f"rec must be a Reconstruction, got {type(rec).__name__}")
    maps = _collect(rec, _RESULT_MAPS, _COMPLEX)
    axes = _check_maps(maps, rec.axes)
    affine = _check_affine(rec.affine_lps, maps["image"].shape, axes)
    volume = freqs = None
    if rec.spectral_volume is not None:
        volume = _numpy("spectral_volume", rec.spectral_volume, np.complex64)
        if rec.frequencies_hz is None:
            raise ValueError("frequencies_hz must be given with spectral_volume, got None")
        freqs = _numpy("frequencies_hz", rec.frequencies_hz, np.float32).reshape(-1)
        shape = maps["image"].shape
        if volume.ndim != len(shape) + 1 or (volume.shape[:-3], volume.shape[-2:]) != (
            shape[:-2],
            shape[-2:],
        ):
            raise ValueError(
                f"spectral_volume must have shape (nf, ny, nx) after the leading axes of "
                f"image {shape}, got {volume.shape}"
            )
        if volume.shape[-3] != freqs.size:
            raise ValueError(
                f"frequencies_hz must have {volume.shape[-3]} entries (one per bin), got {freqs.size}"
            )
    config = json.dumps(rec.config, sort_keys=True, default=str)

    def fill(handle: h5py.File) -> None:
        _write_maps(handle, maps)
        handle["image"].attrs["image_time_s"] = float(rec.image_time_s)
        if volume is not None:
            handle.create_dataset("spectral_volume", data=volume)
            handle["spectral_volume"].attrs["frequencies_hz"] = freqs
        if affine is not None:
            handle.create_dataset("affine_lps", data=affine)
        handle.attrs.update(
            kind="reconstruction",
            method=str(rec.method),
            config=config,
            mrsolve_version=str(rec.mrsolve_version),
            input_sha256=str(rec.input_sha256),
            runtime_s=float(rec.runtime_s),
            device=str(rec.device),
            axes=list(axes),
            slices=[int(i) for i in rec.slices],
            source_header=json.dumps(rec.source_header, sort_keys=True),
        )

    return _atomic_write(path, fill)


def _open(path: str | os.PathLike) -> h5py.File:
    return h5py.File(check_hdf5(path), "r")


def _read_maps(handle: h5py.File, names) -> dict[str, torch.Tensor]:
    return {n: torch.from_numpy(handle[n][()]) for n in names if n in handle}


def _attr(handle: h5py.File, name: str, default):
    value = handle.attrs.get(name, default)
    return value.decode() if isinstance(value, bytes) else value


def _axes(handle: h5py.File) -> tuple[str, ...] | None:
    if "axes" not in handle.attrs:
        return None
    return tuple(a.decode() if isinstance(a, bytes) else str(a) for a in handle.attrs["axes"])


def read_result(path: str | os.PathLike) -> Reconstruction:
    """Read an output file (torch tensors on CPU)."""
    with _open(path) as handle:
        if "image" not in handle:
            raise ValueError(
                f"file {str(path)!r} has no /image dataset: not an mrsolve output file"
            )
        maps = _read_maps(handle, _RESULT_MAPS)
        if "spectral_volume" in handle:
            maps["spectral_volume"] = torch.from_numpy(handle["spectral_volume"][()])
            maps["frequencies_hz"] = torch.from_numpy(
                np.asarray(handle["spectral_volume"].attrs["frequencies_hz"], dtype=np.float32)
            )
        return Reconstruction(
            **maps,
            method=str(_attr(handle, "method", "")),
            config=json.loads(_attr(handle, "config", "{}")),
            input_sha256=str(_attr(handle, "input_sha256", "")),
            runtime_s=float(_attr(handle, "runtime_s", 0.0)),
            device=str(_attr(handle, "device", "")),
            mrsolve_version=str(_attr(handle, "mrsolve_version", "")),
            axes=_axes(handle),
            slices=tuple(int(i) for i in handle.attrs.get("slices", ())),
            image_time_s=float(handle["image"].attrs.get("image_time_s", 0.0)),
            affine_lps=handle["affine_lps"][()] if "affine_lps" in handle else None,
            source_header=json.loads(_attr(handle, "source_header", "{}")),
        )


def write_truth(path: str | os.PathLike, truth: GroundTruth) -> Path:
    """Write a ground-truth file atomically (output layout + /mask, /coil_maps, ...)."""
    if not isinstance(truth, GroundTruth):
        raise TypeError(f"truth must be a GroundTruth, got {type(truth).__name__}")
    maps = _collect(truth, ("image", "water", "fat", "fat_fraction", "field_map_hz"), _COMPLEX)
    axes = _check_maps(maps, truth.axes)
    mask = _numpy("mask", truth.mask, bool)
    shape = maps["image"].shape
    allowed = [shape[-2:], (shape[0], *shape[-2:])] if axes[0] == "slice" else [shape[-2:]]
    if mask.shape not in allowed:
        raise ValueError(f"mask must have one of the shapes {allowed}, got {mask.shape}")
    extra = _collect(truth, ("coil_maps", "noise_covariance"), ("coil_maps", "noise_covariance"))
    config = json.dumps(truth.config, sort_keys=True, default=str)

    def fill(handle: h5py.File) -> None:
        _write_maps(handle, {**maps, **extra, "mask": mask})
        handle.attrs.update(
            kind="truth",
            method="truth",
            config=config,
            mrsolve_version=mrsolve.__version__,
            axes=list(axes),
        )

    return _atomic_write(path, fill)


def read_truth(path: str | os.PathLike) -> GroundTruth:
    """Read a ground-truth file written by :func:`write_truth`."""
    with _open(path) as handle:
        required = ("image", "water", "fat", "fat_fraction", "field_map_hz", "mask")
        missing = [n for n in required if n not in handle]
        if missing:
            raise ValueError(f"file {str(path)!r} is not a ground-truth file: missing {missing}")
        maps = _read_maps(handle, (*required, "coil_maps", "noise_covariance"))
        return GroundTruth(
            **maps, config=json.loads(_attr(handle, "config", "{}")), axes=_axes(handle)
        )
