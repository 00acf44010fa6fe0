"""Image-quality metrics of methods/propeller.md.

NRMSE, HFEN and SSIM compare magnitudes after a least-squares scale fit of the
estimate to the truth (HFEN, the NRMSE of Laplacian-of-Gaussian filtered magnitudes,
sees the loss of edges and fine detail that NRMSE alone forgives); fat-fraction MAE is taken inside the object mask and field-map RMSE
(Hz) inside the water mask. Every metric also has the score of the trivial
all-zero predictor, so a number can be read against "predict nothing".
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from skimage.metrics import structural_similarity

HFEN_SIGMA_PX = 1.5


def _as_numpy(a) -> np.ndarray:
    return a.detach().cpu().numpy() if hasattr(a, "detach") else np.asarray(a)


def _check_same_shape(estimate: np.ndarray, truth: np.ndarray) -> None:
    if estimate.shape != truth.shape:
        raise ValueError(
            f"estimate must have the truth's shape {truth.shape}, got {estimate.shape}"
        )


def scale_fit(estimate, truth) -> np.ndarray:
    """|estimate| scaled by the real a minimizing || a |estimate| - |truth| ||."""
    est, ref = np.abs(_as_numpy(estimate)), np.abs(_as_numpy(truth))
    _check_same_shape(est, ref)
    denom = float((est * est).sum())
    return est * (float((est * ref).sum()) / denom if denom > 0 else 0.0)


def nrmse(estimate, truth, mask=None) -> float:
    """||a |est| - |truth||| / || |truth| || after the least-squares scale a (optionally in mask)."""
    est, ref = scale_fit(estimate, truth), np.abs(_as_numpy(truth))
    if mask is not None:
        m = _as_numpy(mask).astype(bool)
        est, ref = est[m], ref[m]
    return float(np.linalg.norm(est - ref) / max(np.linalg.norm(ref), 1e-30))


def hfen(estimate, truth, sigma_px: float = HFEN_SIGMA_PX) -> float:
    """High-frequency error norm ||LoG(a |est|) - LoG(|truth|)|| / ||LoG(|truth|)||.

    LoG is the Laplacian of Gaussian of width ``sigma_px`` pixels over the last two
    axes (each frame of a (T, ny, nx) stack on its own); a is the least-squares scale of
    :func:`nrmse`. Raises ValueError for shapes that differ or have fewer than two axes,
    or a non-positive ``sigma_px``.
    """
    if not isinstance(sigma_px, int | float) or not sigma_px > 0:
        raise ValueError(f"sigma_px must be a positive number, got {sigma_px!r}")
    est, ref = scale_fit(estimate, truth), np.abs(_as_numpy(truth)).astype(np.float64)
    if ref.ndim < 2:
        raise ValueError(f"truth must be an image (..., ny, nx), got shape {ref.shape}")
    frames = zip(est.reshape(-1, *ref.shape[-2:]), ref.reshape(-1, *ref.shape[-2:]), strict=True)
    errors, norms = [], []
    for e, r in frames:
        log_ref = ndimage.gaussian_laplace(r, sigma_px)
        errors.append(ndimage.gaussian_laplace(e.astype(np.float64), sigma_px) - log_ref)
        norms.append(log_ref)
    return float(np.linalg.norm(errors) / max(np.linalg.norm(norms), 1e-30))


def ssim(estimate, truth) -> float:
    """SSIM of the scale-fitted magnitude against |truth| (data range = max |truth|)."""
    est, ref = scale_fit(estimate, truth), np.abs(_as_numpy(truth))
    if est.ndim == 3:  # dynamic: mean over frames
        return float(np.mean([ssim(e, r) for e, r in zip(est, ref, strict=True)]))
    return float(structural_similarity(est, ref, data_range=float(ref.max() - ref.min()) or 1.0))


def fat_fraction_mae(estimate, truth, mask) -> float:
    """Mean |ff_est - ff_true| inside ``mask``."""
    est, ref = _as_numpy(estimate).astype(np.float64), _as_numpy(truth).astype(np.float64)
    _check_same_shape(est, ref)
    m = np.broadcast_to(_as_numpy(mask).astype(bool), ref.shape)
    return float(np.abs(est[m] - ref[m]).mean())


def field_map_rmse(estimate_hz, truth_hz, mask) -> float:
    """Root-mean-square field-map error in Hz inside ``mask``."""
    est, ref = _as_numpy(estimate_hz).astype(np.float64), _as_numpy(truth_hz).astype(np.float64)
    _check_same_shape(est, ref)
    m = np.broadcast_to(_as_numpy(mask).astype(bool), ref.shape)
    return float(np.sqrt(((est[m] - ref[m]) ** 2).mean()))
