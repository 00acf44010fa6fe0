"""The reconstruction methods ``recon run`` offers, behind one signature.

Every method returns a Reconstruction. The classical ones take a prewhitened static
scan, so dynamic scans are reconstructed frame by frame and stacked on a leading time
axis; the spectral method models the whole scan (and its frames) itself. The classical
methods combine coils with ESPIRiT maps by default; ``coil_maps="rss"`` (the name a
config file can give) asks for root-sum-of-squares.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

import h5py
import numpy as np
import torch

from mrsolve.data.files import check_hdf5
from mrsolve.data.results import Reconstruction
from mrsolve.propeller.conjugate_phase import conjugate_phase
from mrsolve.propeller.gridding import gridding
from mrsolve.propeller.noise import prewhiten
from mrsolve.propeller.pipe import pipe_reconstruct
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import echo_time
from mrsolve.recon.spectral import reconstruct_spectral
from mrsolve.recon.spectral.config import SpectralConfig, option_names, resolve_config
from mrsolve.solvers.validation import check_choice


def _gridding(scan: Scan, field_map, device, callback, **options) -> Reconstruction:
    return Reconstruction(image=gridding(scan, device=device, callback=callback, **options))


def _pipe(scan: Scan, field_map, device, callback, **options) -> Reconstruction:
    result = pipe_reconstruct(scan, device=device, callback=callback, **options)
    motion = {
        "rotation_deg": result.rotation_deg.tolist(),
        "shift_px": result.shift_px.tolist(),
        "blade_weights": result.blade_weights.tolist(),
    }
    return Reconstruction(image=result.image, config={"estimated": motion})


def _conjugate_phase(scan: Scan, field_map, device, callback, **options) -> Reconstruction:
    image = conjugate_phase(scan, field_map, device=device, callback=callback, **options)
    return Reconstruction(image=image)


def _spectral(
    scan: Scan,
    field_map,
    device,
    callback,
    config: SpectralConfig,
    checkpoint: Path | None = None,
    resume: bool = False,
) -> Reconstruction:
    return reconstruct_spectral(
        scan, config, device=device, callback=callback, checkpoint=checkpoint, resume=resume
    )


_SPECTRAL_RUN = ("checkpoint", "resume")  # how to run, not what to compute


def spectral_options(options: dict) -> dict:
    """The spectral method's options, typed: ``{"config": SpectralConfig, "checkpoint",
    "resume"}``, the configuration resolved once from ``preset``, ``iterations`` and the
    configuration overrides among ``options`` (None values count as not given).

    Already resolved options come back unchanged. Raises ValueError naming an unknown
    option, TypeError naming an option whose value has the wrong type.
    """
    if isinstance(options.get("config"), SpectralConfig):
        extra = sorted(set(options) - {"config", *_SPECTRAL_RUN})
        if extra:
            raise ValueError(f"options {extra} cannot be given with a resolved spectral config")
        return dict(options)
    known = option_names() | {"iterations", *_SPECTRAL_RUN}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"option {unknown[0]!r} is not known to method 'spectral'; known: {sorted(known)}"
        )
    given = {key: value for key, value in options.items() if value is not None}
    run = {key: given.pop(key) for key in _SPECTRAL_RUN if key in given}
    config = resolve_config(given.pop("preset", "static"), given.pop("iterations", None), **given)
    return {"config": config, **run}


@dataclass(frozen=True)
class Method:
    """A reconstruction method: ``run(scan, field_map, device, callback, **options)``.

    ``target`` is the function whose keyword arguments are the method's options, unless
    ``resolve`` turns the options into typed ones (and validates them) first;
    ``defaults`` are options the method takes when the user gives none (where they
    differ from ``target``'s own defaults); ``per_frame`` methods see one static frame at
    a time (after prewhitening), the others the whole scan.
    """

    run: Callable[..., Reconstruction]
    target: Callable[..., object]
    per_frame: bool = True
    needs_field_map: bool = False
    resolve: Callable[[dict], dict] | None = None
    defaults: Mapping[str, object] = field(default_factory=dict)


METHODS: dict[str, Method] = {
    "spectral": Method(_spectral, reconstruct_spectral, per_frame=False, resolve=spectral_options),
    # gridding()'s own default stays RSS (single blades in the GUI); a reconstruction
    # combines with ESPIRiT maps (docs/coil_maps_design.md)
    "gridding": Method(_gridding, gridding, defaults={"coil_maps": "espirit"}),
    "pipe": Method(_pipe, pipe_reconstruct),
    "conjugate-phase": Method(_conjugate_phase, conjugate_phase, needs_field_map=True),
}
DEFAULT_METHOD = "spectral"
_RESERVED = {"scan", "device", "callback", "field_map_hz", "operator"}


def resolve_options(method: str, options: dict) -> dict:
    """``options`` of ``method`` in the form its ``run`` takes (typed, for the spectral
    method; unchanged for the others, whose ``defaults`` :func:`reconstruct` fills in, so
    that the options given name a batch job whatever the defaults are)."""
    check_choice("method", method, METHODS)
    resolve = METHODS[method].resolve
    return dict(options) if resolve is None else resolve(options)


def _run_options(options: dict) -> dict:
    """``coil_maps="rss"`` (a name a config file can hold) as the functions' None."""
    if isinstance(options.get("coil_maps"), str) and options["coil_maps"] == "rss":
        return {**options, "coil_maps": None}
    return options


def check_request(method: str, options: dict, has_field_map: bool) -> None:
    """Raise ValueError for an unknown method, an unknown option or a missing field map
    (TypeError for a spectral option of the wrong type)."""
    check_choice("method", method, METHODS)
    spec = METHODS[method]
    if spec.needs_field_map and not has_field_map:
        raise ValueError(f"method {method!r} needs --field-map FILE (an HDF5 with /field_map_hz)")
    if spec.resolve is not None:
        spec.resolve(options)
        return
    params = inspect.signature(spec.target).parameters
    allowed = sorted(set(params) - _RESERVED)
    for key in options:
        if key not in allowed:
            raise ValueError(f"option {key!r} is not known to method {method!r}; known: {allowed}")


def reconstruct(
    scan: Scan,
    method: str,
    field_map: torch.Tensor | None = None,
    device: str | torch.device = "cpu",
    callback: Callable | None = None,
    **options,
) -> Reconstruction:
    """Reconstruct ``scan`` with ``method`` (dynamic scans frame by frame for classical methods).

    Classical methods get prewhitened k-space (when the scan has a noise scan); the
    spectral method prewhitens itself.
    """
    check_request(method, options, field_map is not None)
    spec = METHODS[method]
    options = {**spec.defaults, **resolve_options(method, options)}
    if not spec.per_frame:
        rec = spec.run(scan, field_map, device, callback, **options)
        rec.method = method
        return rec
    if scan.noise is not None:
        scan = replace(scan, kspace=prewhiten(scan.kspace, scan.noise), noise=None)
    frames = [scan.select_blades(scan.frame == t) for t in range(scan.n_frames)]
    results = [spec.run(f, field_map, device, callback, **_run_options(options)) for f in frames]
    first = results[0]
    if len(results) == 1:
        first.image = first.image.cpu()
    else:
        first.image = torch.stack([r.image.cpu() for r in results])
    first.method = method
    first.config = {**options, **first.config}
    # the classical methods' images are the contrast at the k-space centre: the echo time
    first.image_time_s = echo_time(scan.times, scan.center_sample, scan.echo)
    return first


def load_field_map(path: Path, image_shape: tuple[int, int]) -> torch.Tensor:
    """A field map (ny, nx) in Hz from an HDF5 file's /field_map_hz or a .npy file."""
    path = Path(path)
    if path.suffix == ".npy":
        if not path.is_file():
            raise FileNotFoundError(f"field map file {str(path)!r} does not exist")
        array = np.load(path)
    else:
        with h5py.File(check_hdf5(path), "r") as f:
            if "field_map_hz" not in f:
                raise ValueError(f"field map file {str(path)!r} has no /field_map_hz dataset")
            array = f["field_map_hz"][()]
    if array.shape != tuple(image_shape):
        raise ValueError(
            f"field map must have the image shape {tuple(image_shape)}, got {array.shape} in {str(path)!r}"
        )
    if not np.isfinite(array).all():
        raise ValueError(f"field map in {str(path)!r} must be finite, got NaN or infinite values")
    return torch.as_tensor(array, dtype=torch.float32)
