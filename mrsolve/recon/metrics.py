"""Image-quality metrics of methods/propeller.md.

NRMSE and SSIM compare magnitudes after a least-squares scale fit of the estimate
to the truth; fat-fraction MAE is taken inside the object mask and field-map RMSE
(Hz) inside the water mask. Every metric also has the score of the trivial
all-zero predictor, so a number can be read against "predict nothing".
"""

from __future__ import annotations

import numpy as np
from skimage.metrics import structural_similarity


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
