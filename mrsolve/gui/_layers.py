"""Layer data for napari from the data model: no napari or Qt import here.

A napari layer-data tuple is ``(data, kwargs, "image")``. Complex maps are shown as
magnitudes; the complex array and what it is (its ``role``) travel in
``metadata["mrsolve"]`` so the writer and the spectrum widget can use them.
"""

from __future__ import annotations

import numpy as np
import torch

from mrsolve.data.results import GroundTruth, Reconstruction, resolve_axes
from mrsolve.propeller.gridding import gridding
from mrsolve.propeller.scan import Scan
from mrsolve.recon.methods import reconstruct

LayerData = tuple[np.ndarray, dict, str]
FIELD_MAP_COLORMAP = "coolwarm"  # diverging: blue below, red above resonance
FAT_FRACTION_COLORMAP = "magma"
STD_COLORMAP = "viridis"  # sequential, unlike the maps' own: a std is not a map value
#: std layers: role -> name suffix
STD_LAYERS = {"fat_fraction_std": "fat fraction std", "field_map_std_hz": "field map std (Hz)"}


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().numpy()
    return np.asarray(value)


def _spatial_labels(
    ndim: int, leading: tuple[str, ...] = (), outer: tuple[str, ...] | None = None
) -> tuple[str, ...]:
    """Axis labels for an array of ``ndim`` axes ending in ``leading + (y, x)``.

    ``outer`` names the axes before those (the file's ``axes`` attribute, e.g. slice,
    echo, frame); an array with fewer axes (a field map that kept only "slice") takes
    the outermost names; None: "t"."""
    n_outer = ndim - 2 - len(leading)
    names = ("t",) * n_outer if outer is None else tuple(outer)[:n_outer]
    return (names + leading + ("y", "x"))[-ndim:]


def _layer(array, name: str, role: str, outer=None, **kwargs) -> LayerData:
    array = _numpy(array)
    info = {"role": role, **kwargs.pop("info", {})}
    if np.iscomplexobj(array):
        info["complex"] = array
        array = np.abs(array)
    kwargs.setdefault("axis_labels", _spatial_labels(array.ndim, outer=outer))
    return (
        array.astype(np.float32),
        {"name": name, "metadata": {"mrsolve": info}, **kwargs},
        "image",
    )


def frequency_axis(frequencies_hz) -> tuple[float, float]:
    """(start, step) in Hz of uniformly spaced bins; ValueError if they are not uniform."""
    f = _numpy(frequencies_hz).astype(np.float64).reshape(-1)
    if f.size == 1:
        return float(f[0]), 1.0
    step = np.diff(f)
    if not np.allclose(step, step[0], rtol=1e-3, atol=1e-6 * max(1.0, abs(step[0]))):
        raise ValueError(f"frequencies_hz must be uniformly spaced, got steps {step.tolist()}")
    return float(f[0]), float(step[0])


def spectral_layer(
    volume, frequencies_hz, name: str, info: dict | None = None, outer=None
) -> LayerData:
    """Magnitude of x(f, y, x) (or (..., f, y, x)) with the f axis scaled and labelled in Hz;
    ``outer`` names the leading axes (None: "t")."""
    volume = _numpy(volume)
    start, step = frequency_axis(frequencies_hz)
    lead = volume.ndim - 3
    extra = {"frequencies_hz": _numpy(frequencies_hz).astype(np.float32), **(info or {})}
    return _layer(
        volume,
        name,
        "spectral_volume",
        scale=(1.0,) * lead + (step, 1.0, 1.0),
        translate=(0.0,) * lead + (start, 0.0, 0.0),
        axis_labels=_spatial_labels(volume.ndim, ("f (Hz)",), outer),
        info=extra,
    )


def std_contrast_limits(std) -> tuple[float, float]:
    """(0, 99th percentile of the values below the maximum): pixels without signal sit at
    the cap (the prior's std) and would otherwise set the scale; (0, max) if all are
    at it, (0, 1) if it is 0."""
    values = _numpy(std).astype(np.float64).ravel()
    top = float(values.max()) if values.size else 0.0
    below = values[values < top]
    high = float(np.percentile(below, 99)) if below.size else top
    return 0.0, (high if high > 0 else top) or 1.0


def result_layers(
    rec: Reconstruction | GroundTruth, prefix: str, info: dict | None = None
) -> list[LayerData]:
    """Layers of a reconstruction or ground truth: image, water, fat, fat fraction (0-1),
    field map (Hz, diverging, symmetric limits), the stds of both (hidden until switched
    on), and first (so at the bottom of the layer list) the spectral volume (f axis in Hz),
    hidden: shown, it covers the maps; the Spectrum widget reads it hidden. Leading axes
    are labelled from ``rec.axes`` (slice, echo, frame). Fat fraction and field map of
    a fit that reports fat not resolvable (``Reconstruction.fat_separation``) carry
    "(fat not resolvable)" in their names."""
    info = dict(info or {})
    outer = resolve_axes(getattr(rec, "axes", None), rec.image.ndim)[:-2]
    # the maps of a fit whose sampling cannot separate fat say so in their names
    sep = getattr(rec, "fat_separation", None)  # ground truths have none
    caveat = " (fat not resolvable)" if sep is not None and not sep["resolvable"] else ""
    layers = [_layer(rec.image, f"{prefix} image", "image", outer, info=info)]
    for role in ("water", "fat"):
        if getattr(rec, role) is not None:
            layers.append(_layer(getattr(rec, role), f"{prefix} {role}", role, outer, info=info))
    if rec.fat_fraction is not None:
        layers.append(
            _layer(
                rec.fat_fraction,
                f"{prefix} fat fraction{caveat}",
                "fat_fraction",
                outer,
                colormap=FAT_FRACTION_COLORMAP,
                contrast_limits=(0.0, 1.0),
                info=info,
            )
        )
    if rec.field_map_hz is not None:
        fmap = _numpy(rec.field_map_hz)
        limit = float(np.abs(fmap).max()) or 1.0
        layers.append(
            _layer(
                fmap,
                f"{prefix} field map (Hz){caveat}",
                "field_map_hz",
                outer,
                colormap=FIELD_MAP_COLORMAP,
                contrast_limits=(-limit, limit),
                info=info,
            )
        )
    for role, suffix in STD_LAYERS.items():
        std = getattr(rec, role, None)  # ground truths have none
        if std is not None:
            layers.append(
                _layer(
                    std,
                    f"{prefix} {suffix}",
                    role,
                    outer,
                    colormap=STD_COLORMAP,
                    contrast_limits=std_contrast_limits(std),
                    visible=False,
                    info=info,
                )
            )
    volume = getattr(rec, "spectral_volume", None)
    if volume is not None:
        data, kwargs, kind = spectral_layer(
            volume, rec.frequencies_hz, f"{prefix} spectral volume", info, outer
        )
        layers.insert(0, (data, {**kwargs, "visible": False}, kind))
    return layers


def blade_images(scan: Scan, device: str | torch.device = "cpu") -> torch.Tensor:
    """(B, ny, nx) complex64: each blade gridded on its own (root-sum-of-squares over coils)."""
    return torch.stack(
        [
            gridding(scan.select_blades(torch.tensor([b])), device=device).cpu()
            for b in range(scan.n_blades)
        ]
    )


def raw_layers(scan: Scan, prefix: str, source: str = "") -> list[LayerData]:
    """A quick gridding image (per frame for dynamic scans) and the per-blade images.

    Both layers carry the scan in ``metadata["mrsolve"]["scan"]`` so the reconstruction
    widget can use them as its input.
    """
    info = {"scan": scan, "source": source, "field_strength_t": scan.field_strength_t}
    quick = reconstruct(scan, "gridding").image
    blades = blade_images(scan)
    return [
        _layer(quick, f"{prefix} gridding", "raw", info=info),
        _layer(blades, f"{prefix} blades", "raw", axis_labels=("blade", "y", "x"), info=info),
    ]
