"""Spectral reconstruction configuration: sections, presets and overrides.

Each section is the config dataclass beside the code it configures:

- ``frequency``: the frequency bins (here);
- ``operator``: the forward model (:class:`~mrsolve.recon.spectral.problem.OperatorConfig`);
- ``free``: stage 1, the free spectral volume x(r, f) (or x(t, r, f)) on a dense grid with
  FISTA or on a learned encoding with Adam, the encodings' options nested in it
  (:mod:`~mrsolve.recon.spectral.stages.free_volume`);
- ``waterfat``: stage 2, the parametric water / fat / field-map head
  (:mod:`~mrsolve.recon.spectral.stages.water_fat`);
- ``stopping``: the held-out rule of the runner (:mod:`~mrsolve.recon.spectral.runner`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field, fields, is_dataclass, replace

import torch

from mrsolve.propeller.fat import fat_spectrum
from mrsolve.recon.spectral.fields import frequency_bins
from mrsolve.recon.spectral.problem import OperatorConfig
from mrsolve.recon.spectral.runner import StoppingConfig
from mrsolve.recon.spectral.stages.free_volume import ENCODINGS, FreeVolumeConfig
from mrsolve.recon.spectral.stages.water_fat import OPTIMIZERS, WaterFatConfig
from mrsolve.solvers.validation import check_choice


@dataclass
class FrequencyConfig:
    """Frequency bins: ``n_bins`` over [min fat - margin, max fat + margin] Hz."""

    n_bins: int = 32
    margin_hz: float = 150.0
    fat_model: str = "six_peak"


@dataclass
class SpectralConfig:
    """Resolved configuration of a spectral reconstruction."""

    preset: str = "static"
    dynamic: bool = False
    seed: int = 0
    # when the image is read out: "echo" (the first echo's k-space centre: 0 for spin echo,
    # TE for gradient echo, where the data determine it), "zero" (t = 0) or seconds
    image_time: str | float = "echo"
    frequency: FrequencyConfig = field(default_factory=FrequencyConfig)
    operator: OperatorConfig = field(default_factory=OperatorConfig)
    free: FreeVolumeConfig = field(default_factory=FreeVolumeConfig)
    waterfat: WaterFatConfig = field(default_factory=WaterFatConfig)
    stopping: StoppingConfig = field(default_factory=StoppingConfig)


PRESETS: dict[str, dict] = {
    "static": {},
    "fatwater": {"waterfat": {"enabled": True}, "free": {"enabled": False}},
    # TV along time couples the frames: its warm-started prox needs more inner steps, and
    # FISTA's momentum a restart every 10 steps; dynamic scans keep the spatial weight they
    # were tuned with (no dynamic development set); docs/spectral_design.md
    "dynamic": {
        "dynamic": True,
        "free": {
            "tv": 0.01,
            "tv_time": 0.5,
            "iterations": 100,
            "prox_iterations": 5,
            "restart_every": 10,
        },
    },
}
_SECTIONS = ("frequency", "operator", "free", "waterfat", "stopping")


def resolve_config(
    preset: str | SpectralConfig = "static", iterations: int | None = None, **overrides
) -> SpectralConfig:
    """The preset's configuration (or ``preset`` itself, a SpectralConfig) with ``overrides``.

    An override is a section name with a dict (``free={"tv": 0.02}``, nested sections as
    nested dicts: ``free={"planes": {"rank": 8}}``), a top-level field, or a field name
    unique to one section (``tv_f=0.1``). ``iterations`` sets the last enabled stage's
    iteration budget. Raises ValueError naming an unknown option, TypeError naming an
    option whose value has the wrong type.
    """
    if isinstance(preset, SpectralConfig):
        cfg = preset
    else:
        check_choice("preset", preset, PRESETS)
        cfg = SpectralConfig(preset=preset)
        for key, value in PRESETS[preset].items():
            cfg = _override(cfg, key, value)
    for key, value in overrides.items():
        cfg = _override(cfg, key, value)
    if iterations is not None:
        if not isinstance(iterations, int) or iterations < 1:
            raise ValueError(f"iterations must be a positive integer, got {iterations!r}")
        stage = "waterfat" if cfg.waterfat.enabled else "free"
        cfg = replace(cfg, **{stage: replace(getattr(cfg, stage), iterations=iterations)})
    if isinstance(cfg.image_time, str):
        check_choice("image_time", cfg.image_time, ("echo", "zero"))
    elif not isinstance(cfg.image_time, int | float) or cfg.image_time != cfg.image_time:
        raise ValueError(f"image_time must be 'echo', 'zero' or seconds, got {cfg.image_time!r}")
    check_choice("encoding", cfg.free.encoding, ENCODINGS)
    check_choice("optimizer", cfg.waterfat.optimizer, OPTIMIZERS)
    return cfg


def option_names() -> set[str]:
    """The names of the top-level fields, the sections and the sections' fields (an
    override by a field name needs the name to be in one section only)."""
    cfg = SpectralConfig()
    inner = {f.name for section in _SECTIONS for f in fields(getattr(cfg, section))}
    return {f.name for f in fields(SpectralConfig)} | inner


#: FreeVolumeConfig's flat names before the encodings had their own sections (deprecated)
_RENAMED_FREE = {
    "plane_rank": ("planes", "rank"),
    "plane_lr": ("planes", "lr"),
    "plane_resolution": ("planes", "resolution"),
    "plane_warm_start": (None, "warm_start"),
    "hash_levels": ("hash_grid", "levels"),
    "hash_log2_table": ("hash_grid", "log2_table"),
    "hash_features": ("hash_grid", "features"),
    "hash_hidden": ("hash_grid", "hidden"),
    "hash_lr": ("hash_grid", "lr"),
}


def _renamed_free(values: dict) -> dict:
    """``values`` of the free section with the deprecated flat names moved to their
    nested places (a DeprecationWarning each)."""
    out = {k: v for k, v in values.items() if k not in _RENAMED_FREE}
    for old in set(values) & set(_RENAMED_FREE):
        section, name = _RENAMED_FREE[old]
        new = f"free.{section}.{name}" if section else f"free.{name}"
        warnings.warn(f"option free.{old} is deprecated; use {new}", DeprecationWarning, 3)
        if section is None:
            out[name] = values[old]
        else:
            out[section] = {**out.get(section, {}), name: values[old]}
    return out


def _override(cfg: SpectralConfig, key: str, value) -> SpectralConfig:
    if key in _RENAMED_FREE:
        return _merge(cfg, {"free": {key: value}}, "spectral")
    if key in {f.name for f in fields(SpectralConfig)}:
        return _merge(cfg, {key: value}, "spectral")
    owners = [s for s in _SECTIONS if key in {f.name for f in fields(getattr(cfg, s))}]
    if not owners:
        raise ValueError(f"unknown spectral option {key!r}; known: {sorted(option_names())}")
    if len(owners) > 1:
        raise ValueError(
            f"spectral option {key!r} is in sections {owners}: give it as "
            f"{owners[0]}={{{key!r}: ...}}"
        )
    return _merge(cfg, {owners[0]: {key: value}}, "spectral")


_TYPES = {"int": int, "float": (int, float), "str": str, "bool": bool, "None": type(None)}


def _merge(section, values: dict, path: str):
    """``section`` (a config dataclass) with ``values``; dicts merge into nested sections."""
    if path == "free":
        values = _renamed_free(values)
    known = {f.name: f for f in fields(section)}
    bad = sorted(set(values) - set(known))
    if bad:
        raise ValueError(f"unknown {path} option(s) {bad}; known: {sorted(known)}")
    changes = {}
    for key, value in values.items():
        current, name = getattr(section, key), f"{path}.{key}" if path != "spectral" else key
        if is_dataclass(current) and isinstance(value, dict):
            changes[key] = _merge(current, value, name)
            continue
        allowed = [_TYPES.get(t.strip(), type(current)) for t in str(known[key].type).split("|")]
        numeric = not isinstance(value, bool) or bool in allowed
        if not (numeric and isinstance(value, tuple(_flatten(allowed)))):
            raise TypeError(f"option {name} must be {known[key].type}, got {value!r}")
        changes[key] = value
    return replace(section, **changes)


def _flatten(types: list) -> list[type]:
    return [t for entry in types for t in (entry if isinstance(entry, tuple) else (entry,))]


def frequency_range(cfg: FrequencyConfig, field_strength_t: float) -> tuple[torch.Tensor, tuple]:
    """Bin frequencies (F,) and the (lo, hi) range the forward model must span."""
    spectrum = fat_spectrum(field_strength_t, cfg.fat_model)
    bins = frequency_bins(spectrum, cfg.n_bins, cfg.margin_hz)
    wide = frequency_bins(spectrum, 2, cfg.margin_hz)
    return bins, (float(wide[0]), float(wide[-1]))
