"""Small simulated scans and files shared by the GUI tests (32 px, 2 coils)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mrsolve.data.ismrmrd_io import write_ismrmrd
from mrsolve.data.results import Reconstruction, write_result
from mrsolve.data.simulate import simulate
from mrsolve.gui._layers import raw_layers


@pytest.fixture(scope="session")
def small_sim():
    """Water only, on resonance: gridding must then reproduce the object closely."""
    return simulate(size=32, n_coils=2, n_blades=6, n_lines=8, fat=False, max_offres_hz=0.0, seed=1)


@pytest.fixture(scope="session")
def small_raw_layers(small_sim):
    """The reader's layers of ``small_sim`` (they carry the scan for the widget)."""
    return raw_layers(small_sim.scan, "scan")


@pytest.fixture(scope="session")
def raw_file(small_sim, tmp_path_factory):
    return write_ismrmrd(tmp_path_factory.mktemp("raw") / "scan.h5", small_sim.scan)


@pytest.fixture(scope="session")
def result():
    """A result with every map; the spectral volume has 5 bins at -400, -300, ..., 0 Hz;
    the field-map std is at its cap (115.47 Hz, no signal) in the first 8 rows."""
    rng = np.random.default_rng(0)

    def cplx(*shape):
        z = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
        return torch.as_tensor(z, dtype=torch.complex64)

    water, fat, volume = cplx(32, 32), cplx(32, 32), cplx(5, 32, 32)
    field_std = rng.uniform(1.0, 20.0, (32, 32))
    field_std[:8] = 200 / np.sqrt(3)
    return Reconstruction(
        image=water + fat,
        water=water,
        fat=fat,
        fat_fraction=fat.abs() / (water.abs() + fat.abs()),
        field_map_hz=torch.as_tensor(rng.uniform(-80, 120, (32, 32)), dtype=torch.float32),
        fat_fraction_std=torch.as_tensor(rng.uniform(0.0, 0.05, (32, 32)), dtype=torch.float32),
        field_map_std_hz=torch.as_tensor(field_std, dtype=torch.float32),
        spectral_volume=volume,
        frequencies_hz=torch.arange(-400.0, 1.0, 100.0),
        method="gridding",
    )


@pytest.fixture(scope="session")
def result_file(result, tmp_path_factory):
    return write_result(tmp_path_factory.mktemp("result") / "rec.h5", result)
