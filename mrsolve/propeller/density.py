"""Density compensation for non-Cartesian (PROPELLER) sampling.

A density compensation function (DCF) w gives each sample the k-space area it
stands for, in (cycles/FOV)^2, so that sum_j w_j f(k_j) approximates the integral of
f over the sampled region: the weights of a fully sampled N x N Cartesian grid are
all 1 and sum to N^2.

- :func:`pipe_menon_dcf`: the iterative method of Pipe and Menon (MRM 1999),
  w <- w / (C w), where C is convolution with a positive kernel of unit integral. It
  is applied at the operator level as C w = A (h * A^H w) / (ny nx) with the given
  NUFFT/DFT ``A`` and a Gaussian image window h, whose Fourier transform is a
  positive Gaussian kernel of standard deviation ``kernel_width`` cycles/FOV.
- :func:`propeller_dcf`: analytic, the sample spacing area divided by the number of
  blades whose rectangle covers the sample (the local blade overlap).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from mrsolve.propeller.nufft import NUFFT
from mrsolve.solvers.linop import Linop
from mrsolve.solvers.validation import check_finite, check_positive, resolve_device

OperatorFactory = Callable[..., Linop]


def _check_traj(traj: torch.Tensor, min_dims: int = 2) -> None:
    if not isinstance(traj, torch.Tensor):
        raise TypeError(f"traj must be a torch.Tensor of shape (..., 2), got {type(traj).__name__}")
    if traj.ndim < min_dims or traj.shape[-1] != 2:
        raise ValueError(
            f"traj must have at least {min_dims} axes, the last (kx, ky), got {tuple(traj.shape)}"
        )
    check_finite("traj", traj)


def _check_sample_weights(weights: torch.Tensor | None, shape: tuple[int, ...], name: str):
    if weights is None:
        return None
    if not isinstance(weights, torch.Tensor) or weights.is_complex():
        raise TypeError(f"{name} must be a real torch.Tensor, got {type(weights).__name__}")
    if tuple(weights.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(weights.shape)}")
    check_finite(name, weights)
    if bool((weights < 0).any()):
        raise ValueError(f"{name} must be >= 0, got a minimum of {float(weights.min())}")
    return weights


def pipe_menon_dcf(
    traj: torch.Tensor,
    image_shape: Sequence[int],
    n_iter: int = 20,
    kernel_width: float = 1.0,
    sample_weights: torch.Tensor | None = None,
    operator: OperatorFactory = NUFFT,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Iterative Pipe-Menon density compensation, float32 of shape ``traj.shape[:-1]``.

    Args:
        traj: (..., 2) k-space positions in cycles/FOV.
        image_shape: (ny, nx) of the image grid the operator maps from.
        n_iter: fixed-point iterations.
        kernel_width: standard deviation of the Gaussian density kernel in cycles/FOV
            (about the sample spacing; wider is smoother).
        sample_weights: optional non-negative weights v (e.g. correlation weights of
            blades); the DCF then solves (C (v w))_j = 1, so v * w is normalized.
        operator: ``operator(traj, image_shape)`` giving a Linop image -> samples
            (:class:`~mrsolve.propeller.nufft.NUFFT`, or ``DFT`` for tiny cases).
        device: "cpu", "cuda" or "auto".
    """
    _check_traj(traj)
    dev = resolve_device(device)
    if not isinstance(n_iter, int) or n_iter < 1:
        raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
    width = check_positive("kernel_width", kernel_width)
    samples = tuple(traj.shape[:-1])
    v = _check_sample_weights(sample_weights, samples, "sample_weights")
    ny, nx = (int(s) for s in image_shape)
    traj = traj.to(dev, torch.float32)
    op = operator(traj, (ny, nx))
    # Gaussian window whose Fourier transform is (ny nx / (2 pi s^2)) exp(-|k|^2 / (2 s^2)):
    # a positive kernel of integral ny * nx, so dividing by ny * nx gives unit integral.
    y = (torch.arange(ny, device=dev, dtype=torch.float32) - ny // 2) / ny
    x = (torch.arange(nx, device=dev, dtype=torch.float32) - nx // 2) / nx
    window = torch.exp(-2 * math.pi**2 * width**2 * (y[:, None] ** 2 + x[None, :] ** 2))
    w = torch.ones(samples, device=dev)
    v = torch.ones_like(w) if v is None else v.to(dev, torch.float32)
    for _ in range(n_iter):
        density = op(window * op.H((v * w).to(torch.complex64))).abs() / (ny * nx)
        w = w / density.clamp_min(torch.finfo(torch.float32).tiny)
    return w


@dataclass(frozen=True)
class BladeFrames:
    """Each blade's own Cartesian frame, from a (B, L, M, 2) trajectory.

    A sample at k has readout coordinate u = k . e_ro and line coordinate v = k . e_pe;
    its fractional readout index is (u - first[:, 0]) / step_ro and its fractional line
    index (v - first[:, 1]) / step_pe.

    Attributes:
        e_ro, e_pe: (B, 2) unit readout and line directions (kx, ky).
        step_ro, step_pe: (B,) sample spacings in cycles/FOV.
        first, last: (B, 2) smallest and largest (u, v) of the blade's samples.
    """

    e_ro: torch.Tensor
    e_pe: torch.Tensor
    step_ro: torch.Tensor
    step_pe: torch.Tensor
    first: torch.Tensor
    last: torch.Tensor


def blade_frames(traj: torch.Tensor) -> BladeFrames:
    """The :class:`BladeFrames` of blade trajectories (B, L >= 2, M >= 2, 2)."""
    _check_traj(traj, min_dims=4)
    if traj.ndim != 4 or traj.shape[1] < 2 or traj.shape[2] < 2:
        raise ValueError(
            f"traj must have shape (blades, lines >= 2, readout >= 2, 2) for blade geometry "
            f"(use the 'pipe-menon' density compensation otherwise), got {tuple(traj.shape)}"
        )
    traj = traj.float()
    d_ro = (traj[:, :, 1:] - traj[:, :, :-1]).mean(dim=(1, 2))
    d_pe = (traj[:, 1:] - traj[:, :-1]).mean(dim=(1, 2))
    step_ro, step_pe = d_ro.norm(dim=-1), d_pe.norm(dim=-1)
    if bool((step_ro <= 0).any()) or bool((step_pe <= 0).any()):
        raise ValueError("traj must hold blades with distinct lines and readout samples")
    e_ro, e_pe = d_ro / step_ro[:, None], d_pe / step_pe[:, None]
    u = torch.einsum("blmi,bi->blm", traj, e_ro)
    v = torch.einsum("blmi,bi->blm", traj, e_pe)
    first = torch.stack([u.amin(dim=(1, 2)), v.amin(dim=(1, 2))], dim=-1)
    last = torch.stack([u.amax(dim=(1, 2)), v.amax(dim=(1, 2))], dim=-1)
    return BladeFrames(e_ro, e_pe, step_ro, step_pe, first, last)


def propeller_dcf(traj: torch.Tensor, blade_weights: torch.Tensor | None = None) -> torch.Tensor:
    """Analytic PROPELLER density compensation, float32 (B, L, M).

    Each blade is a rotated Cartesian rectangle (L lines x M samples); a sample gets
    the area of one sample cell of its blade divided by the (weighted) number of blades
    whose rectangle contains it. The weights sum to the area of the union of the
    blades, in (cycles/FOV)^2.

    Args:
        traj: (B, L, M, 2) blade trajectories in cycles/FOV (rotations of a Cartesian
            blade, e.g. after motion correction); L >= 2 and M >= 2.
        blade_weights: optional (B,) non-negative weights; blade b's samples are scaled by
            its weight and the overlap is counted with the same weights, so overlapping
            regions become weighted averages.
    """
    frames = blade_frames(traj)
    n_blades = traj.shape[0]
    weights = _check_sample_weights(blade_weights, (n_blades,), "blade_weights")
    traj = traj.float()
    weights = (
        torch.ones(n_blades, device=traj.device)
        if weights is None
        else weights.to(traj.device, torch.float32)
    )
    half = torch.stack([frames.step_ro, frames.step_pe], dim=-1) / 2
    lo, hi = frames.first - half, frames.last + half
    cell = frames.step_ro * frames.step_pe
    e_ro, e_pe = frames.e_ro, frames.e_pe
    flat = traj.reshape(-1, 2)
    count = torch.zeros(flat.shape[0], device=traj.device)
    slack = 1e-4  # samples on a rectangle's own boundary count as inside
    for b in range(n_blades):
        u, v = flat @ e_ro[b], flat @ e_pe[b]
        inside = (u >= lo[b, 0] - slack) & (u <= hi[b, 0] + slack)
        inside &= (v >= lo[b, 1] - slack) & (v <= hi[b, 1] + slack)
        count += weights[b] * inside
    own = (weights * cell)[:, None, None].expand(traj.shape[:-1])
    count = count.reshape(traj.shape[:-1])
    return torch.where(count > 0, own / count.clamp_min(1e-30), torch.zeros_like(own))


DCF_METHODS = ("analytic", "pipe-menon")


def density_compensation(
    traj: torch.Tensor,
    image_shape: Sequence[int],
    method: str | torch.Tensor = "analytic",
    blade_weights: torch.Tensor | None = None,
    operator: OperatorFactory = NUFFT,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Sample weights (B, L, M) by ``method``: "analytic", "pipe-menon", or a given tensor.

    ``blade_weights`` (B,) scale each blade's samples and are normalized by the density
    estimate (see :func:`propeller_dcf`); a given tensor is returned on ``device`` as is.
    """
    dev = resolve_device(device)
    if isinstance(method, torch.Tensor):
        _check_sample_weights(method, tuple(traj.shape[:-1]), "dcf")
        return method.to(dev, torch.float32)
    if not isinstance(method, str) or method not in DCF_METHODS:
        raise ValueError(f"dcf must be one of {list(DCF_METHODS)} or a tensor, got {method!r}")
    traj = traj.to(dev)
    if method == "analytic":
        return propeller_dcf(traj, blade_weights)
    sample_weights = None
    if blade_weights is not None:
        _check_sample_weights(blade_weights, (traj.shape[0],), "blade_weights")
        blade_weights = blade_weights.to(dev, torch.float32)
        sample_weights = blade_weights[:, None, None].expand(traj.shape[:-1])
    w = pipe_menon_dcf(
        traj, image_shape, sample_weights=sample_weights, operator=operator, device=dev
    )
    return w if sample_weights is None else w * sample_weights
