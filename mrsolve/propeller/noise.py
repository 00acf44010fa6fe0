"""Noise prewhitening from noise-scan samples.

Receiver noise is correlated across coils with covariance Psi = E[n n^H] (C x C).
With the Cholesky factor Psi = L L^H, the prewhitening matrix W = L^{-1} makes the
noise white: W Psi W^H = I. Applying W along the coil axis of the k-space (and of the
coil maps, when a SENSE model uses them) turns a weighted least-squares problem into a
plain one. Noise scans (ACQ_IS_NOISE_MEASUREMENT) give the samples; they are never data.

Numpy arrays in give numpy arrays out; torch tensors keep their device.
"""

from __future__ import annotations

import numpy as np
import torch

from mrsolve.solvers.validation import check_finite, check_positive


def as_tensor(name: str, x) -> tuple[torch.Tensor, bool]:
    """``x`` as a torch tensor (numpy shares memory) and whether it was a numpy array."""
    if isinstance(x, np.ndarray):
        return torch.from_numpy(x), True
    if isinstance(x, torch.Tensor):
        return x, False
    raise TypeError(f"{name} must be a torch.Tensor or numpy array, got {type(x).__name__}")


def _coil_axis(name: str, x: torch.Tensor, coil_axis: int) -> int:
    if not isinstance(coil_axis, int) or not -x.ndim <= coil_axis < x.ndim:
        raise ValueError(
            f"coil_axis must be an int in [{-x.ndim}, {x.ndim}) for {name} of shape "
            f"{tuple(x.shape)}, got {coil_axis!r}"
        )
    return coil_axis % x.ndim


def noise_covariance(noise, coil_axis: int = 0, dwell_ratio: float = 1.0):
    """Sample covariance Psi = dwell_ratio * N N^H / S of zero-mean noise samples.

    Args:
        noise: (C, ...) complex noise samples; every axis but ``coil_axis`` counts as
            samples (S in total, S >= C needed for a usable estimate).
        coil_axis: axis of the coils.
        dwell_ratio: noise-scan dwell time / data dwell time. Noise variance per sample
            scales with the receiver bandwidth 1 / dwell, so this gives the covariance of
            the data's noise when the noise scan used another bandwidth.

    Returns:
        (C, C) complex64 Hermitian covariance (numpy if ``noise`` was numpy).
    """
    x, was_numpy = as_tensor("noise", noise)
    check_finite("noise", x)
    ratio = check_positive("dwell_ratio", dwell_ratio)
    axis = _coil_axis("noise", x, coil_axis)
    samples = torch.movedim(x, axis, 0).reshape(x.shape[axis], -1).to(torch.complex128)
    n_coils, n_samples = samples.shape
    if n_samples < n_coils:
        raise ValueError(
            f"noise must hold at least as many samples as coils ({n_coils}), got {n_samples}"
        )
    cov = (ratio * samples @ samples.mH / n_samples).to(torch.complex64)
    return cov.numpy() if was_numpy else cov


def prewhitening_matrix(covariance):
    """W = L^{-1} with covariance = L L^H (lower-triangular Cholesky), so W Psi W^H = I.

    Args:
        covariance: (C, C) Hermitian positive definite noise covariance.

    Returns:
        (C, C) complex64 lower-triangular matrix (numpy if ``covariance`` was numpy).
    """
    psi, was_numpy = as_tensor("covariance", covariance)
    check_finite("covariance", psi)
    if psi.ndim != 2 or psi.shape[0] != psi.shape[1]:
        raise ValueError(f"covariance must be a square (C, C) matrix, got {tuple(psi.shape)}")
    psi = psi.to(torch.complex128)
    if not torch.allclose(psi, psi.mH, rtol=1e-4, atol=1e-6 * float(psi.abs().max())):
        raise ValueError("covariance must be Hermitian, got a non-Hermitian matrix")
    chol, info = torch.linalg.cholesky_ex(psi)
    if int(info) != 0:
        raise ValueError(
            "covariance must be positive definite, got a singular or indefinite matrix "
            "(too few noise samples, or a dead coil?)"
        )
    eye = torch.eye(psi.shape[0], dtype=psi.dtype, device=psi.device)
    w = torch.linalg.solve_triangular(chol, eye, upper=False).to(torch.complex64)
    return w.numpy() if was_numpy else w


def apply_coil_matrix(data, matrix, coil_axis: int = 0):
    """out[c] = sum_d matrix[c, d] data[d] along ``coil_axis`` (e.g. whiten data or maps).

    Args:
        data: (..., C, ...) array with the coils on ``coil_axis``.
        matrix: (C', C) matrix.
        coil_axis: axis of the coils in ``data``.

    Returns:
        array of the shape of ``data`` with C' coils, complex64 (numpy if ``data`` was).
    """
    x, was_numpy = as_tensor("data", data)
    m, _ = as_tensor("matrix", matrix)
    axis = _coil_axis("data", x, coil_axis)
    if m.ndim != 2 or m.shape[1] != x.shape[axis]:
        raise ValueError(
            f"matrix must have shape (C', {x.shape[axis]}) for data with "
            f"{x.shape[axis]} coils, got {tuple(m.shape)}"
        )
    moved = torch.movedim(x.to(torch.complex64), axis, -1)
    out = torch.movedim(moved @ m.to(device=x.device, dtype=torch.complex64).T, -1, axis)
    return out.numpy() if was_numpy else out


def prewhiten(
    kspace, noise, coil_axis: int = 0, noise_coil_axis: int = 0, dwell_ratio: float = 1.0
):
    """Whitened k-space W y along ``coil_axis``, with W from the noise samples.

    Args:
        kspace: k-space with the C coils on ``coil_axis``.
        noise: noise-scan samples with the same C coils on ``noise_coil_axis``.
        coil_axis: coil axis of ``kspace``.
        noise_coil_axis: coil axis of ``noise``.
        dwell_ratio: noise-scan dwell time / data dwell time (see :func:`noise_covariance`).

    Returns:
        whitened k-space, complex64, same shape (numpy if ``kspace`` was numpy).
    """
    cov = noise_covariance(noise, noise_coil_axis, dwell_ratio)
    return apply_coil_matrix(kspace, prewhitening_matrix(cov), coil_axis)


def readout_noise_variance(kspace, edge_fraction: float = 0.125) -> float:
    """Noise variance E|n|^2 per complex sample, averaged over coils, from the k-space alone.

    Where no noise scan was acquired: in the outer ``edge_fraction`` of every readout the
    signal is smooth and small, so second differences along the readout,
    (y[j+1] - 2 y[j] + y[j-1]) / sqrt(6), are noise of the samples' variance; the median
    absolute value of their real and imaginary parts (/ 0.6745) estimates its std robustly.
    Signal left at the edges only adds to it: an upper bound, within 8 % of the noise
    scan's value once the noise is >= 30 % of the k-space RMS and 2-10x too high on very
    clean scans (docs/spectral_design.md).

    Args:
        kspace: (C, ..., S) complex samples, readouts along the last axis (S >= 8).
        edge_fraction: share of each readout's samples used at either end, in (0, 0.5].

    Returns:
        float, in the squared units of ``kspace``.
    """
    x, _ = as_tensor("kspace", kspace)
    check_finite("kspace", x)
    if not 0 < edge_fraction <= 0.5:
        raise ValueError(f"edge_fraction must be in (0, 0.5], got {edge_fraction!r}")
    n = x.shape[-1] if x.ndim >= 2 else 0
    edge = max(3, int(n * edge_fraction))
    if x.ndim < 2 or n < 8:
        raise ValueError(
            f"kspace must have shape (C, ..., S) with S >= 8 samples per readout, "
            f"got {tuple(x.shape)}"
        )
    second = torch.cat([_second_difference(x[..., :edge]), _second_difference(x[..., -edge:])], -1)
    parts = torch.cat([second.real.reshape(x.shape[0], -1), second.imag.reshape(x.shape[0], -1)], 1)
    std_per_part = parts.abs().median(1).values / 0.6745
    return float((2 * std_per_part.double().square()).mean())


def _second_difference(x: torch.Tensor) -> torch.Tensor:
    """(x[j+1] - 2 x[j] + x[j-1]) / sqrt(6) along the last axis: unit gain on white noise."""
    x = x.to(torch.complex64)
    return (x[..., 2:] - 2 * x[..., 1:-1] + x[..., :-2]) / np.sqrt(6.0)
