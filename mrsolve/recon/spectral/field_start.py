"""A global start for the field map of multi-echo scans (issue 18, part 3).

Local descent from a zero field map falls into the wrong basin when the field is large
next to the fat shift (a fat / water swap, or a broad offset traded for fat). On a scan
with blades of two or more echoes, each echo's blades alone give a gridded image at that
echo's k-space centre time TE_e, and the echoes' images hold every pixel's time course at
the TEs, which no single readout does; their phase fixes the field map where water
dominates even when their spread is too short to separate fat
(``propeller.fat.fat_separation``). Per pixel and per candidate
field map psi, the variable-projection residual of the common-phase water / fat model

    s_e = rho (1 - eta + eta c(TE_e)) e^{i 2 pi psi TE_e},  rho complex, eta in [0, 1]

(c the fat spectrum's signal) scores psi; the residuals are summed over a Gaussian
neighbourhood before the choice, so a region picks the psi that fits all of its pixels
(the smooth-field prior, without a graph cut), and the argmin is the start. Readout blur
is left out here; the water / fat stage models it exactly from this start.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from mrsolve.propeller.fat import FatSpectrum, fat_signal
from mrsolve.propeller.gridding import gridding, low_resolution_maps
from mrsolve.propeller.scan import Scan
from mrsolve.solvers.validation import check_positive


@dataclass
class EchoStartConfig:
    """The water / fat stage's field-map start on multi-echo scans (:func:`echo_field_map`):
    candidates every ``step_hz``, residuals summed over a Gaussian of width ``sigma`` (a
    share of the image width; chosen on the multi-echo development set,
    docs/spectral_design.md)."""

    enabled: bool = True
    step_hz: float = 5.0
    sigma: float = 0.02


def echo_images(scan: Scan) -> tuple[torch.Tensor, torch.Tensor]:
    """Gridded image of each echo present (E, ny, nx) complex64, combined with one set of Walsh
    maps so that the phase between echoes is kept, and each echo's k-space centre time
    (E,) float64 in seconds."""
    maps = low_resolution_maps(scan, "walsh")
    images, times = [], []
    for e in scan.sampled_echoes:
        sub = scan.select_blades(scan.echo == e)
        images.append(gridding(sub, coil_maps=maps, device=scan.kspace.device))
        times.append(float(sub.times[..., scan.center_sample].double().median()))
    return torch.stack(images), torch.tensor(times, dtype=torch.float64)


def echo_costs(
    images: torch.Tensor,
    times_s: torch.Tensor,
    spectrum: FatSpectrum,
    candidates_hz: torch.Tensor,
    n_shares: int = 21,
) -> torch.Tensor:
    """(K, ny, nx) residual sum of squares of the common-phase model (module doc) at each
    candidate field map, minimized over rho and over ``n_shares`` fat shares in [0, 1].

    Args:
        images: (E, ny, nx) complex echo images.
        times_s: (E,) their times in seconds.
        spectrum: fat peaks.
        candidates_hz: (K,) field maps to score.
    """
    dev = images.device
    t = times_s.to(dev, torch.float64)
    c = fat_signal(t, spectrum).to(dev, torch.complex128)  # (E,)
    eta = torch.linspace(0.0, 1.0, n_shares, dtype=torch.float64, device=dev)
    g = (1 - eta)[:, None] + eta[:, None] * c  # (S, E) unit-density signals
    g = g / g.norm(dim=1, keepdim=True)
    s = images.to(torch.complex128).flatten(1)  # (E, P)
    energy = s.abs().square().sum(0)  # (P,)
    costs = []
    for psi in candidates_hz.to(dev, torch.float64):
        demod = s * torch.polar(torch.ones_like(t), -2 * math.pi * psi * t)[:, None]
        fit = (g.conj() @ demod).abs().square()  # (S, P): energy each share explains
        costs.append(energy - fit.max(0).values)
    return torch.stack(costs).clamp_min(0).reshape(-1, *images.shape[1:]).float()


def gaussian_blur(x: torch.Tensor, sigma_px: float) -> torch.Tensor:
    """Separable Gaussian blur of (..., ny, nx) real ``x`` (zero padding; sigma 0: x)."""
    if sigma_px == 0:
        return x
    radius = max(1, math.ceil(3 * sigma_px))
    r = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (r / sigma_px) ** 2)
    k = k / k.sum()
    shape = x.shape
    y = x.reshape(-1, 1, *shape[-2:])
    y = torch.nn.functional.conv2d(y, k.view(1, 1, -1, 1), padding=(radius, 0))
    y = torch.nn.functional.conv2d(y, k.view(1, 1, 1, -1), padding=(0, radius))
    return y.reshape(shape)


def echo_field_map(
    scan: Scan,
    spectrum: FatSpectrum,
    max_abs_hz: float,
    step_hz: float = 5.0,
    sigma: float = 0.02,
) -> torch.Tensor:
    """Start field map (ny, nx) in Hz of a multi-echo ``scan`` (module doc).

    Args:
        scan: the acquisition, with blades of at least two echoes.
        spectrum: fat peaks.
        max_abs_hz: candidates span [-max_abs_hz, max_abs_hz] ...
        step_hz: ... every ``step_hz``.
        sigma: the neighbourhood's Gaussian width as a share of the image width.
    """
    n_echoes = len(scan.sampled_echoes)
    if n_echoes < 2:
        raise ValueError(f"scan must have blades of at least 2 echoes, got {n_echoes}")
    check_positive("step_hz", step_hz)
    check_positive("sigma", sigma, allow_zero=True)
    images, times = echo_images(scan)
    n = math.floor(max_abs_hz / step_hz)
    candidates = step_hz * torch.arange(-n, n + 1, dtype=torch.float64)
    costs = gaussian_blur(
        echo_costs(images, times, spectrum, candidates), sigma * max(scan.image_shape)
    )
    return candidates.to(costs.device)[costs.argmin(0)].float()
