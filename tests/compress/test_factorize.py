import math

import numpy as np
import pytest
import torch

from mrsolve.compress import (
    LowRankFactorization,
    compress_matrix,
    dsvd,
    lplr,
    lplr_svd,
    naive_quantize,
    rank_for_budget,
)
from mrsolve.solvers.sketching import GaussianSketch


def _low_rank_plus_noise(n=60, d=40, k=5, noise=0.3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, k)) @ rng.standard_normal((k, d)) + noise * rng.standard_normal(
        (n, d)
    )


@pytest.mark.parametrize("method", [lplr, lplr_svd, dsvd])
def test_full_rank_high_bits_is_exact(method):
    a = torch.from_numpy(_low_rank_plus_noise(30, 20))
    res = method(a, 20, 32, 32, seed=0)
    assert isinstance(res, LowRankFactorization) and res.rank == 20
    assert torch.allclose(res.dense(), a, rtol=0, atol=1e-6)
    assert res.relative_error(a) < 1e-7
    assert naive_quantize(a, 32).relative_error(a) < 1e-9


def test_exactly_low_rank_matrix_is_recovered_by_lplr():
    a = _low_rank_plus_noise(50, 35, k=4, noise=0.0)
    assert lplr(a, 4, 32, 32, seed=3).relative_error(a) < 1e-7


def test_dsvd_at_high_bits_reaches_eckart_young():
    a = _low_rank_plus_noise(40, 30, k=8, noise=0.5)
    s = np.linalg.svd(a, compute_uv=False)
    optimum = math.sqrt((s[6:] ** 2).sum() / (s**2).sum())
    assert dsvd(a, 6, 32, 32).relative_error(a) == pytest.approx(optimum, rel=1e-6)
    assert lplr_svd(a, 6, 32, 32, seed=1).relative_error(a) == pytest.approx(optimum, rel=1e-5)


def test_dsvd_matches_numpy_reference_with_sign_convention():
    a = _low_rank_plus_noise(30, 20)
    u, s, vh = np.linalg.svd(a, full_matrices=False)
    u, s, vh = u[:, :4], s[:4], vh[:4]
    signs = np.sign(u[np.abs(u).argmax(0), np.arange(4)])
    u, sv = u * signs, (s * signs)[:, None] * vh

    def nearest(x, bits):  # brute-force nearest of 2**bits levels over [min, max]
        levels = x.min() + np.arange(2**bits) * (x.max() - x.min()) / (2**bits - 1)
        return levels[np.abs(x[..., None] - levels).argmin(-1)]

    res = dsvd(a, 4, 3, 5)
    np.testing.assert_allclose(res.left.dense().numpy(), nearest(u, 3), atol=1e-10)
    np.testing.assert_allclose(res.dense(), nearest(u, 3) @ nearest(sv, 5), atol=1e-10)
    # the same matrix with its rows reversed gives the same factorization, rows reversed
    flipped = dsvd(a[::-1].copy(), 4, 3, 5)
    np.testing.assert_allclose(flipped.dense()[::-1], res.dense(), atol=1e-10)


def test_right_factor_is_the_least_squares_fit_to_the_quantized_left():
    a = _low_rank_plus_noise()
    res = lplr(a, 8, 2, 32, seed=5)
    left = res.left.dense().numpy()
    w = np.linalg.lstsq(left, a, rcond=None)[0]
    np.testing.assert_allclose(res.right.dense().numpy(), w, atol=1e-6)
    # the left factor really is 2-bit: four distinct values
    assert len(np.unique(left)) <= 4


@pytest.mark.parametrize("bits_left,bits_right", [(3, 3), (4, 2), (8, 8)])
def test_paper_error_bound_holds_over_seeds(bits_left, bits_right):
    """E||LR - A||^2 <= sketch error + quantization terms, with unbiased rounding.

    Given Y = A S: E||(I - P_L) A||^2 <= ||(I - P_Y) A||^2 + n D1^2/4 ||Y^+ A||^2 (compare
    with the feasible W = Y^+ A), and quantizing W = L^+ A adds d D2^2/4 ||L||^2; D1, D2 are
    the level spacings. Over Gaussian sketches with m = k + p,
    E||(I - P_Y) A||^2 <= (1 + k / (p - 1)) ||A - A_k||^2 (Halko, Martinsson, Tropp 2011).
    """
    n, d, k, m = 60, 40, 5, 10
    a = _low_rank_plus_noise(n, d, k)
    s = np.linalg.svd(a, compute_uv=False)
    sketch_bound = (1 + k / (m - k - 1)) * (s[k:] ** 2).sum()
    errs, bounds, quant = [], [], []
    for seed in range(40):
        sk = GaussianSketch(d, m, seed=1000 + seed, dtype=torch.float64)
        res = lplr(a, m, bits_left, bits_right, sketch=sk, rounding="stochastic", seed=seed)
        y = a @ sk.matrix().numpy()
        y_pinv_a = np.linalg.pinv(y) @ a
        d1 = (y.max() - y.min()) / (2**bits_left - 1)
        left = res.left.dense().numpy()
        w = np.linalg.lstsq(left, a, rcond=None)[0]
        d2 = (w.max() - w.min()) / (2**bits_right - 1)
        q = (
            n * d1**2 / 4 * np.linalg.norm(y_pinv_a) ** 2
            + d * d2**2 / 4 * np.linalg.norm(left) ** 2
        )
        quant.append(q)
        bounds.append(np.linalg.norm(a - y @ y_pinv_a) ** 2 + q)
        errs.append(np.linalg.norm(a - res.dense()) ** 2)
    assert np.mean(errs) <= np.mean(bounds)
    assert np.mean(errs) <= sketch_bound + np.mean(quant)


def test_power_iterations_approach_the_truncated_svd():
    rng = np.random.default_rng(2)
    u, _ = np.linalg.qr(rng.standard_normal((80, 40)))
    v, _ = np.linalg.qr(rng.standard_normal((40, 40)))
    a = (u * 0.8 ** np.arange(40)) @ v.T  # slowly decaying spectrum
    optimum = dsvd(a, 5, 32, 32).relative_error(a)
    plain = lplr(a, 5, 32, 32, seed=0).relative_error(a)
    powered = lplr(a, 5, 32, 32, power_iterations=3, seed=0).relative_error(a)
    assert powered < plain
    assert powered == pytest.approx(optimum, rel=0.02)


def test_rank_for_budget_and_bits_used():
    assert rank_for_budget((1000, 1000), 1, 4, 8) == 83  # the methods note's Shepp-Logan case
    assert rank_for_budget((1000, 1000), 1, 8, 8) == 62
    assert rank_for_budget((10, 10), 64, 1, 1) == 10  # capped at full rank
    n, d, b1, b2 = 50, 30, 3, 5
    r = rank_for_budget((n, d), 2, b1, b2)
    assert r == math.floor(n * d * 2 / (n * b1 + d * b2))
    res = lplr(_low_rank_plus_noise(n, d), r, b1, b2, seed=0)
    codes = 8 * math.ceil(n * r * b1 / 8) + 8 * math.ceil(r * d * b2 / 8)
    assert res.bits == codes + 4 * 64  # one (offset, step) pair per factor, float64
    assert codes <= 2 * n * d + 16


def test_lplr_beats_naive_quantization_at_one_bit():
    a = _low_rank_plus_noise(120, 100, k=3, noise=0.05)
    nq = compress_matrix(a, 1, method="nq").relative_error(a)
    for method in ("lplr", "lplr-svd", "dsvd"):
        assert compress_matrix(a, 1, method=method, seed=0).relative_error(a) < nq


def test_seeds_sketches_and_numpy_round_trip():
    a = _low_rank_plus_noise().astype(np.float32)
    r1 = lplr(a, 6, 4, 8, seed=11).dense()
    r2 = lplr(a, 6, 4, 8, seed=11).dense()
    assert isinstance(r1, np.ndarray) and r1.dtype == np.float32 and np.array_equal(r1, r2)
    for sketch in ("sparse-jl", "srht", "haar"):
        assert lplr(a, 6, 8, 8, sketch=sketch, seed=1).relative_error(a) < 0.5
    t = lplr(torch.from_numpy(a), 6, 4, 8, seed=11).dense()
    assert isinstance(t, torch.Tensor) and np.array_equal(t.numpy(), r1)


@pytest.mark.parametrize(
    "call,err,match",
    [
        (lambda a: lplr(a, 5, 0, 8), ValueError, "bits_left must be between 1 and 32"),
        (lambda a: dsvd(a, 5, 4, 40), ValueError, "bits_right must be between 1 and 32"),
        (lambda a: lplr(a, 41, 4, 8), ValueError, r"rank must be between 1 and min\(60, 40\)"),
        (lambda a: lplr_svd(a, 0, 4, 8), ValueError, "rank must be between 1"),
        (lambda a: lplr(a, 2.5, 4, 8), TypeError, "rank must be an integer"),
        (lambda a: lplr(a, 5, 4, 8, power_iterations=-1), ValueError, "power_iterations"),
        (lambda a: lplr(a, 5, 4, 8, sketch="fourier"), ValueError, "sketch must be one of"),
        (
            lambda a: lplr(a, 5, 4, 8, sketch=GaussianSketch(40, 6)),
            ValueError,
            "sketch must be 40 x 5",
        ),
        (lambda a: lplr(a[0], 5, 4, 8), ValueError, "A must be a 2-D matrix"),
        (lambda a: lplr(a.tolist(), 5, 4, 8), TypeError, "A must be a numpy array"),
        (lambda a: compress_matrix(a, 1.5, method="nq"), ValueError, "whole number"),
        (lambda a: compress_matrix(a.tolist(), 1), TypeError, "a must be a numpy array"),
        (lambda a: compress_matrix(a, 1, method="pca"), ValueError, "method must be one of"),
        (lambda a: rank_for_budget(a.shape, 0.01, 4, 8), ValueError, "too small for a rank-1"),
        (lambda a: rank_for_budget(a.shape, -1, 4, 8), ValueError, "bits_per_entry must be > 0"),
    ],
)
def test_bad_input_raises_clear_errors(call, err, match):
    with pytest.raises(err, match=match):
        call(_low_rank_plus_noise())


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_non_finite_entries_raise(bad):
    a = _low_rank_plus_noise()
    a[3, 4] = bad
    for f in (lambda: lplr(a, 5, 4, 8), lambda: dsvd(a, 5, 4, 8), lambda: naive_quantize(a, 2)):
        with pytest.raises(ValueError, match="A must be finite"):
            f()


def test_relative_error_checks_its_argument():
    a = _low_rank_plus_noise()
    res = dsvd(a, 5, 4, 8)
    with pytest.raises(ValueError, match=r"a must have shape \(60, 40\)"):
        res.relative_error(a[:10])
    with pytest.raises(ValueError, match="all zeros"):
        res.relative_error(np.zeros_like(a))
