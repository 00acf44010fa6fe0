import numpy as np
import pytest

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
