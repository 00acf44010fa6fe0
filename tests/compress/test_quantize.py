import math

import numpy as np
import pytest
import torch

from mrsolve.compress import naive_quantize, quantize


def _levels(lo, hi, bits):
    return lo + np.arange(2**bits) * (hi - lo) / (2**bits - 1)


@pytest.mark.parametrize("bits", [1, 2, 3, 5])
def test_nearest_rounding_picks_closest_level(bits):
    rng = np.random.default_rng(bits)
    x = rng.standard_normal((9, 7))
    q = quantize(x, bits)
    levels = _levels(x.min(), x.max(), bits)
    # brute force: the closest of the 2**bits levels (ties are measure zero here)
    expected = levels[np.abs(x[..., None] - levels).argmin(axis=-1)]
    out = q.dense()
    assert isinstance(out, np.ndarray) and out.shape == x.shape
    np.testing.assert_allclose(out, expected, rtol=0, atol=1e-12)
    assert np.abs(out - x).max() <= (x.max() - x.min()) / (2**bits - 1) / 2 + 1e-12


def test_one_bit_levels_are_min_and_max():
    x = torch.tensor([[0.0, 0.2, 0.9], [1.0, 0.49, 0.51]])
    out = quantize(x, 1).dense()
    assert torch.equal(out, torch.tensor([[0.0, 0.0, 1.0], [1.0, 0.0, 1.0]]))


def test_stochastic_rounding_is_unbiased_and_uses_neighbouring_levels():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.uniform(-1, 1, size=30))
    bits, draws = 2, 4000
    # one call quantizes `draws` copies of every entry: independent draws, same scale
    samples = quantize(x[:, None].expand(30, draws), bits, rounding="stochastic", seed=1).dense()
    step = float(x.max() - x.min()) / (2**bits - 1)
    # every draw is one of the two levels around x
    assert ((samples - x[:, None]).abs() <= step + 1e-12).all()
    # mean over draws -> x; per-entry standard error <= step / (2 sqrt(draws))
    err = (samples.mean(1) - x).abs().max()
    assert err < 5 * step / (2 * math.sqrt(draws))
    # nearest rounding of the same x is biased by far more than that
    bias_nearest = (quantize(x, bits).dense() - x).abs().max()
    assert bias_nearest > 5 * err


def test_per_block_scales_match_numpy_reference():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 8)).astype(np.float32)
    bits, block = 3, 6
    q = quantize(x, bits, block_size=block)
    flat = x.reshape(-1)
    blocks = [flat[i : i + block] for i in range(0, flat.size, block)]
    assert q.offset.numel() == len(blocks) == math.ceil(40 / 6)
    expected = np.concatenate(
        [
            _levels(b.min(), b.max(), bits)[
                np.abs(b[:, None] - _levels(b.min(), b.max(), bits)).argmin(1)
            ]
            for b in blocks
        ]
    )
    np.testing.assert_allclose(q.dense().reshape(-1), expected, atol=1e-6)
    # per-block scales beat one scale for the whole matrix
    assert np.linalg.norm(q.dense() - x) < np.linalg.norm(quantize(x, bits).dense() - x)


@pytest.mark.parametrize("bits,block", [(1, None), (3, None), (3, 7), (8, 5), (13, None)])
def test_bit_accounting_equals_packed_storage(bits, block):
    x = torch.randn(11, 9, generator=torch.Generator().manual_seed(bits))
    q = quantize(x, bits, block_size=block)
    numel = x.numel()
    n_blocks = 1 if block is None else math.ceil(numel / block)
    storage_bytes = q.codes.numel() * q.codes.element_size() + (
        q.offset.numel() * q.offset.element_size() + q.step.numel() * q.step.element_size()
    )
    assert q.codes.dtype == torch.uint8
    assert q.bits == 8 * storage_bytes
    assert q.bits == 8 * math.ceil(numel * bits / 8) + 2 * 32 * n_blocks
    assert q.bits_per_entry == q.bits / numel
    assert torch.equal(q.integer_codes().max(), torch.tensor(2**bits - 1))


def test_high_bits_exact_and_constant_input_exact():
    x = torch.randn(7, 6, dtype=torch.float64)
    assert torch.allclose(quantize(x, 32).dense(), x, rtol=0, atol=1e-9)
    c = torch.full((3, 4), 2.5)
    assert torch.equal(quantize(c, 1).dense(), c)


def test_seed_reproducible_and_float_dtype_kept():
    x = torch.randn(8, 8)
    a = quantize(x, 2, rounding="stochastic", seed=7).dense()
    b = quantize(x, 2, rounding="stochastic", seed=7).dense()
    assert torch.equal(a, b) and a.dtype == torch.float32
    assert quantize(np.arange(12, dtype=np.uint8).reshape(3, 4), 4).dense().dtype == np.float32


@pytest.mark.parametrize(
    "kwargs,err,match",
    [
        ({"bits": 0}, ValueError, "bits must be between 1 and 32"),
        ({"bits": 33}, ValueError, "bits must be between 1 and 32"),
        ({"bits": 2.5}, TypeError, "bits must be an integer"),
        ({"bits": 2, "rounding": "up"}, ValueError, "rounding must be one of"),
        ({"bits": 2, "block_size": 0}, ValueError, "block_size must be >= 1"),
    ],
)
def test_bad_arguments(kwargs, err, match):
    with pytest.raises(err, match=match):
        quantize(torch.randn(3, 3), **kwargs)


def test_bad_values():
    with pytest.raises(ValueError, match="must be finite"):
        naive_quantize(np.array([[1.0, np.nan]]), 4)
    with pytest.raises(TypeError, match="real-valued"):
        quantize(torch.randn(2, 2, dtype=torch.complex64), 4)
    with pytest.raises(ValueError, match="2-D matrix"):
        naive_quantize(np.ones(3), 4)
