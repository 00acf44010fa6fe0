import numpy as np
import pytest
import torch

from mrsolve.propeller.noise import (
    apply_coil_matrix,
    noise_covariance,
    prewhiten,
    prewhitening_matrix,
)

N_COILS = 5


def _mixing(seed=0):
    """A mixing matrix M; noise M z with white z (E|z|^2 = 1) has covariance M M^H."""
    rng = np.random.default_rng(seed)
    m = rng.standard_normal((N_COILS, N_COILS)) + 1j * rng.standard_normal((N_COILS, N_COILS))
    return 0.3 * np.eye(N_COILS) + 0.5 * m


def _white(shape, seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)) / np.sqrt(2)


def test_covariance_estimate_is_within_sampling_error():
    m = _mixing()
    n_samples = 20000
    noise = (m @ _white((N_COILS, n_samples), seed=1)).astype(np.complex64)
    cov = noise_covariance(noise)
    true = m @ m.conj().T
    assert isinstance(cov, np.ndarray) and cov.dtype == np.complex64
    # relative Frobenius error of a sample covariance is about sqrt(C / S) ~ 0.016
    assert np.linalg.norm(cov - true) / np.linalg.norm(true) < 0.05
    assert np.allclose(cov, noise @ noise.conj().T / n_samples, rtol=1e-4, atol=1e-5)
    # a noise scan at half the data's bandwidth (twice the dwell) has half the variance
    assert np.allclose(noise_covariance(noise, dwell_ratio=2.0), 2 * cov, rtol=1e-5, atol=1e-6)


def test_whitened_fresh_noise_has_identity_covariance():
    m = _mixing(seed=2)
    scan = torch.from_numpy((m @ _white((N_COILS, 20000), seed=3)).astype(np.complex64))
    # data noise: (samples_a, coils, samples_b) with the coils on axis 1
    fresh = (m @ _white((N_COILS, 40 * 500), seed=4)).reshape(N_COILS, 40, 500)
    data = torch.from_numpy(np.transpose(fresh, (1, 0, 2)).astype(np.complex64))
    white = prewhiten(data, scan, coil_axis=1)
    assert isinstance(white, torch.Tensor) and white.shape == data.shape
    samples = white.permute(1, 0, 2).reshape(N_COILS, -1).numpy()
    cov = samples @ samples.conj().T / samples.shape[1]
    assert np.abs(cov - np.eye(N_COILS)).max() < 0.06
    # before whitening the covariance is far from identity
    raw = np.transpose(data.numpy(), (1, 0, 2)).reshape(N_COILS, -1)
    assert np.abs(raw @ raw.conj().T / raw.shape[1] - np.eye(N_COILS)).max() > 0.5


def test_prewhitening_matrix_is_inverse_cholesky():
    m = _mixing(seed=5)
    cov = (m @ m.conj().T).astype(np.complex64)
    w = prewhitening_matrix(cov)
    assert np.allclose(w, np.tril(w), atol=1e-6)
    assert np.allclose(w, np.linalg.inv(np.linalg.cholesky(cov.astype(np.complex128))), atol=1e-4)
    assert np.allclose(w @ cov @ w.conj().T, np.eye(N_COILS), atol=1e-4)


def test_apply_coil_matrix_is_matrix_product_along_axis():
    rng = np.random.default_rng(6)
    data = (
        rng.standard_normal((3, N_COILS, 4)) + 1j * rng.standard_normal((3, N_COILS, 4))
    ).astype(np.complex64)
    matrix = rng.standard_normal((2, N_COILS)).astype(np.complex64)
    out = apply_coil_matrix(data, matrix, coil_axis=1)
    assert out.shape == (3, 2, 4)
    for i in range(3):
        for j in range(4):
            assert np.allclose(out[i, :, j], matrix @ data[i, :, j], atol=1e-5)
    assert np.allclose(apply_coil_matrix(data, matrix, coil_axis=-2), out)


def test_bad_input():
    good = np.ones((3, 10), dtype=np.complex64)
    with pytest.raises(ValueError, match="samples"):
        noise_covariance(np.ones((4, 2), dtype=np.complex64))
    with pytest.raises(TypeError, match="noise"):
        noise_covariance([[1, 2]])
    with pytest.raises(ValueError, match="coil_axis"):
        noise_covariance(good, coil_axis=2)
    with pytest.raises(ValueError, match="finite"):
        noise_covariance(np.full((2, 5), np.nan))
    with pytest.raises(ValueError, match="dwell_ratio"):
        noise_covariance(good, dwell_ratio=0)
    with pytest.raises(ValueError, match="square"):
        prewhitening_matrix(np.ones((2, 3)))
    with pytest.raises(ValueError, match="positive definite"):
        prewhitening_matrix(np.ones((2, 2)))
    with pytest.raises(ValueError, match="Hermitian"):
        prewhitening_matrix(np.array([[1.0, 0.5], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="matrix"):
        apply_coil_matrix(good, np.eye(4))


def test_readout_noise_variance_finds_the_noise_under_a_smooth_signal():
    from mrsolve.propeller.noise import readout_noise_variance

    coils, n = 4, 128
    stds = np.array([0.5, 1.0, 1.5, 2.0])
    noise = stds[:, None, None] * _white((coils, 40, n), seed=3)
    # a smooth echo peaked at the readout centre, 50x the noise there
    signal = 50 * np.exp(-(((np.arange(n) - n / 2) / (n / 10)) ** 2))
    est = readout_noise_variance((noise + signal).astype(np.complex64))
    assert est == pytest.approx(np.mean(stds**2), rel=0.08)
    # the estimate is an upper bound: an edge-rich signal only adds to it
    ramp = 0.3 * np.arange(n) * np.where(np.arange(n) % 2, 1, -1)
    assert readout_noise_variance((noise + ramp).astype(np.complex64)) > est


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kspace": np.zeros((2, 3, 6), np.complex64)}, "S >= 8"),
        ({"kspace": np.zeros((2, 3, 64), np.complex64), "edge_fraction": 0.7}, "edge_fraction"),
        ({"kspace": np.full((2, 64), np.nan, np.complex64)}, "kspace"),
    ],
)
def test_readout_noise_variance_rejects_bad_input(kwargs, match):
    from mrsolve.propeller.noise import readout_noise_variance

    with pytest.raises(ValueError, match=match):
        readout_noise_variance(**kwargs)
