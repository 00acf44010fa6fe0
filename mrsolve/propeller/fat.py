"""Fat spectra at any field strength (methods/propeller.md, "Fat (constants)").

Frequencies are offsets from water in Hz: f_p = gamma * B0 * (ppm_p - 4.7) * 1e-6 with
gamma / 2 pi = 42.577 MHz/T; amplitudes are relative and sum to 1. The fat signal at
time t (seconds) is sum_p a_p exp(i 2 pi f_p t), the same sign convention as the
signal model of ``mrsolve.data.simulate``.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from mrsolve.solvers.validation import check_choice, check_positive

GYROMAGNETIC_HZ_PER_T = 42.577e6
WATER_PPM = 4.7
SINGLE_PEAK_PPM = -3.4  # main (methylene) fat peak relative to water
SIX_PEAK_PPM = (5.3, 4.31, 2.76, 2.1, 1.3, 0.9)  # absolute, water at 4.7 ppm
SIX_PEAK_AMPLITUDES = (0.048, 0.039, 0.004, 0.128, 0.693, 0.087)
FAT_MODELS = ("single_peak", "six_peak")


class FatSpectrum(NamedTuple):
    """Fat peaks: ``frequencies_hz`` (P,) offsets from water, ``amplitudes`` (P,) summing to 1."""

    frequencies_hz: torch.Tensor
    amplitudes: torch.Tensor


def ppm_to_hz(ppm_offset: float, field_strength_t: float) -> float:
    """Offset in Hz of a chemical shift ``ppm_offset`` (relative to water) at B0 in tesla."""
    return (
        GYROMAGNETIC_HZ_PER_T
        * check_positive("field_strength_t", field_strength_t)
        * (ppm_offset * 1e-6)
    )


def fat_spectrum(field_strength_t: float = 3.0, model: str = "six_peak") -> FatSpectrum:
    """Fat peaks (float32 tensors) at ``field_strength_t`` tesla.

    Args:
        field_strength_t: B0 in tesla (> 0).
        model: "six_peak" (Hamilton-like six peaks) or "single_peak" (-3.4 ppm only).
    """
    check_choice("model", model, FAT_MODELS)
    if model == "single_peak":
        ppm, amps = [SINGLE_PEAK_PPM], [1.0]
    else:
        ppm, amps = [p - WATER_PPM for p in SIX_PEAK_PPM], list(SIX_PEAK_AMPLITUDES)
    freqs = torch.tensor([ppm_to_hz(p, field_strength_t) for p in ppm], dtype=torch.float64)
    a = torch.tensor(amps, dtype=torch.float64)
    return FatSpectrum(freqs.float(), (a / a.sum()).float())


def fat_signal(times_s: torch.Tensor, spectrum: FatSpectrum) -> torch.Tensor:
    """Complex fat signal sum_p a_p exp(i 2 pi f_p t) at ``times_s`` (any shape), complex64."""
    t = torch.as_tensor(times_s).to(torch.float64)
    f = spectrum.frequencies_hz.to(device=t.device, dtype=torch.float64)
    a = spectrum.amplitudes.to(device=t.device, dtype=torch.float64)
    phase = 2 * math.pi * t[..., None] * f
    return (torch.polar(a.expand_as(phase), phase)).sum(-1).to(torch.complex64)


def water_fat_signal(
    water: torch.Tensor,
    fat: torch.Tensor,
    field_map_hz: torch.Tensor,
    spectrum: FatSpectrum,
    time_s: float = 0.0,
) -> torch.Tensor:
    """Transverse magnetization at time ``time_s`` (s) of water, fat and a field map (Hz),
    all of one shape: (rho_w + rho_f sum_p a_p e^{i 2 pi f_p t}) e^{i 2 pi psi t}."""
    if time_s == 0:
        return water + fat
    fat_t = fat_signal(torch.tensor(float(time_s)), spectrum).to(water.device)
    phase = 2 * math.pi * float(time_s) * field_map_hz.double()
    rotation = torch.polar(torch.ones_like(phase), phase).to(water.dtype)
    return (water + fat * fat_t) * rotation


def fat_separation(
    times_s: torch.Tensor,
    center_sample: int,
    echo: torch.Tensor | None,
    spectrum: FatSpectrum,
) -> tuple[float, float]:
    """What the sampling gives to tell fat from an offset of the field map: (cycles, px).

    ``cycles``: how far the fat's mean offset f_bar = sum_p a_p f_p turns between the
    k-space centres of the first and the last echo, |f_bar| (TE_last - TE_first) (0 for
    one echo); ``px``: how far fat moves along one readout, |f_bar| M dt pixels (M dt the
    readout's duration). Low spatial frequencies are sampled only near each echo, so the
    echoes' spread is what separates fat by its phase in every pixel; a single echo
    separates it only by the blur of fine detail along each blade.
    """
    if times_s.ndim != 3:
        raise ValueError(f"times_s must have shape (B, L, M), got {tuple(times_s.shape)}")
    mean_hz = abs(float((spectrum.amplitudes * spectrum.frequencies_hz).sum()))
    centres = times_s[..., center_sample]
    echo = torch.zeros(times_s.shape[0], dtype=torch.int64) if echo is None else echo.cpu()
    te = [float(centres[echo.to(centres.device) == e].median()) for e in echo.unique().tolist()]
    duration = float((times_s[..., -1] - times_s[..., 0]).abs().median())
    return mean_hz * (max(te) - min(te)), mean_hz * duration
