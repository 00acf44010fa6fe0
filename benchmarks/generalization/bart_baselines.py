"""BART baselines of the generalization benchmark, through bartorch 0.0.17 running BART's C code.

bartorch by default swaps BART's gridder for FINUFFT and answers ``pics`` with a Python
re-implementation; here its command dispatcher runs BART's own ``ecalib`` and ``pics``
with the FINUFFT substitution switched off (``use_in_tools(False)``). Non-Cartesian
FISTA needs ``pics -e`` (step from the largest eigenvalue). Trajectories are in cycles
per FOV, BART's grid units, with (kx, ky) pairing with the image's (column, row) as ours
(checked on a point: same position).

- :func:`espirit_maps`: ESPIRiT maps (``ecalib -m 1``) from a Cartesian calibration
  region (24 x 24, at most N / 2): all blades gridded with our analytic density
  compensation, FFT'd and cropped to the centre, where the blades overlap densely.
  (The central block alone, |k_pe| <= L / 2, is too small for ESPIRiT's 6 x 6 kernel
  when L = 8: every map came back zero.)
- :func:`pics`: ``pics -e`` with l1-wavelet (``-R W:3:0:lambda``) or total variation
  (``-R T:3:0:lambda``), ESPIRiT maps, BART's automatic data scaling.

Blade corners reach |k| = N / sqrt(2) > N / 2: BART's gridder wraps them periodically
without an error, so the samples outside the [-N/2, N/2) square are dropped.
"""

from __future__ import annotations

import numpy as np
import torch
from bartorch import _finufft
from bartorch._dispatch import dispatch
from bartorch.tools import ecalib

from mrsolve.propeller.density import density_compensation
from mrsolve.propeller.gridding import grid_coil_images
from mrsolve.propeller.nufft import NUFFT
from mrsolve.propeller.scan import Scan

REGULARIZERS = {"l1-wavelet": "W", "tv": "T"}
CALIBRATION = 24  # BART's default calibration size, capped by the blade width


def bart_c_code() -> None:
    """Run BART's own gridder (not FINUFFT) inside its tools."""
    _finufft.use_in_tools(False)


def espirit_maps(scan: Scan) -> torch.Tensor:
    """(C, N, N) ESPIRiT sensitivities from a gridded Cartesian calibration region."""
    bart_c_code()
    n = scan.image_shape[0]
    weights = density_compensation(scan.traj, scan.image_shape, "analytic")
    images = grid_coil_images(scan.kspace, scan.traj, scan.image_shape, weights, NUFFT)
    kspace = torch.fft.fftshift(
        torch.fft.fft2(torch.fft.ifftshift(images, dim=(-2, -1))), dim=(-2, -1)
    )
    cal = int(min(CALIBRATION, n // 2))
    keep = torch.zeros(n, n, dtype=torch.bool)
    lo = n // 2 - cal // 2
    keep[lo : lo + cal, lo : lo + cal] = True
    maps = ecalib(kspace * keep, maps=1, calib_size=cal)
    return maps.reshape(scan.n_coils, n, n).to(torch.complex64)


def pics(
    scan: Scan, maps: torch.Tensor, regularizer: str, weight: float, iterations: int = 100
) -> np.ndarray:
    """(N, N) image of ``pics -e`` with one regularizer at ``weight``."""
    bart_c_code()
    n = scan.image_shape[0]
    traj = scan.traj.reshape(-1, scan.n_readout, 2)  # (spokes, samples, 2)
    inside = (traj >= -n / 2).all(-1) & (traj < n / 2).all(-1)
    kspace = scan.kspace.reshape(scan.n_coils, -1, scan.n_readout) * inside
    traj3 = torch.cat([traj, torch.zeros_like(traj[..., :1])], -1).contiguous()
    reg = f"{REGULARIZERS[regularizer]}:3:0:{weight}"
    image = dispatch(
        "pics",
        [kspace[..., None].contiguous(), maps[:, None].contiguous()],
        None,
        t=traj3,
        R=reg,
        e=True,
        i=iterations,
        S=True,
    )
    return image.reshape(n, n).numpy()
