"""Coil compression against an explicit SVD and the exactness of the compressed model."""

import pytest
import torch

from mrsolve.propeller.coil_compression import apply_coil_compression, coil_compression_matrix
from mrsolve.propeller.coils import birdcage_maps
from mrsolve.propeller.nufft import NUFFT


def _coil_data(n_coils: int = 6, n: int = 16):
    gen = torch.Generator().manual_seed(0)
    maps = birdcage_maps(n_coils, (n, n))
    image = torch.randn(n, n, dtype=torch.complex64, generator=gen)
    traj = torch.rand(200, 2, generator=gen) * n - n / 2
    nufft = NUFFT(traj, (n, n), batch_shape=(n_coils,))
    return maps, image, nufft, nufft(maps * image)


@pytest.mark.parametrize("energy", [0.9, 0.99, 0.9999])
def test_keeps_fewest_singular_directions_reaching_the_energy(energy):
    _, _, _, y = _coil_data()
    s = torch.linalg.svdvals(y.to(torch.complex128))  # independent reference: full SVD
    share = (s**2).cumsum(0) / (s**2).sum()
    expected = int((share < energy).sum()) + 1
    u = coil_compression_matrix(y, energy)
    assert u.shape == (y.shape[0], expected)
    assert float((u.conj().T @ u - torch.eye(expected)).abs().max()) < 1e-5
    kept = apply_coil_compression(y, u).abs().square().sum() / y.abs().square().sum()
    assert float(kept) == pytest.approx(float(share[expected - 1]), rel=1e-4)
    assert float(kept) >= energy - 1e-6


def test_compressed_model_is_exact_for_virtual_maps():
    maps, image, nufft, y = _coil_data()
    u = coil_compression_matrix(y, 0.99)
    virtual_maps = apply_coil_compression(maps, u)
    model = NUFFT(nufft.traj, (16, 16), batch_shape=(u.shape[1],))(virtual_maps * image)
    data = apply_coil_compression(y, u)
    assert float((model - data).norm() / data.norm()) < 1e-5


def test_energy_one_is_identity_and_bad_input_raises():
    _, _, _, y = _coil_data()
    assert torch.equal(coil_compression_matrix(y, 1.0), torch.eye(6, dtype=torch.complex64))
    with pytest.raises(ValueError, match="energy"):
        coil_compression_matrix(y, 1.5)
    with pytest.raises(ValueError, match="kspace"):
        coil_compression_matrix(y.real, 0.9)
    with pytest.raises(ValueError, match="coils"):
        apply_coil_compression(y[:3], coil_compression_matrix(y, 0.9))
