import math

import numpy as np
import pytest
import torch

from mrsolve.compress import pack_codes, packed_size, unpack_codes


@pytest.mark.parametrize("bits", [1, 2, 3, 5, 7, 8, 11, 16, 24, 32])
@pytest.mark.parametrize("count", [1, 13, 64])
def test_round_trip_and_size(bits, count):
    rng = np.random.default_rng(bits * 100 + count)
    codes = torch.from_numpy(rng.integers(0, 2**bits, size=count, dtype=np.int64))
    codes[0] = 2**bits - 1  # the largest code must survive too
    packed = pack_codes(codes, bits)
    assert packed.dtype == torch.uint8
    assert packed.numel() == math.ceil(count * bits / 8) == packed_size(count, bits)
    assert torch.equal(unpack_codes(packed, bits, count), codes)


def test_bit_order_matches_numpy_packbits():
    # independent reference: numpy's packbits of the LSB-first bit stream
    codes = torch.tensor([5, 0, 7, 2, 1], dtype=torch.int64)
    bits = 3
    stream = [(int(c) >> k) & 1 for c in codes for k in range(bits)]
    expected = np.packbits(np.array(stream, dtype=np.uint8), bitorder="little")
    assert np.array_equal(pack_codes(codes, bits).numpy(), expected)


def test_unpack_rejects_wrong_length():
    with pytest.raises(ValueError, match="packed must hold 2 bytes"):
        unpack_codes(torch.zeros(3, dtype=torch.uint8), 3, 5)
