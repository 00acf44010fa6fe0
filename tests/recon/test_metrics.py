import numpy as np
import pytest
from scipy import ndimage

from mrsolve.recon import metrics


def test_nrmse_is_scale_invariant_and_matches_definition():
    rng = np.random.default_rng(0)
    truth = rng.random((16, 16)) + 1j * rng.random((16, 16))
    noisy = truth + 0.1 * rng.standard_normal((16, 16))
    a = np.abs(noisy)
    scale = (a * np.abs(truth)).sum() / (a * a).sum()
    expected = np.linalg.norm(scale * a - np.abs(truth)) / np.linalg.norm(np.abs(truth))
    assert metrics.nrmse(noisy, truth) == pytest.approx(expected, rel=1e-12)
    assert metrics.nrmse(7.0 * noisy, truth) == pytest.approx(expected, rel=1e-9)
    assert metrics.nrmse(truth, truth) < 1e-12


def _hfen_reference(estimate, truth, sigma=1.5):
    a, ref = np.abs(estimate), np.abs(truth)
    scale = (a * ref).sum() / (a * a).sum()
    log_ref = ndimage.gaussian_laplace(ref, sigma)
    return np.linalg.norm(ndimage.gaussian_laplace(scale * a, sigma) - log_ref) / np.linalg.norm(
        log_ref
    )


def test_hfen_matches_definition_and_penalizes_blur_more_than_nrmse():
    rng = np.random.default_rng(2)
    truth = np.zeros((24, 20), dtype=complex)
    truth[5:19, 4:15] = np.exp(1j * rng.random((14, 11)))
    truth[9:13, 8:11] *= 3.0
    noisy = truth + 0.1 * (rng.standard_normal(truth.shape) + 1j * rng.standard_normal(truth.shape))
    assert metrics.hfen(noisy, truth) == pytest.approx(_hfen_reference(noisy, truth), rel=1e-10)
    assert metrics.hfen(2.5 * noisy, truth) == pytest.approx(metrics.hfen(noisy, truth), rel=1e-9)
    assert metrics.hfen(4.0 * truth, truth) < 1e-12
    blurred = ndimage.gaussian_filter(np.abs(truth), 1.0)
    assert metrics.hfen(blurred, truth) > 1.1 * metrics.nrmse(blurred, truth)


def test_hfen_filters_each_frame_of_a_stack_on_its_own():
    rng = np.random.default_rng(3)
    truth = rng.random((3, 12, 12))
    est = truth + 0.2 * rng.random(truth.shape)  # positive: |est| = est
    a = (est * truth).sum() / (est * est).sum()
    logs = [ndimage.gaussian_laplace(frame, 1.5) for frame in truth]
    diffs = [ndimage.gaussian_laplace(a * e, 1.5) - r for e, r in zip(est, logs, strict=True)]
    expected = np.sqrt(sum((d**2).sum() for d in diffs) / sum((r**2).sum() for r in logs))
    assert metrics.hfen(est, truth) == pytest.approx(expected, rel=1e-10)


def test_hfen_rejects_bad_input():
    with pytest.raises(ValueError, match="sigma_px must be a positive number"):
        metrics.hfen(np.ones((4, 4)), np.ones((4, 4)), sigma_px=0)
    with pytest.raises(ValueError, match="truth must be an image"):
        metrics.hfen(np.ones(4), np.ones(4))
    with pytest.raises(ValueError, match="estimate must have the truth's shape"):
        metrics.hfen(np.ones((4, 4)), np.ones((4, 5)))


def test_ssim_one_for_identical_and_lower_for_noise():
    rng = np.random.default_rng(1)
    truth = np.zeros((32, 32))
    truth[8:24, 8:24] = 1.0
    assert metrics.ssim(3 * truth, truth) == pytest.approx(1.0)
    assert metrics.ssim(truth + 0.3 * rng.standard_normal(truth.shape), truth) < 0.8


def test_masked_errors():
    truth = np.array([[0.0, 0.5], [1.0, 0.2]])
    est = np.array([[0.1, 0.5], [0.0, 0.2]])
    mask = np.array([[True, True], [True, False]])
    assert metrics.fat_fraction_mae(est, truth, mask) == pytest.approx((0.1 + 0 + 1.0) / 3)
    assert metrics.field_map_rmse(est * 10, truth * 10, mask) == pytest.approx(
        np.sqrt((1.0 + 0 + 100.0) / 3)
    )


def test_shape_mismatch_names_argument():
    with pytest.raises(ValueError, match="estimate must have the truth's shape"):
        metrics.nrmse(np.zeros((2, 2)), np.zeros((3, 3)))
