"""Output and ground-truth files: layout checked with h5py directly, atomic writes, errors."""

import hashlib
import json
import os

import h5py
import numpy as np
import pytest
import torch

import mrsolve.data.results as results
from mrsolve.data.results import (
    GroundTruth,
    Reconstruction,
    read_result,
    read_truth,
    sha256_file,
    write_result,
    write_truth,
)


def _maps(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    image = torch.randn(*shape, dtype=torch.complex64, generator=g)
    water = torch.randn(*shape, dtype=torch.complex64, generator=g)
    fat = torch.randn(*shape, dtype=torch.complex64, generator=g)
    ff = fat.abs() / (water.abs() + fat.abs())
    return image, water, fat, ff


def _rec(dynamic=False):
    shape = (3, 6, 5) if dynamic else (6, 5)
    image, water, fat, ff = _maps(shape)
    nf = 4
    volume = torch.randn(*shape[:-2], nf, 6, 5, dtype=torch.complex64)
    return Reconstruction(
        image=image,
        water=water,
        fat=fat,
        fat_fraction=ff,
        field_map_hz=torch.randn(6, 5),
        fat_fraction_std=0.1 * ff,
        field_map_std_hz=torch.rand(6, 5) * 20,
        spectral_volume=volume,
        frequencies_hz=torch.linspace(-600, 200, nf),
        method="spectral",
        config={"lr": 0.1, "bins": nf},
        input_sha256="ab" * 32,
        runtime_s=1.5,
        device="cpu",
    )


@pytest.mark.parametrize("dynamic", [False, True])
def test_result_layout_and_round_trip(tmp_path, dynamic):
    rec = _rec(dynamic)
    write_result(tmp_path / "out.h5", rec)
    with h5py.File(tmp_path / "out.h5", "r") as f:
        assert f["image"].dtype == np.complex64 and f["image"].shape == tuple(rec.image.shape)
        for name in ("fat_fraction", "field_map_hz", "fat_fraction_std", "field_map_std_hz"):
            assert f[name].dtype == np.float32
        assert f["fat_fraction_std"].shape == tuple(rec.image.shape)
        assert f["field_map_std_hz"].shape == (6, 5)
        assert f["spectral_volume"].shape == tuple(rec.spectral_volume.shape)
        np.testing.assert_allclose(f["spectral_volume"].attrs["frequencies_hz"], rec.frequencies_hz)
        assert json.loads(f.attrs["config"]) == rec.config
        for key in ("method", "mrsolve_version", "input_sha256", "device"):
            assert f.attrs[key] == getattr(rec, key)
        assert f.attrs["runtime_s"] == 1.5
        np.testing.assert_array_equal(f["water"][()], rec.water.numpy())
    back = read_result(tmp_path / "out.h5")
    names = ("image", "water", "fat", "fat_fraction", "field_map_hz", "spectral_volume")
    for name in (*names, "fat_fraction_std", "field_map_std_hz"):
        torch.testing.assert_close(getattr(back, name), getattr(rec, name))
    assert back.config == rec.config and back.method == "spectral"


def test_image_only_and_numpy_input(tmp_path):
    write_result(tmp_path / "a.h5", Reconstruction(image=np.ones((4, 4))))
    back = read_result(tmp_path / "a.h5")
    assert (
        back.image.dtype == torch.complex64 and back.water is None and back.spectral_volume is None
    )
    assert back.fat_fraction_std is None and back.field_map_std_hz is None


def test_write_is_atomic(tmp_path, monkeypatch):
    target = tmp_path / "out.h5"
    target.write_bytes(b"previous")

    def broken(handle, maps):
        handle.create_dataset("image", data=np.zeros(2))
        raise RuntimeError("disk full")

    monkeypatch.setattr(results, "_write_maps", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        write_result(target, _rec())
    assert target.read_bytes() == b"previous"
    assert sorted(os.listdir(tmp_path)) == ["out.h5"]


def test_write_errors(tmp_path):
    rec = _rec()
    with pytest.raises(ValueError, match="does not exist"):
        write_result(tmp_path / "no" / "out.h5", rec)
    with pytest.raises(ValueError, match="is a folder"):
        write_result(tmp_path, rec)
    bad = _rec()
    bad.fat_fraction = bad.fat_fraction + 1.5
    with pytest.raises(ValueError, match=r"fat_fraction must lie in \[0, 1\]"):
        write_result(tmp_path / "x.h5", bad)
    bad = _rec()
    bad.frequencies_hz = None
    with pytest.raises(ValueError, match="frequencies_hz"):
        write_result(tmp_path / "x.h5", bad)
    bad = _rec()
    bad.water = bad.water[:3]
    with pytest.raises(ValueError, match="water must have the shape"):
        write_result(tmp_path / "x.h5", bad)
    bad = _rec()
    bad.image = torch.full((6, 5), float("nan"), dtype=torch.complex64)
    with pytest.raises(ValueError, match="finite"):
        write_result(tmp_path / "x.h5", bad)
    bad = _rec()
    bad.field_map_std_hz = -bad.field_map_std_hz
    with pytest.raises(ValueError, match="field_map_std_hz must be >= 0"):
        write_result(tmp_path / "x.h5", bad)
    bad = _rec()
    bad.fat_fraction_std = bad.fat_fraction_std[:2]
    with pytest.raises(ValueError, match="fat_fraction_std must have the shape"):
        write_result(tmp_path / "x.h5", bad)
    bad = _rec()
    bad.field_map_std_hz = torch.full((6, 5), float("inf"))
    with pytest.raises(ValueError, match="field_map_std_hz must be finite"):
        write_result(tmp_path / "x.h5", bad)
    with pytest.raises(TypeError, match="Reconstruction"):
        write_result(tmp_path / "x.h5", {"image": 1})
    assert os.listdir(tmp_path) == []
    (tmp_path / "t.h5").write_text("text")
    with pytest.raises(ValueError, match="not an HDF5"):
        read_result(tmp_path / "t.h5")
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["x"] = 1
    with pytest.raises(ValueError, match="no /image"):
        read_result(tmp_path / "e.h5")


def test_truth_round_trip(tmp_path):
    image, water, fat, ff = _maps((6, 5))
    truth = GroundTruth(
        image=image,
        water=water,
        fat=fat,
        fat_fraction=ff,
        field_map_hz=torch.randn(6, 5),
        mask=torch.rand(6, 5) > 0.5,
        coil_maps=torch.randn(2, 6, 5, dtype=torch.complex64),
        noise_covariance=torch.eye(2, dtype=torch.complex64),
        config={"size": 6},
    )
    write_truth(tmp_path / "truth.h5", truth)
    with h5py.File(tmp_path / "truth.h5", "r") as f:
        assert f.attrs["kind"] == "truth" and f["mask"].dtype == bool
    back = read_truth(tmp_path / "truth.h5")
    for name in ("image", "water", "fat", "fat_fraction", "field_map_hz", "mask", "coil_maps"):
        torch.testing.assert_close(getattr(back, name), getattr(truth, name))
    assert back.config == {"size": 6}
    assert read_result(tmp_path / "truth.h5").image.shape == (6, 5)
    write_result(tmp_path / "r.h5", Reconstruction(image=image))
    with pytest.raises(ValueError, match="missing"):
        read_truth(tmp_path / "r.h5")


def test_sha256_file(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert sha256_file(tmp_path / "f") == (
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    )
    data = os.urandom(3_000_000)
    (tmp_path / "g").write_bytes(data)
    assert sha256_file(tmp_path / "g") == hashlib.sha256(data).hexdigest()
