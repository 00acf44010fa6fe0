import math

import numpy as np
import pytest
import sigpy.mri
import torch

from mrsolve.propeller.coils import birdcage_maps


def test_normalized_maps_match_sigpy_birdcage():
    ours = birdcage_maps(6, (20, 24), radius=1.5, normalize=True)
    ref = sigpy.mri.birdcage_maps((6, 20, 24), r=1.5)
    assert ours.shape == (6, 20, 24) and ours.dtype == torch.complex64
    np.testing.assert_allclose(ours.numpy(), ref, atol=1e-5)
    torch.testing.assert_close(ours.abs().square().sum(0), torch.ones(20, 24))


def test_each_coil_is_strongest_towards_its_angle():
    n_coils, n = 8, 32
    maps = birdcage_maps(n_coils, (n, n), normalize=False)
    assert maps.abs().max() == pytest.approx(1.0)
    for c in range(n_coils):
        row, col = divmod(int(maps[c].abs().argmax()), n)
        angle = math.atan2(row - n / 2, col - n / 2)
        diff = (angle - 2 * math.pi * c / n_coils + math.pi) % (2 * math.pi) - math.pi
        assert abs(diff) < math.radians(20)


def test_maps_are_smooth():
    maps = birdcage_maps(4, (64, 64))
    step = (maps[:, 1:] - maps[:, :-1]).abs().max()
    assert step < 0.1 * maps.abs().max()


def test_errors():
    with pytest.raises(ValueError, match="radius"):
        birdcage_maps(4, (8, 8), radius=0.9)
    with pytest.raises(ValueError, match="n_coils"):
        birdcage_maps(0, (8, 8))
    with pytest.raises(ValueError, match="image_shape"):
        birdcage_maps(2, (8,))
