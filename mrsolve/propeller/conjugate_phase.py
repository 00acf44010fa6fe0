"""Off-resonance correction with a known field map: time segmentation and conjugate phase.

Signal model (one sign convention for the whole project, methods/propeller.md):
y_j = sum_r x(r) e^{i 2 pi psi(r) t_j} e^{-i 2 pi k_j . r / N}, psi in Hz, t_j in s.

Time segmentation (Sutton, Noll and Fessler, IEEE TMI 2003) approximates the
off-resonance phase by L segment times tau_l and temporal interpolators a_l(t):
e^{i 2 pi psi t} ~ sum_l a_l(t) e^{i 2 pi psi tau_l}, so that

    y = sum_l a_l(t) * A( e^{i 2 pi psi tau_l} * x )

costs L NUFFTs instead of one exponential per sample and pixel. Interpolators:

- "least-squares": a(t) minimizes sum_r |e^{i 2 pi psi(r) t} - sum_l a_l e^{i 2 pi psi(r) tau_l}|^2
  over the field map's histogram (Fessler et al., IEEE TSP 2005);
- "hanning": raised-cosine weights between neighbouring segment times.

The conjugate-phase image is the density-compensated adjoint, x = E^H (w * y) / (ny nx),
optionally refined by a few conjugate-gradient iterations on the weighted normal
equations E^H W E x = E^H W y (with coil maps).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from mrsolve.propeller.density import OperatorFactory, density_compensation
from mrsolve.propeller.gridding import Callback, combine, report_progress, resolve_coil_maps
from mrsolve.propeller.nufft import NUFFT
from mrsolve.propeller.scan import Scan
from mrsolve.solvers.alg import cg
from mrsolve.solvers.linop import Compose, Linop, Multiply
from mrsolve.solvers.validation import check_choice, check_finite, check_shape, resolve_device

INTERPOLATORS = ("least-squares", "hanning")


def default_segments(field_map_hz: torch.Tensor, times_s: torch.Tensor) -> int:
    """Segments L for ~1e-3 model error: the field map's range times the readout
    duration (cycles of relative phase) plus 4, at least 2."""
    span = float(field_map_hz.max() - field_map_hz.min()) * float(times_s.max() - times_s.min())
    return max(2, math.ceil(span) + 4)


def segment_times(times_s: torch.Tensor, n_segments: int) -> torch.Tensor:
    """Segment times tau (L,) float64, evenly spaced from min(t) to max(t)."""
    if not isinstance(n_segments, int) or n_segments < 1:
        raise ValueError(f"n_segments must be a positive integer, got {n_segments!r}")
    t0, t1 = float(times_s.min()), float(times_s.max())
    if n_segments == 1:
        return torch.tensor([(t0 + t1) / 2], dtype=torch.float64, device=times_s.device)
    return torch.linspace(t0, t1, n_segments, dtype=torch.float64, device=times_s.device)


def _hanning(t: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
    if tau.numel() == 1:
        return torch.ones(t.numel(), 1, dtype=torch.float64, device=t.device)
    spacing = float(tau[1] - tau[0])
    x = (t[:, None] - tau[None, :]) / spacing
    return torch.where(x.abs() < 1, 0.5 * (1 + torch.cos(math.pi * x)), 0.0)


def _least_squares(
    t: torch.Tensor, tau: torch.Tensor, field_map_hz: torch.Tensor, n_bins: int = 101
) -> torch.Tensor:
    # the least-squares fit only needs the distribution of psi: a histogram keeps it cheap
    psi = field_map_hz.reshape(-1).double()
    lo, hi = float(psi.min()), float(psi.max())
    if hi - lo < 1e-9:
        freq, weight = psi[:1], torch.ones(1, dtype=torch.float64, device=psi.device)
    else:
        weight = torch.histc(psi, bins=n_bins, min=lo, max=hi)
        freq = torch.linspace(lo, hi, n_bins + 1, dtype=torch.float64, device=psi.device)
        freq = (freq[1:] + freq[:-1]) / 2
        freq, weight = freq[weight > 0], weight[weight > 0]

    def phase(times):  # (K, T)
        p = 2 * math.pi * freq[:, None] * times[None, :]
        return torch.polar(torch.ones_like(p), p)

    basis = phase(tau)  # (K, L)
    gram = basis.mH @ (weight[:, None] * basis)
    rhs = basis.mH @ (weight[:, None] * phase(t))  # (L, T)
    # rcond: segment phases are nearly collinear when psi * (tau_l - tau_m) is small
    return torch.linalg.lstsq(gram, rhs, rcond=1e-10, driver="gelsd").solution.T


def time_interpolators(
    times_s: torch.Tensor,
    field_map_hz: torch.Tensor,
    tau: torch.Tensor,
    kind: str = "least-squares",
) -> torch.Tensor:
    """Interpolators a (L, *times.shape) complex64 with e^{i2pi psi t} ~ sum_l a_l(t) e^{i2pi psi tau_l}."""
    check_choice("interpolator", kind, INTERPOLATORS)
    unique, inverse = torch.unique(times_s.double(), return_inverse=True)
    if kind == "hanning":
        coef = _hanning(unique, tau).to(torch.complex128)
    else:
        coef = _least_squares(unique, tau, field_map_hz)
    return coef[inverse].movedim(-1, 0).to(torch.complex64)


class TimeSegmented(Linop):
    """Off-resonance forward model y = sum_l a_l(t) * A(e^{i 2 pi psi tau_l} * x).

    Args:
        op: A, a Linop from images (*batch, ny, nx) to samples (*batch, *S) (NUFFT/DFT).
        field_map_hz: psi (ny, nx) in Hz.
        times_s: sample times (*S) in seconds.
        n_segments: L; default :func:`default_segments`.
        interpolator: "least-squares" or "hanning".
    """

    def __init__(
        self,
        op: Linop,
        field_map_hz: torch.Tensor,
        times_s: torch.Tensor,
        n_segments: int | None = None,
        interpolator: str = "least-squares",
    ) -> None:
        if not isinstance(op, Linop):
            raise TypeError(f"op must be a Linop, got {type(op).__name__}")
        image_shape = tuple(op.ishape[-2:])
        batch = op.ishape[:-2]
        check_shape("field_map_hz", field_map_hz, image_shape)
        check_finite("field_map_hz", field_map_hz)
        check_shape("times_s", times_s, op.oshape[len(batch) :])
        check_finite("times_s", times_s)
        super().__init__(op.ishape, op.oshape, op.dtype, op.device)
        self.op = op
        times = times_s.to(op.device)
        psi = field_map_hz.to(op.device).double()
        if n_segments is None:
            n_segments = default_segments(psi, times)
        self.tau = segment_times(times, n_segments)
        self.interp = time_interpolators(times, psi, self.tau, interpolator)  # (L, *S)
        phase = 2 * math.pi * psi[None] * self.tau[:, None, None]
        self.segment_phase = torch.polar(torch.ones_like(phase), phase).to(torch.complex64)

    @property
    def n_segments(self) -> int:
        return self.tau.numel()

    def _apply(self, x):
        out = torch.zeros(self.oshape, dtype=torch.complex64, device=x.device)
        for a, b in zip(self.interp, self.segment_phase, strict=True):
            out = out + a * self.op(x * b)
        return out

    def _adjoint(self):
        return _TimeSegmentedAdjoint(self)


class _TimeSegmentedAdjoint(Linop):
    def __init__(self, fwd: TimeSegmented) -> None:
        super().__init__(fwd.oshape, fwd.ishape, fwd.dtype, fwd.device)
        self.fwd = fwd

    def _apply(self, y):
        out = torch.zeros(self.oshape, dtype=torch.complex64, device=y.device)
        for a, b in zip(self.fwd.interp, self.fwd.segment_phase, strict=True):
            out = out + b.conj() * self.fwd.op.H(a.conj() * y)
        return out

    def _adjoint(self):
        return self.fwd


def conjugate_phase(
    scan: Scan,
    field_map_hz: torch.Tensor,
    n_segments: int | None = None,
    interpolator: str = "least-squares",
    dcf: str | torch.Tensor = "analytic",
    coil_maps: torch.Tensor | str | None = "espirit",
    n_cg: int = 0,
    operator: OperatorFactory = NUFFT,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
) -> torch.Tensor:
    """Conjugate-phase (time-segmented) reconstruction (ny, nx) complex64 given a field map.

    Args:
        scan: the acquisition; ``scan.times`` are the sample times t_j.
        field_map_hz: psi (ny, nx) in Hz (torch or numpy).
        n_segments, interpolator: time segmentation (see :class:`TimeSegmented`).
        dcf: "analytic", "pipe-menon" or weights (B, L, M).
        coil_maps: (C, ny, nx), "espirit"/"walsh" (estimated), or None (RSS).
        n_cg: conjugate-gradient iterations on E^H W E x = E^H W y started from the
            conjugate-phase image (needs coil maps); 0 returns the conjugate-phase image.
        operator: NUFFT (default) or DFT factory.
        device: "cpu", "cuda" or "auto".
        callback: ``callback(step, total, image)``; total = 2 + n_cg.
    """
    if not isinstance(scan, Scan):
        raise TypeError(f"scan must be a mrsolve.propeller.scan.Scan, got {type(scan).__name__}")
    if isinstance(field_map_hz, np.ndarray):
        field_map_hz = torch.as_tensor(field_map_hz, dtype=torch.float32)
    if not isinstance(field_map_hz, torch.Tensor) or field_map_hz.is_complex():
        raise TypeError(
            f"field_map_hz must be a real torch.Tensor or numpy array, got {type(field_map_hz).__name__}"
        )
    if not isinstance(n_cg, int) or n_cg < 0:
        raise ValueError(f"n_cg must be a non-negative integer, got {n_cg!r}")
    dev = resolve_device(device)
    scan = scan.to(dev)
    ny, nx = scan.image_shape
    check_shape("field_map_hz", field_map_hz, (ny, nx))
    maps = resolve_coil_maps(scan, coil_maps, operator)
    if n_cg > 0 and maps is None:
        raise ValueError(
            "coil_maps must be given (maps or 'walsh'/'espirit') when n_cg > 0, got None"
        )
    total = 2 + n_cg
    weights = density_compensation(scan.traj, (ny, nx), dcf, operator=operator, device=dev)
    op = operator(scan.traj, (ny, nx), batch_shape=(scan.n_coils,))
    model = TimeSegmented(op, field_map_hz.to(dev), scan.times, n_segments, interpolator)
    report_progress(callback, 1, total, None)
    coil_images = model.H(weights * scan.kspace) / (ny * nx)
    image = combine(coil_images, maps)
    report_progress(callback, 2, total, image)
    if n_cg == 0:
        return image
    encode = Compose([model, Multiply((ny, nx), maps)])
    scale = 1.0 / (ny * nx)

    def normal(x):
        return encode.H(weights * encode(x)) * scale

    rhs = encode.H(weights * scan.kspace) * scale
    image, _ = cg(
        normal,
        rhs,
        x0=image,
        max_iter=n_cg,
        tol=0.0,
        callback=None if callback is None else lambda k, x: callback(3 + k, total, x),
    )
    return image
