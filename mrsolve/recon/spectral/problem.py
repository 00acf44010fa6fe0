"""The data side of a spectral reconstruction: from a Scan to a quadratic data term.

:func:`build_problem` estimates coil maps from the data, weights samples by density
compensation, holds out a seeded random subset of k-space lines for the stopping rule,
optionally compresses the coils to the virtual coils that carry most of the data's
energy (:mod:`mrsolve.propeller.coil_compression`), builds the temporal basis and, per
frame, the Toeplitz normal operator N = A^H W A and b = A^H W y of
:mod:`mrsolve.recon.spectral.operator`. The data are scaled so that the gridding image has its
99th magnitude percentile at 1 (regularization weights are in those units); read-outs
divide the scale back out.

Data term per frame: f(z) = 1/2 Re<z, N z> - Re<z, b> + 1/2 y^H W y = 1/2 ||W^1/2 (A z - y)||^2.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from mrsolve.propeller.coil_compression import apply_coil_compression, coil_compression_matrix
from mrsolve.propeller.density import density_compensation
from mrsolve.propeller.gridding import low_resolution_maps
from mrsolve.propeller.scan import Scan
from mrsolve.recon.spectral.operator import (
    SpectralEncoding,
    SpectralNormal,
    TemporalBasis,
    temporal_basis,
)
from mrsolve.solvers.validation import check_positive, check_shape, check_share, make_generator


@dataclass
class OperatorConfig:
    """Forward model options of :func:`build_problem`."""

    tol: float = 1e-6  # temporal basis truncation (relative singular value)
    max_error: float | None = 8e-5  # a-priori bound on the per-sample model error; None: tol
    dcf: str = "analytic"  # density compensation method of propeller.density
    # "walsh" or "espirit", estimated from the data; Walsh inside the forward model because
    # ESPIRiT's crop removes pixels from it (docs/coil_maps_design.md)
    coil_maps: str = "walsh"
    coil_energy: float = 0.999  # share of k-space energy the virtual coils keep; 1: all coils
    holdout_fraction: float = 0.05  # share of k-space lines kept out of the data term
    frequency_step_hz: float = 5.0  # spacing of the frequency grid the basis is built from


@dataclass
class FrameData:
    """Data term and held-out lines of one frame (z has shape (L, ny, nx)).

    The held-out residual ||A_h z - y_h||^2 is kept in the same quadratic form,
    z^H N_h z - 2 Re z^H b_h + ||y_h||^2 with N_h = A_h^H A_h a Toeplitz normal operator:
    its quadratic form needs the forward FFTs only (~0.7 of a normal application), instead
    of L C forward NUFFTs per check.
    """

    normal: SpectralNormal
    b: torch.Tensor
    energy: torch.Tensor  # y^H W y of the training samples
    moments: torch.Tensor  # (2, L, L) float64 zero-lag blocks, see weight_moments
    heldout: SpectralNormal | None
    heldout_b: torch.Tensor | None  # A_h^H y_h
    heldout_energy: torch.Tensor | None  # ||y_h||^2
    heldout_samples: int = 0  # complex samples (coils included) on the held-out lines


@dataclass
class SpectralProblem:
    """Everything the optimizers need; ``frames`` has one entry per time frame."""

    basis: TemporalBasis
    coil_maps: torch.Tensor
    frames: list[FrameData]
    scale: float
    image_shape: tuple[int, int]
    device: torch.device

    def data_loss(self, z: torch.Tensor) -> torch.Tensor:
        """Sum over frames of f(z_t) (differentiable; z (L, ny, nx) or (T, L, ny, nx))."""
        zs = z if z.ndim == 4 else z[None]
        return sum(_quadratic(zt, fr) for zt, fr in zip(zs, self.frames, strict=True))

    def heldout_loss(self, z: torch.Tensor) -> float:
        """||A_h z - y_h||^2 / ||y_h||^2 over the held-out lines of all frames (nan if none)."""
        zs = z if z.ndim == 4 else z[None]
        num = den = 0.0
        with torch.no_grad():
            for zt, fr in zip(zs, self.frames, strict=True):
                if fr.heldout is None:
                    continue
                z64 = zt.flatten().to(torch.complex128)
                cross = torch.vdot(z64, fr.heldout_b.flatten().to(torch.complex128)).real
                quad = fr.heldout.quadratic(zt)
                num += max(quad - 2 * float(cross) + float(fr.heldout_energy), 0.0)
                den += float(fr.heldout_energy)
        return num / den if den > 0 else math.nan

    def heldout_noise_var(self, z: torch.Tensor) -> float:
        """||A_h z - y_h||^2 per held-out complex sample (scaled units): the noise variance
        plus the model error at ``z`` (nan without held-out lines)."""
        count = sum(fr.heldout_samples for fr in self.frames)
        energy = sum(float(fr.heldout_energy) for fr in self.frames if fr.heldout_samples)
        return self.heldout_loss(z) * energy / count if count else math.nan

    def image_noise_std(self, noise_var: float) -> float:
        """Std of the noise in the gridding image (scaled units; a pixel of unit coil
        energy) for k-space noise of variance ``noise_var`` per complex sample (scaled
        units): sqrt(noise_var 1^T M_2 1) with M_2 the frame's sum_j w_j^2 U_j^H U_j and
        1 the basis coefficients of f = 0 (:func:`weight_moments`); frames averaged."""
        check_positive("noise_var", noise_var, allow_zero=True)
        ones = self.basis.u.sum(0).to(torch.complex128)
        per_frame = [
            float((ones.conj() @ fr.moments[1].to(ones.dtype) @ ones).real) for fr in self.frames
        ]
        return math.sqrt(noise_var * sum(per_frame) / len(per_frame))

    def relative_residual(self, loss: float) -> float:
        """sqrt(2 f / y^H W y): the training data-consistency loss in relative units."""
        energy = sum(float(fr.energy) for fr in self.frames)
        return math.sqrt(max(2 * float(loss), 0.0) / energy) if energy > 0 else math.nan


class _Quadratic(torch.autograd.Function):
    """f(z) = 1/2 Re<z, N z> - Re<z, b> + c with the gradient N z - b (one N per pass).

    The inner products are accumulated in complex128: the terms cancel to a residual far
    smaller than each of them, and in complex64 the rounding of f hides the decreases a
    line search has to see near the optimum (docs/spectral_design.md).
    """

    @staticmethod
    def forward(ctx, z, normal, b, c):
        nz = normal(z.detach())
        ctx.save_for_backward(nz - b)
        z64 = z.detach().flatten().to(torch.complex128)
        quad = torch.vdot(z64, nz.flatten().to(torch.complex128)).real
        cross = torch.vdot(z64, b.flatten().to(torch.complex128)).real
        return (0.5 * quad - cross + c.double()).float()

    @staticmethod
    def backward(ctx, grad):
        (g,) = ctx.saved_tensors
        return grad * g, None, None, None


def _quadratic(z: torch.Tensor, frame: FrameData) -> torch.Tensor:
    return _Quadratic.apply(z, frame.normal, frame.b, 0.5 * frame.energy)


def heldout_lines(
    n_blades: int, n_lines: int, fraction: float, seed: int | torch.Generator
) -> torch.Tensor:
    """(B, L) bool mask of held-out lines: round(fraction * B * L) lines drawn with ``seed``."""
    if not 0 <= fraction < 0.5:
        raise ValueError(f"holdout_fraction must be in [0, 0.5), got {fraction!r}")
    total = n_blades * n_lines
    count = round(fraction * total)
    gen = make_generator(seed)
    mask = torch.zeros(total, dtype=torch.bool)
    mask[torch.randperm(total, generator=gen)[:count]] = True
    return mask.reshape(n_blades, n_lines)


def build_problem(
    scan: Scan,
    frequency_range_hz: tuple[float, float],
    operator: OperatorConfig | None = None,
    *,
    maps: torch.Tensor | None = None,
    per_frame: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> SpectralProblem:
    """Assemble the :class:`SpectralProblem` of ``scan`` (module doc).

    Args:
        scan: the (prewhitened) acquisition.
        frequency_range_hz: (lo, hi) every modelled frequency lies in (must contain 0).
        operator: forward model options (None: the defaults of :class:`OperatorConfig`);
            ``max_error``, if not None, sets the temporal rank from an a-priori bound on
            the per-sample model error
            (:func:`~mrsolve.recon.spectral.operator.temporal_basis`), else ``tol`` does;
            with ``coil_energy`` < 1 the problem's ``coil_maps`` are the virtual coils'.
        maps: (C, ny, nx) coil maps to use instead of estimating ``operator.coil_maps``.
        per_frame: one data term per ``scan.frame`` value (dynamic), else one for all.
        seed: seeds the held-out lines.
        device: torch device.
    """
    op = OperatorConfig() if operator is None else operator
    if not isinstance(op, OperatorConfig):
        raise TypeError(f"operator must be an OperatorConfig or None, got {type(op).__name__}")
    lo, hi = (float(v) for v in frequency_range_hz)
    if not lo <= 0 <= hi:
        raise ValueError(f"frequency_range_hz must contain 0, got {frequency_range_hz!r}")
    check_positive("frequency_step_hz", op.frequency_step_hz)
    check_share("coil_energy", op.coil_energy)
    dev = torch.device(device)
    scan = scan.to(dev)
    if maps is not None:
        check_shape("maps", maps, (scan.kspace.shape[0], *scan.image_shape))
        maps = maps.to(dev, torch.complex64)
    virtual = coil_compression_matrix(scan.kspace, op.coil_energy)
    if virtual.shape[1] < scan.kspace.shape[0]:  # a full-rank rotation would gain nothing
        noise = None if scan.noise is None else apply_coil_compression(scan.noise, virtual)
        scan = replace(scan, kspace=apply_coil_compression(scan.kspace, virtual), noise=noise)
        maps = None if maps is None else apply_coil_compression(maps, virtual)
    if maps is None:
        maps = low_resolution_maps(scan, op.coil_maps)
    ny, nx = scan.image_shape
    weights = density_compensation(scan.traj, scan.image_shape, op.dcf, device=dev) / (ny * nx)
    held = heldout_lines(scan.n_blades, scan.n_lines, op.holdout_fraction, seed).to(dev)
    n_grid = max(2, math.ceil((hi - lo) / op.frequency_step_hz) + 1)
    basis = temporal_basis(scan.times, torch.linspace(lo, hi, n_grid), op.tol, op.max_error)
    groups = (
        [torch.nonzero(scan.frame == t).flatten() for t in range(scan.n_frames)]
        if per_frame
        else [torch.arange(scan.n_blades, device=dev)]
    )
    raw = [_frame_data(scan, g, weights, held, basis, maps) for g in groups]
    # scale from the gridding image sum_l (sum_t U[t, l]) b_l (the f = 0 component)
    ones = basis.u.sum(0).to(dev, torch.complex64)
    grid = torch.einsum("l,lyx->yx", ones, sum(fr.b for fr in raw) / len(raw))
    level = float(torch.quantile(grid.abs().flatten().float(), 0.99))
    scale = 1.0 / level if level > 0 else 1.0
    for fr in raw:
        fr.b, fr.energy = fr.b * scale, fr.energy * scale**2
        if fr.heldout is not None:
            fr.heldout_b, fr.heldout_energy = fr.heldout_b * scale, fr.heldout_energy * scale**2
    return SpectralProblem(basis, maps, raw, scale, (ny, nx), dev)


def weight_moments(
    basis: TemporalBasis, times: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """(2, L, L) float64: sum_j w_j^k conj(U[t_j, l]) U[t_j, l'] for k = 1, 2.

    The zero-lag (one pixel to itself) blocks of A^H W A and A^H W^2 A per unit coil
    energy sum_c |S_c(r)|^2 (the spatial phase cancels): what the per-pixel noise
    analysis of :mod:`mrsolve.recon.spectral.uncertainty` needs. Real by the basis'
    construction (:func:`~mrsolve.recon.spectral.operator.temporal_basis`).
    """
    idx = basis.index(times).reshape(-1).to(basis.u.device)
    w = weights.reshape(-1).to(basis.u.device, torch.float64)
    per_time = torch.zeros(2, basis.u.shape[0], dtype=torch.float64, device=w.device)
    per_time.index_add_(1, idx, torch.stack([w, w * w]))
    return torch.einsum("kt,tl,tm->klm", per_time.to(basis.u.dtype), basis.u.conj(), basis.u).real


def _frame_data(scan, blades, weights, held, basis, maps) -> FrameData:
    traj, times = scan.traj[blades], scan.times[blades]
    y, w, h = scan.kspace[:, blades].to(torch.complex64), weights[blades], held[blades]
    train_w = w * (~h)[..., None]
    enc = SpectralEncoding(traj, times, basis, maps)
    normal = enc.normal(train_w)
    b = enc.H(train_w * y)
    energy = (train_w * y.abs().square()).sum()
    moments = weight_moments(basis, times, train_w)
    if not bool(h.any()):
        return FrameData(normal, b, energy, moments, None, None, None)
    held_enc = SpectralEncoding(traj[h], times[h], basis, maps)
    held_y = y[:, h]
    held_energy = held_y.abs().square().sum(dtype=torch.float64)
    held_b = held_enc.H(held_y)
    return FrameData(
        normal, b, energy, moments, held_enc.normal(), held_b, held_energy, held_y.numel()
    )
