"""Coil compression: project multi-coil k-space onto its dominant virtual coils.

The data of C receive coils span few directions in coil space: with the SVD of the
(C, samples) k-space matrix Y = U S V^H, the virtual coils Y' = U_K^H Y keep the K
directions that carry a share ``energy`` of sum |Y|^2 (Buehrer et al., MRM 2007; Huang
et al., MRI 2008). The model stays exact: every coil's signal is a linear map of the
image, NUFFT(S_c x), and U_K^H commutes with it, so the virtual coils see the virtual
sensitivities U_K^H S. What is dropped are the data's weakest coil-space directions;
with prewhitened data (white noise, unit variance per coil) U_K is unitary on them and
their noise stays white. A reconstruction then runs K coils instead of C: its cost per
iteration scales with the number of coils.

Written here because none of the project's libraries offers it (sigpy does not; BART is
not a Python dependency); it is one SVD of a C x C matrix.
"""

from __future__ import annotations

import torch

from mrsolve.solvers.validation import check_finite, check_share


def coil_compression_matrix(kspace: torch.Tensor, energy: float) -> torch.Tensor:
    """(C, K) orthonormal virtual-coil basis U_K of ``kspace`` (C, ...).

    K is the fewest leading left singular vectors whose squared singular values sum to at
    least ``energy`` of the total (``energy`` in (0, 1]; 1 keeps every coil, K = C, and
    returns the identity so that nothing is rotated).
    """
    if not isinstance(kspace, torch.Tensor) or kspace.ndim < 2 or not kspace.is_complex():
        raise ValueError(
            f"kspace must be a complex (C, ...) tensor, got {getattr(kspace, 'shape', kspace)!r}"
        )
    energy = check_share("energy", energy)
    n_coils = kspace.shape[0]
    eye = torch.eye(n_coils, dtype=torch.complex64, device=kspace.device)
    if energy == 1:
        return eye
    check_finite("kspace", kspace)
    samples = kspace.reshape(n_coils, -1).to(torch.complex128)
    gram = samples @ samples.conj().T  # (C, C): eigenvectors = left singular vectors
    power, vectors = torch.linalg.eigh(gram)  # ascending
    power, vectors = power.flip(0).clamp_min(0), vectors.flip(1)
    total = float(power.sum())
    if total == 0:
        return eye[:, :1]
    share = power.cumsum(0) / total
    keep = min(int((share < energy - 1e-12).sum()) + 1, n_coils)
    return vectors[:, :keep].to(torch.complex64)


def apply_coil_compression(x: torch.Tensor, matrix: torch.Tensor) -> torch.Tensor:
    """Virtual coils U_K^H x of coil data or sensitivities ``x`` (C, ...) -> (K, ...)."""
    if x.shape[0] != matrix.shape[0]:
        raise ValueError(
            f"x must have {matrix.shape[0]} coils along its first axis, got shape {tuple(x.shape)}"
        )
    flat = x.reshape(x.shape[0], -1).to(torch.complex64)
    return (matrix.conj().T @ flat).reshape(matrix.shape[1], *x.shape[1:])
