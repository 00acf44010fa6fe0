"""Pipe's PROPELLER reconstruction (Pipe, MRM 42:963, 1999).

Steps, each a function of its own:

1. :func:`phase_correct` - per blade and coil, remove the phase of the blade's
   low-resolution image (central k-space under a triangular window), so the blades
   no longer interfere where they overlap.
2. :func:`estimate_rotations` - correlate the k-space magnitude of each blade with
   the blades' mean over the central disc (the disc every blade covers), over a
   grid of trial angles, then refine around the best one.
3. :func:`estimate_translations` - the shift that maximizes the cross-power of each
   blade's central data with the mean (gridded) central data: the peak of the
   correlation of the blade's low-resolution image with the mean one.
4. :func:`correct_motion` - rotate the trajectory and undo the shift by a linear phase.
5. :func:`correlation_weights` - down-weight blades that correlate poorly with the
   mean after correction (e.g. through-plane motion).
6. Gridding with the density compensation of the corrected, weighted blades.

Motion model (the one of ``mrsolve.data.phantom``): during blade b the object is
rotated by alpha_b about the image centre and then shifted by s_b (pixels, (x, y)):
x_b(r) = x(R(-alpha_b) (r - s_b)). Its samples are then
y_j = e^{-i 2 pi k_j . s_b / N} X(R(-alpha_b) k_j). Motion is estimated relative to
the blades' mean and returned with zero mean over the blades (the absolute frame is
not observable; the image is reconstructed in the mean position).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from mrsolve.propeller.density import OperatorFactory, blade_frames, density_compensation
from mrsolve.propeller.gridding import (
    Callback,
    central_block,
    combine,
    grid_coil_images,
    report_progress,
    resolve_coil_maps,
)
from mrsolve.propeller.nufft import NUFFT
from mrsolve.propeller.scan import Scan
from mrsolve.solvers.validation import check_positive, check_shape, resolve_device


def _check_scan(scan) -> None:
    if not isinstance(scan, Scan):
        raise TypeError(f"scan must be a mrsolve.propeller.scan.Scan, got {type(scan).__name__}")


def _check_symmetric_echo(scan: Scan, step: str) -> None:
    """The blade FFTs put k = 0 at sample (L // 2, M // 2): require that echo centre."""
    if scan.center_sample != scan.n_readout // 2:
        raise ValueError(
            f"scan.center_sample must be the middle readout sample {scan.n_readout // 2} for "
            f"{step} (symmetric echo), got {scan.center_sample}"
        )


def _rotate(k: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Rotate (..., 2) points by ``angle`` radians (broadcast against k[..., 0])."""
    c, s = torch.cos(angle), torch.sin(angle)
    return torch.stack([c * k[..., 0] - s * k[..., 1], s * k[..., 0] + c * k[..., 1]], dim=-1)


def _frame_coordinates(scan: Scan) -> tuple[torch.Tensor, torch.Tensor]:
    """Readout and line coordinates (u, v) of every sample in its blade's frame, (B, L, M)."""
    f = blade_frames(scan.traj)
    u = torch.einsum("blmi,bi->blm", scan.traj.float(), f.e_ro)
    v = torch.einsum("blmi,bi->blm", scan.traj.float(), f.e_pe)
    return u, v


def phase_correct(scan: Scan, window_radius: float | None = None) -> Scan:
    """Remove each blade's low-resolution image phase, per coil (Pipe's step 1).

    The blade image is the centered 2D inverse FFT of its (L, M) samples (a blade is a
    rotated Cartesian patch); the low-resolution image uses the same samples under
    the triangular window (1 - |u| / R)_+ (1 - |v| / R)_+ in the blade frame.

    Args:
        scan: a scan whose echo centre is the middle readout sample (M // 2) and whose
            central line is L // 2.
        window_radius: R in cycles/FOV; default L / 2 (the blade's own half width, so
            the low-resolution image has the same resolution in both directions).

    Returns:
        The scan with phase-corrected k-space.
    """
    _check_scan(scan)
    _check_symmetric_echo(scan, "phase correction")
    radius = (
        scan.n_lines / 2
        if window_radius is None
        else check_positive("window_radius", window_radius)
    )
    u, v = _frame_coordinates(scan)
    window = (1 - u.abs() / radius).clamp_min(0) * (1 - v.abs() / radius).clamp_min(0)
    dims = (-2, -1)

    def to_image(k):
        return torch.fft.fftshift(torch.fft.ifft2(torch.fft.ifftshift(k, dim=dims)), dim=dims)

    def to_kspace(x):
        return torch.fft.fftshift(torch.fft.fft2(torch.fft.ifftshift(x, dim=dims)), dim=dims)

    image = to_image(scan.kspace)
    low = to_image(scan.kspace * window)
    phase = torch.where(low.abs() > 0, low.conj() / low.abs().clamp_min(1e-30), 1.0)
    return replace(scan, kspace=to_kspace(image * phase).to(torch.complex64))


def _disc_points(radius: float, spacing: float, device) -> torch.Tensor:
    """Cartesian points (P, 2) of spacing ``spacing`` inside the disc of ``radius``."""
    n = math.floor(radius / spacing)
    axis = torch.arange(-n, n + 1, device=device, dtype=torch.float32) * spacing
    ky, kx = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([kx.reshape(-1), ky.reshape(-1)], dim=-1)
    return pts[pts.norm(dim=-1) <= radius]


class _FineMagnitude:
    """Root-sum-of-squares k-space magnitude of each blade on a ``factor``-times finer grid.

    Trigonometric interpolation in the blade frame (zero-padding the blade image) is far
    more accurate than interpolating between the original samples (bilinear between
    them leaves ~10% errors that swamp the effect of a 1 degree rotation); only the
    readout samples with |u| <= radius + 1 are kept. :meth:`sample` then interpolates
    bilinearly on the fine grid.
    """

    def __init__(self, scan: Scan, factor: int, radius: float) -> None:
        dims = (-2, -1)
        n_lines, n_read = scan.n_lines, scan.n_readout
        frames = blade_frames(scan.traj)
        u = torch.einsum("lmi,i->lm", scan.traj[0].float(), frames.e_ro[0])
        keep = (u.abs() <= radius + 1).all(dim=0)
        first_kept = int(keep.nonzero()[0])
        # fine index of coarse sample i is f i + (f M) // 2 - f (M // 2) (fftshift centres)
        keep_fine = torch.roll(
            keep.repeat_interleave(factor), (factor * n_read) // 2 - factor * (n_read // 2)
        )
        pad_l, pad_m = (factor - 1) * n_lines, (factor - 1) * n_read
        pad = (pad_m // 2, pad_m - pad_m // 2, pad_l // 2, pad_l - pad_l // 2)
        power = torch.zeros(scan.n_blades, factor * n_lines, int(keep_fine.sum()), device=u.device)
        for coil in scan.kspace:
            image = torch.fft.fftshift(
                torch.fft.ifft2(torch.fft.ifftshift(coil, dim=dims)), dim=dims
            )
            image = torch.nn.functional.pad(image, pad)
            fine = torch.fft.fftshift(
                torch.fft.fft2(torch.fft.ifftshift(image, dim=dims)), dim=dims
            )
            power += fine[..., keep_fine].abs().square()
        self.magnitude = power.sqrt()[:, None]  # (B, 1, H, W)
        height, width = power.shape[-2:]
        # grid_sample coordinates in [-1, 1] are affine in k: g = k @ A_b + c_b
        scale_u = 2 * factor / (frames.step_ro * (width - 1))
        scale_v = 2 * factor / (frames.step_pe * (height - 1))
        self.matrix = torch.stack(
            [frames.e_ro * scale_u[:, None], frames.e_pe * scale_v[:, None]], dim=-1
        )  # (B, 2, 2)
        start_u = frames.first[:, 0] / frames.step_ro + first_kept
        start_v = frames.first[:, 1] / frames.step_pe + n_lines // 2
        offset_v = (factor * n_lines) // 2
        self.offset = torch.stack(
            [
                -start_u * factor * 2 / (width - 1) - 1,
                (-start_v * factor + offset_v) * 2 / (height - 1) - 1,
            ],
            dim=-1,
        )  # (B, 2)

    def sample(self, points: torch.Tensor) -> torch.Tensor:
        """Magnitudes at k points (B, *P, 2) in cycles/FOV: (B, *P)."""
        n_blades = points.shape[0]
        flat = points.reshape(n_blades, -1, 2)
        grid = flat @ self.matrix + self.offset[:, None]
        out = torch.nn.functional.grid_sample(self.magnitude, grid[:, None], align_corners=True)
        return out.reshape(points.shape[:-1])


def _refine_peak(values: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Arg-max over the last axis of values (B, T) on a uniform grid (T,), parabolic refined."""
    best = values.argmax(dim=-1).clamp(1, grid.numel() - 2)
    b = torch.arange(values.shape[0], device=values.device)
    left, mid, right = values[b, best - 1], values[b, best], values[b, best + 1]
    curvature = left - 2 * mid + right
    offset = torch.where(curvature < 0, 0.5 * (left - right) / curvature, 0.0).clamp(-0.5, 0.5)
    return grid[best] + offset * (grid[1] - grid[0])


def estimate_rotations(
    scan: Scan,
    max_angle_deg: float = 10.0,
    radius: float | None = None,
    n_iter: int = 2,
    upsampling: int = 4,
) -> torch.Tensor:
    """Per-blade rotation alpha_b (B,) in degrees, zero-mean over the blades (step 2).

    The magnitude of blade b's k-space (root-sum-of-squares over coils) is invariant
    to translation and equals |X(R(-alpha_b) k)|, so sampling it at R(beta) k for
    trial angles beta correlates best with the reference (the mean of all blades,
    aligned with the current estimates) at beta = alpha_b. Magnitudes are weighted by
    |k| so that the (rotation-invariant) centre does not dominate the correlation.
    Coarse 0.5 degree grid over +-max_angle_deg, then a 0.05 degree grid around the
    best angle and a parabolic peak.

    Args:
        scan: the acquisition (phase correction does not change k-space magnitudes
            much; either order works). The echo centre must be sample M // 2.
        max_angle_deg: search range.
        radius: disc radius in cycles/FOV; default L / 2 - 1 (inside every blade).
        n_iter: passes, each re-aligning the reference with the current estimates.
        upsampling: factor of the trigonometric interpolation in the blade frame.
    """
    _check_scan(scan)
    _check_symmetric_echo(scan, "rotation estimation")
    max_angle = check_positive("max_angle_deg", max_angle_deg)
    radius = scan.n_lines / 2 - 1 if radius is None else check_positive("radius", radius)
    if radius <= 0:
        raise ValueError(f"scan.n_lines must be >= 3 for rotation estimation, got {scan.n_lines}")
    if not isinstance(upsampling, int) or upsampling < 1:
        raise ValueError(f"upsampling must be a positive integer, got {upsampling!r}")
    dev = scan.kspace.device
    n_blades = scan.n_blades
    magnitude = _FineMagnitude(scan, upsampling, radius)
    points = _disc_points(radius, 0.5, dev)
    ramp = points.norm(dim=-1)

    def sample(pts: torch.Tensor) -> torch.Tensor:
        return magnitude.sample(pts) * ramp

    def correlate(trials_deg: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        rotated = _rotate(points, torch.deg2rad(trials_deg)[..., None])  # (B, T, P, 2)
        sampled = sample(rotated)
        sampled = sampled - sampled.mean(-1, keepdim=True)
        ref = reference - reference.mean()
        return (sampled * ref).sum(-1) / (sampled.norm(dim=-1) * ref.norm()).clamp_min(1e-30)

    alpha = torch.zeros(n_blades, device=dev)
    coarse = torch.arange(-max_angle, max_angle + 1e-6, 0.5, device=dev)
    fine = torch.arange(-1.0, 1.0 + 1e-6, 0.05, device=dev)
    for _ in range(n_iter):
        reference = sample(_rotate(points, torch.deg2rad(alpha)[:, None])).mean(0)
        best = coarse[correlate(coarse.expand(n_blades, -1), reference).argmax(-1)]
        values = correlate(best[:, None] + fine, reference)
        alpha = best + _refine_peak(values, fine)
    return alpha - alpha.mean()


def _shift_phase(traj: torch.Tensor, shift: torch.Tensor, image_shape) -> torch.Tensor:
    """e^{+i 2 pi k . s / N} for traj (B, ..., 2) and shifts (B, 2) (x, y) in pixels."""
    ny, nx = image_shape
    scaled = shift / torch.tensor([nx, ny], dtype=shift.dtype, device=shift.device)
    phase = 2 * math.pi * torch.einsum("b...i,bi->b...", traj.double(), scaled.double())
    return torch.polar(torch.ones_like(phase), phase).to(torch.complex64)


class _CentralReference:
    """Grids the central block of all blades (their mean) and samples it back per blade."""

    def __init__(self, block: Scan, dcf: str, operator: OperatorFactory) -> None:
        dev = block.kspace.device
        self.weights = density_compensation(
            block.traj, block.image_shape, dcf, operator=operator, device=dev
        )
        self.op = operator(block.traj, block.image_shape, batch_shape=(block.n_coils,))
        self.scale = 1.0 / (block.image_shape[0] * block.image_shape[1])

    def cross_power(self, kspace: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Coil-summed cross power (B, L, Mc) of each blade with the mean, and the mean."""
        reference = self.op(self.op.H(kspace * self.weights) * self.scale)
        return (kspace * reference.conj()).sum(0), reference


def _correlation_surface(
    power: torch.Tensor, traj: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor, image_shape
) -> torch.Tensor:
    """|sum_j power_j e^{+i 2 pi (kx_j sx / nx + ky_j sy / ny)}| on the grid sy x sx: (B, Sy, Sx).

    The exponential factors over x and y, so the surface is one batched matrix product
    Ey^T diag(power) Ex instead of an exponential per (shift, sample) pair.
    """
    ny, nx = image_shape
    k = traj.reshape(traj.shape[0], -1, 2)
    phase_x = 2 * math.pi * k[..., 0, None] * (sx / nx)  # (B, J, Sx)
    phase_y = 2 * math.pi * k[..., 1, None] * (sy / ny)  # (B, J, Sy)
    ex = torch.polar(torch.ones_like(phase_x), phase_x)
    ey = torch.polar(torch.ones_like(phase_y), phase_y)
    weighted = power.reshape(power.shape[0], -1, 1) * ex
    return (ey.transpose(1, 2) @ weighted).abs()


def _peak(surface: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    """Shift (B, 2) as (dx, dy) at the maximum of surfaces (B, Sy, Sx)."""
    flat = surface.reshape(surface.shape[0], -1).argmax(-1)
    return torch.stack([sx[flat % sx.numel()], sy[flat // sx.numel()]], dim=-1)


def estimate_translations(
    scan: Scan,
    max_shift_px: float | None = None,
    radius: float | None = None,
    n_iter: int = 2,
    dcf: str = "analytic",
    operator: OperatorFactory = NUFFT,
) -> torch.Tensor:
    """Per-blade translation s_b (B, 2) as (dx, dy) pixels, zero-mean, corrected frame (step 3).

    The reference is the gridded central block of all blades (their mean); the
    cross-power P_j = sum_c y_cj conj(ref_c(k_j)) of blade b carries the phase
    e^{-i 2 pi k_j . s_b / N}, so |sum_j P_j e^{+i 2 pi k_j . s / N}| peaks at s = s_b:
    integer search over +-max_shift_px, then a 0.05 pixel grid around the peak.
    Use it on a scan whose trajectory is already rotation-corrected; the returned
    shift undoes the motion with the phase e^{+i 2 pi k'_j . s_b / N} of the corrected
    positions k'_j (see :func:`correct_motion`).

    Args:
        scan: the (rotation-corrected) acquisition.
        max_shift_px: search range, default a quarter of the image size.
        radius: central block half width in cycles/FOV, default L / 2.
        n_iter: passes, each re-gridding the reference from the shift-corrected data.
        dcf: density compensation of the reference ("analytic" or "pipe-menon").
        operator: NUFFT/DFT factory used to grid the reference and sample it.
    """
    _check_scan(scan)
    ny, nx = scan.image_shape
    limit = (
        min(ny, nx) / 4 if max_shift_px is None else check_positive("max_shift_px", max_shift_px)
    )
    radius = scan.n_lines / 2 if radius is None else check_positive("radius", radius)
    dev = scan.kspace.device
    block = central_block(scan, radius)
    n = math.floor(limit)
    coarse = torch.arange(-n, n + 1, device=dev, dtype=torch.float32)
    fine = torch.arange(-1.0, 1.0 + 1e-6, 0.05, device=dev)
    shifts = torch.zeros(scan.n_blades, 2, device=dev)
    reference = _CentralReference(block, dcf, operator)
    for _ in range(n_iter):
        power, _ = reference.cross_power(block.kspace * _shift_phase(block.traj, shifts, (ny, nx)))
        best = _peak(
            _correlation_surface(power, block.traj, coarse, coarse, (ny, nx)), coarse, coarse
        )
        refined = torch.stack(
            [
                _peak(
                    _correlation_surface(
                        power[b : b + 1],
                        block.traj[b : b + 1],
                        best[b, 0] + fine,
                        best[b, 1] + fine,
                        (ny, nx),
                    ),
                    best[b, 0] + fine,
                    best[b, 1] + fine,
                )[0]
                for b in range(scan.n_blades)
            ]
        )
        shifts = shifts + refined
    return shifts - shifts.mean(0)


def correct_motion(
    scan: Scan, rotation_deg: torch.Tensor | None = None, shift_px: torch.Tensor | None = None
) -> Scan:
    """Undo per-blade motion (step 4): rotate the trajectory, then remove the shift's phase.

    Args:
        scan: the acquisition.
        rotation_deg: (B,) rotations alpha_b; the trajectory becomes R(-alpha_b) k.
        shift_px: (B, 2) shifts (dx, dy) in the rotation-corrected frame (as returned by
            :func:`estimate_translations` on the rotated scan); the samples are
            multiplied by e^{+i 2 pi k' . s / N} with the corrected positions k'.
    """
    _check_scan(scan)
    if rotation_deg is not None:
        check_shape("rotation_deg", rotation_deg, (scan.n_blades,))
        angle = -torch.deg2rad(rotation_deg.to(scan.traj.device, torch.float32))
        scan = replace(scan, traj=_rotate(scan.traj.float(), angle[:, None, None]))
    if shift_px is not None:
        check_shape("shift_px", shift_px, (scan.n_blades, 2))
        phase = _shift_phase(scan.traj, shift_px.to(scan.traj.device), scan.image_shape)
        scan = replace(scan, kspace=scan.kspace * phase)
    return scan


def blade_correlations(
    scan: Scan,
    radius: float | None = None,
    dcf: str = "analytic",
    operator: OperatorFactory = NUFFT,
) -> torch.Tensor:
    """Normalized correlation (B,) in [0, 1] of each blade's central data with the mean."""
    _check_scan(scan)
    radius = scan.n_lines / 2 if radius is None else check_positive("radius", radius)
    block = central_block(scan, radius)
    power, reference = _CentralReference(block, dcf, operator).cross_power(block.kspace)
    own = block.kspace.abs().square().sum(dim=(0, 2, 3))
    ref = reference.abs().square().sum(dim=(0, 2, 3))
    return power.sum(dim=(1, 2)).abs() / (own * ref).sqrt().clamp_min(1e-30)


def correlation_weights(correlations: torch.Tensor, power: float = 8.0) -> torch.Tensor:
    """Blade weights (B,) = (rho_b / max rho)^power (step 5); power 0 gives equal weights.

    With the default power, a blade at 0.9 of the best correlation keeps 43% of its
    weight, one at 0.7 keeps 6%.
    """
    power = check_positive("power", power, allow_zero=True)
    if correlations.ndim != 1 or correlations.numel() == 0:
        raise ValueError(f"correlations must have shape (B,), got {tuple(correlations.shape)}")
    best = correlations.max().clamp_min(1e-30)
    return (correlations.clamp_min(0) / best) ** power


@dataclass
class PipeResult:
    """Output of :func:`pipe_reconstruct`.

    Attributes:
        image: (ny, nx) complex64 reconstruction.
        rotation_deg: (B,) estimated rotation of each blade (zeros when not estimated).
        shift_px: (B, 2) estimated object shift (dx, dy) in pixels of each blade, in the
            motion model's frame (shift after rotation).
        blade_weights: (B,) correlation weights used in gridding (ones when off).
        correlations: (B,) correlation of each corrected blade with the mean.
    """

    image: torch.Tensor
    rotation_deg: torch.Tensor
    shift_px: torch.Tensor
    blade_weights: torch.Tensor
    correlations: torch.Tensor


def pipe_reconstruct(
    scan: Scan,
    phase_correction: bool = True,
    motion_correction: bool = True,
    correlation_weighting: bool = True,
    max_angle_deg: float = 10.0,
    max_shift_px: float | None = None,
    weight_power: float = 8.0,
    dcf: str = "analytic",
    coil_maps: torch.Tensor | str | None = "espirit",
    operator: OperatorFactory = NUFFT,
    device: str | torch.device = "cpu",
    callback: Callback | None = None,
) -> PipeResult:
    """Pipe's PROPELLER reconstruction of a static scan (steps 1-6 of the module doc).

    Args:
        scan: the acquisition.
        phase_correction, motion_correction, correlation_weighting: switch steps on/off.
        max_angle_deg, max_shift_px: motion search ranges.
        weight_power: exponent of :func:`correlation_weights`.
        dcf: "analytic" or "pipe-menon" density compensation for the final gridding.
        coil_maps: "espirit"/"walsh" to estimate maps from the corrected data for a
            SENSE-1 combination (phase correction removes the coil phases, but the maps
            still weight the coils by sensitivity: docs/coil_maps_design.md); None for
            root-sum-of-squares; or given (C, ny, nx) maps (only consistent without
            phase correction, which removes their phase).
        operator: NUFFT (default) or DFT factory.
        device: "cpu", "cuda" or "auto".
        callback: ``callback(step, total, image)`` after each of 6 steps (image is None
            until the final one).
    """
    _check_scan(scan)
    dev = resolve_device(device)
    scan = scan.to(dev)
    total = 6
    if phase_correction:
        scan = phase_correct(scan)
    report_progress(callback, 1, total, None)
    rotation = torch.zeros(scan.n_blades, device=dev)
    shift = torch.zeros(scan.n_blades, 2, device=dev)
    if motion_correction:
        rotation = estimate_rotations(scan, max_angle_deg)
        scan = correct_motion(scan, rotation)
    report_progress(callback, 2, total, None)
    if motion_correction:
        shift = estimate_translations(scan, max_shift_px, operator=operator)
        scan = correct_motion(scan, shift_px=shift)
    report_progress(callback, 3, total, None)
    correlations = blade_correlations(scan, operator=operator)
    weights = torch.ones(scan.n_blades, device=dev)
    if correlation_weighting:
        weights = correlation_weights(correlations, weight_power)
    report_progress(callback, 4, total, None)
    sample_weights = density_compensation(
        scan.traj, scan.image_shape, dcf, blade_weights=weights, operator=operator, device=dev
    )
    report_progress(callback, 5, total, None)
    images = grid_coil_images(scan.kspace, scan.traj, scan.image_shape, sample_weights, operator)
    image = combine(images, resolve_coil_maps(scan, coil_maps, operator))
    report_progress(callback, 6, total, image)
    physical_shift = _rotate(shift, torch.deg2rad(rotation))
    return PipeResult(image, rotation, physical_shift, weights, correlations)
