"""Spectral-volume reconstruction of PROPELLER k-space (arXiv:2311.13177, methods/propeller.md).

One entry point, :func:`reconstruct` (also known as :func:`reconstruct_spectral`): from a
preset name or a resolved :class:`~mrsolve.recon.spectral.config.SpectralConfig`, it
estimates coil maps from the data,
reconstructs a free spectral volume x(r, f) (presets "static" and "dynamic") and, with
the "fatwater" preset, a parametric water / fat / field-map head, and returns a
:class:`~mrsolve.data.results.Reconstruction`. Nothing here looks at ground truth.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import asdict, replace

import torch

from mrsolve.data.results import Reconstruction
from mrsolve.propeller.fat import fat_separation, fat_spectrum, water_fat_signal
from mrsolve.propeller.noise import prewhiten, readout_noise_variance
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import echo_time
from mrsolve.recon.spectral.config import SpectralConfig, frequency_range, resolve_config
from mrsolve.recon.spectral.field_start import echo_field_map
from mrsolve.recon.spectral.problem import build_problem
from mrsolve.recon.spectral.readouts import (
    fat_fraction,
    image_from_volume,
    volume_from_water_fat,
)
from mrsolve.recon.spectral.regularizers import noise_weight
from mrsolve.recon.spectral.runner import Checkpointer, checkpoint_binding, shifted
from mrsolve.recon.spectral.stages.free_volume import run_free_volume
from mrsolve.recon.spectral.stages.water_fat import run_water_fat
from mrsolve.solvers.validation import resolve_device


def reconstruct(
    scan: Scan,
    preset: str | SpectralConfig = "static",
    iterations: int | None = None,
    device: str | torch.device = "cpu",
    seed: int | None = None,
    callback: Callable[..., None] | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    **overrides,
) -> Reconstruction:
    """Reconstruct ``scan`` as a spectral volume and read out image, water, fat and field map.

    Args:
        scan: the acquisition; a noise scan, if present, prewhitens it first.
        preset: "static", "fatwater" (adds the parametric head) or "dynamic" (one volume
            per ``scan.frame``, TV along time; image (T, ny, nx)), or a resolved
            :class:`~mrsolve.recon.spectral.config.SpectralConfig`.
        iterations: iteration budget of the last stage (None: the configuration's).
        device: "cpu", "cuda" or "auto".
        seed: seeds the held-out lines and any random initialisation (None: the
            configuration's, 0 for a preset).
        callback: ``callback(step, total, image=None, loss=...)`` after every iteration,
            ``loss`` the relative data-consistency residual of the training samples.
        checkpoint: file to save the optimizer state to after each segment.
        resume: continue from ``checkpoint``.
        overrides: configuration overrides (see :func:`mrsolve.recon.spectral.config.resolve_config`).

    Returns:
        Reconstruction with image, spectral_volume and frequencies_hz (and water, fat,
        fat_fraction, field_map_hz for "fatwater"), method "spectral", config = the
        resolved configuration with a "report" of each stage.
    """
    if not isinstance(scan, Scan):
        raise TypeError(f"scan must be a mrsolve.propeller.scan.Scan, got {type(scan).__name__}")
    start = time.perf_counter()
    if seed is not None:
        overrides["seed"] = seed
    cfg = resolve_config(preset, iterations, **overrides)
    dev = resolve_device(device)
    whitened = scan.noise is not None
    if whitened:
        scan = replace(scan, kspace=prewhiten(scan.kspace, scan.noise), noise=None)
    # prewhitened samples have unit noise variance; without a noise scan, an upper bound
    raw_noise_var = 1.0 if whitened else readout_noise_variance(scan.kspace)
    # before any work: a bad checkpoint path or a checkpoint of another run fails at once
    binding = None if checkpoint is None else checkpoint_binding(scan, asdict(cfg))
    ckpt = Checkpointer(checkpoint, resume, binding)
    bins, frange = frequency_range(cfg.frequency, scan.field_strength_t)
    image_time = _image_time(cfg.image_time, scan)
    problem = build_problem(
        scan, frange, cfg.operator, per_frame=cfg.dynamic, seed=cfg.seed, device=dev
    )
    stages = [s for s in ("free", "waterfat") if getattr(cfg, s).enabled]
    if not stages:
        raise ValueError("at least one stage (free or waterfat) must be enabled, got none")
    totals = [cfg.free.iterations if s == "free" else cfg.waterfat.total_iterations for s in stages]
    report = {
        "temporal_rank": problem.basis.rank,
        "scale": problem.scale,
        "coils": scan.kspace.shape[0],
        "virtual_coils": problem.coil_maps.shape[0],
        "noise_source": "noise scan" if whitened else "readout edges (upper bound)",
    }
    noise_std = problem.image_noise_std(raw_noise_var * problem.scale**2)
    out = {}
    spectrum = fat_spectrum(scan.field_strength_t, cfg.frequency.fat_model)
    if cfg.free.enabled:
        volume, report["free"] = run_free_volume(
            problem,
            bins.to(dev),
            cfg.free,
            cfg.stopping,
            dynamic=cfg.dynamic,
            seed=cfg.seed,
            callback=shifted(callback, 0, sum(totals)),
            checkpointer=ckpt,
            noise_std=noise_std,
        )
        out["spectral_volume"] = volume.cpu()
        out["frequencies_hz"] = bins.float()
        out["image"] = image_from_volume(volume, bins.to(dev), image_time).cpu()
    if cfg.waterfat.enabled:
        offset = totals[0] if len(totals) > 1 else 0
        waterfat = replace(
            cfg.waterfat, tv=noise_weight(cfg.waterfat.tv, cfg.waterfat.tv_noise, noise_std)
        )
        cycles, shift = fat_separation(scan.times, scan.center_sample, scan.echo, spectrum)
        echo_resolved = cycles >= cfg.waterfat.min_echo_cycles
        from_echoes = cfg.waterfat.echo_start
        start_field_map = None
        # the echoes' phase fixes the field map where water dominates even when their
        # spread is too short to separate fat (the resolvable flag): every multi-echo scan
        if from_echoes.enabled and len(scan.sampled_echoes) > 1:
            start_field_map = echo_field_map(
                scan, spectrum, cfg.waterfat.max_abs_hz, from_echoes.step_hz, from_echoes.sigma
            )
        maps, report["waterfat"] = run_water_fat(
            problem,
            spectrum,
            waterfat,
            cfg.stopping,
            callback=shifted(callback, offset, sum(totals)),
            checkpointer=ckpt,
            # prewhitened samples have unit noise variance before the problem's scaling
            noise_var=problem.scale**2 if whitened else None,
            echo_resolved=echo_resolved,
            start_field_map=start_field_map,
        )
        report["waterfat"]["field_start"] = "echoes" if start_field_map is not None else "zero"
        report["waterfat"] |= {"noise_std": noise_std, "tv": waterfat.tv}
        report["waterfat"]["fat_separation"] = {
            "echo_cycles": cycles,
            "readout_shift_px": shift,
            "resolvable": echo_resolved or shift >= cfg.waterfat.min_readout_shift_px,
        }
        out["water"], out["fat"] = maps["water"].cpu(), maps["fat"].cpu()
        for name in ("fat_fraction_std", "field_map_std_hz"):
            if name in maps:
                out[name] = maps[name].float().cpu()
        out["field_map_hz"] = maps["field_map_hz"].float().cpu()
        out["fat_fraction"] = fat_fraction(out["water"], out["fat"])
        out["image"] = water_fat_signal(
            out["water"], out["fat"], out["field_map_hz"], spectrum, image_time
        )
        if "spectral_volume" not in out:
            out["spectral_volume"] = volume_from_water_fat(
                out["water"], out["fat"], out["field_map_hz"], spectrum, bins
            )
            out["frequencies_hz"] = bins.float()
    config = {**asdict(cfg), "report": report}
    return Reconstruction(
        **out,
        image_time_s=image_time,
        method="spectral",
        config=config,
        runtime_s=time.perf_counter() - start,
        device=str(dev),
    )


#: the name the CLI, the GUI and the benchmarks know the pipeline by
reconstruct_spectral = reconstruct


def _image_time(rule: str | float, scan: Scan) -> float:
    """Seconds at which the image is read out (``SpectralConfig.image_time``)."""
    if rule == "zero":
        return 0.0
    if rule == "echo":
        return echo_time(scan.times, scan.center_sample, scan.echo)
    return float(rule)
