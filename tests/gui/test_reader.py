"""Reader, writer and sample data: layers, names, shapes, scales; None for other files."""

from __future__ import annotations

import subprocess
import sys

import h5py
import numpy as np
import torch

from mrsolve.data.results import Reconstruction, read_result, write_result
from mrsolve.gui._reader import get_reader
from mrsolve.gui._sample_data import phantom_sample
from mrsolve.gui._writer import write_layers


def _by_name(layers):
    return {kwargs["name"]: (data, kwargs, kind) for data, kwargs, kind in layers}


def test_result_file_layers(result, result_file):
    layers = _by_name(get_reader(str(result_file))(str(result_file)))
    names = ("image", "water", "fat", "fat fraction", "field map (Hz)", "spectral volume")
    stds = ("fat fraction std", "field map std (Hz)")
    assert set(layers) == {f"rec {n}" for n in (*names, *stds)}
    image, kwargs, kind = layers["rec image"]
    assert kind == "image" and image.shape == (32, 32)
    np.testing.assert_allclose(image, result.image.abs().numpy(), rtol=1e-6)
    np.testing.assert_array_equal(kwargs["metadata"]["mrsolve"]["complex"], result.image.numpy())
    _, ff, _ = layers["rec fat fraction"]
    assert ff["contrast_limits"] == (0.0, 1.0) and ff["colormap"] == "magma"
    fmap, fm, _ = layers["rec field map (Hz)"]
    limit = float(result.field_map_hz.abs().max())
    assert fm["colormap"] == "coolwarm" and fm["contrast_limits"] == (-limit, limit)
    np.testing.assert_allclose(fmap, result.field_map_hz.numpy())
    for name, role in zip(stds, ("fat_fraction_std", "field_map_std_hz"), strict=True):
        std, sk, _ = layers[f"rec {name}"]
        expected = getattr(result, role).numpy()
        np.testing.assert_array_equal(std, expected)
        assert sk["visible"] is False and sk["colormap"] == "viridis"
        assert sk["metadata"]["mrsolve"]["role"] == role
        # the upper limit is the 99th percentile of the pixels below the cap
        below = expected[expected < expected.max()]
        assert sk["contrast_limits"] == (0.0, float(np.percentile(below.astype(np.float64), 99)))
    assert layers["rec field map std (Hz)"][1]["contrast_limits"][1] < 20.0  # not the cap
    volume, vk, _ = layers["rec spectral volume"]
    assert volume.shape == (5, 32, 32)
    assert vk["scale"] == (100.0, 1.0, 1.0) and vk["translate"] == (-400.0, 0.0, 0.0)
    assert vk["axis_labels"] == ("f (Hz)", "y", "x")
    # world coordinate of bin i along f is its frequency
    freqs = vk["translate"][0] + vk["scale"][0] * np.arange(5)
    np.testing.assert_allclose(freqs, [-400, -300, -200, -100, 0])


def test_dynamic_result_has_time_axis(tmp_path):
    rng = np.random.default_rng(1)
    frames = (rng.standard_normal((3, 16, 16)) + 1j * rng.standard_normal((3, 16, 16))).astype(
        np.complex64
    )
    path = write_result(tmp_path / "dyn.h5", Reconstruction(image=torch.from_numpy(frames)))
    [(data, kwargs, _)] = get_reader(str(path))(str(path))
    assert data.shape == (3, 16, 16) and kwargs["axis_labels"] == ("frame", "y", "x")
    np.testing.assert_allclose(data, np.abs(frames), rtol=1e-6)


def test_exam_axes_label_the_dims(tmp_path):
    rng = np.random.default_rng(2)
    shape = (2, 3, 8, 8)  # slice, echo, y, x
    image = torch.from_numpy((rng.standard_normal(shape) + 0j).astype(np.complex64))
    rec = Reconstruction(
        image=image,
        field_map_hz=torch.zeros(2, 8, 8),  # the field map keeps only the slice axis
        spectral_volume=torch.zeros(2, 3, 4, 8, 8, dtype=torch.complex64),
        frequencies_hz=torch.tensor([-300.0, -200.0, -100.0, 0.0]),
        axes=("slice", "echo", "y", "x"),
    )
    path = write_result(tmp_path / "exam.h5", rec)
    layers = _by_name(get_reader(str(path))(str(path)))
    assert layers["exam image"][1]["axis_labels"] == ("slice", "echo", "y", "x")
    assert layers["exam field map (Hz)"][1]["axis_labels"] == ("slice", "y", "x")
    volume = layers["exam spectral volume"][1]
    assert volume["axis_labels"] == ("slice", "echo", "f (Hz)", "y", "x")
    assert volume["scale"] == (1.0, 1.0, 100.0, 1.0, 1.0)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))


def test_raw_file_layers(small_sim, raw_file):
    layers = _by_name(get_reader(str(raw_file))(str(raw_file)))
    assert set(layers) == {"scan gridding", "scan blades"}
    quick, qk, _ = layers["scan gridding"]
    blades, bk, _ = layers["scan blades"]
    assert quick.shape == (32, 32) and blades.shape == (6, 32, 32)
    assert bk["axis_labels"] == ("blade", "y", "x")
    assert qk["metadata"]["mrsolve"]["scan"].n_blades == 6
    truth = small_sim.truth.image.abs().numpy()
    # independent reference: the simulated object; gridding must resemble it
    assert _correlation(quick, truth) > 0.97
    # one blade alone is blurred across its readout but still correlates with the object
    assert min(_correlation(b, truth) for b in blades) > 0.3


def test_unrelated_files_have_no_reader(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f["image"] = np.zeros((4, 4))  # an /image but no mrsolve "kind"
        f.create_group("dataset")["xml"] = "not xml"
    text = tmp_path / "notes.h5"
    text.write_text("plain text")
    for path in (other, text, tmp_path / "missing.h5", tmp_path):
        assert get_reader(str(path)) is None
    assert get_reader([str(other)]) is None


def test_writer_round_trip(result, result_file, tmp_path):
    layers = get_reader(str(result_file))(str(result_file))
    [path] = write_layers(str(tmp_path / "copy.h5"), layers)
    back = read_result(path)
    names = ("image", "water", "fat", "fat_fraction", "field_map_hz", "spectral_volume")
    for name in (*names, "fat_fraction_std", "field_map_std_hz"):
        np.testing.assert_array_equal(getattr(back, name).numpy(), getattr(result, name).numpy())
    np.testing.assert_allclose(back.frequencies_hz.numpy(), [-400, -300, -200, -100, 0])
    assert back.method == "gridding"


def test_writer_without_metadata_uses_layer_data(tmp_path):
    data = np.arange(12, dtype=np.float32).reshape(3, 4)
    [path] = write_layers(str(tmp_path / "plain.h5"), [(data, {"name": "x"}, "image")])
    np.testing.assert_array_equal(read_result(path).image.numpy(), data.astype(np.complex64))


def test_sample_data_layers():
    layers = _by_name(phantom_sample(size=16, n_coils=1, n_blades=4, n_lines=8))
    assert {"phantom gridding", "phantom blades", "phantom truth fat fraction"} <= set(layers)
    assert layers["phantom truth image"][0].shape == (16, 16)
    assert layers["phantom blades"][0].shape == (4, 16, 16)
    assert layers["phantom gridding"][1]["metadata"]["mrsolve"]["scan"].n_coils == 1


def test_import_needs_neither_qt_nor_napari():
    code = (
        "import sys, mrsolve, mrsolve.gui, mrsolve.gui.launch, mrsolve.gui._reader, "
        "mrsolve.gui._writer, mrsolve.gui._worker, mrsolve.gui._sample_data\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('napari', 'PyQt6', 'qtpy', 'vispy')]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_manifest_is_valid():
    from npe2 import PluginManifest

    manifest = PluginManifest.from_distribution("mrsolve")
    manifest.validate_imports()
    assert manifest.name == "mrsolve"
    assert {c.id for c in manifest.contributions.commands} >= {
        "mrsolve.get_reader",
        "mrsolve.write_layers",
        "mrsolve.phantom_sample",
    }


def test_nifti_and_dicom_writers_match_recon_export(result, result_file, tmp_path):
    import nibabel as nib
    import pydicom

    from mrsolve.gui._writer import write_dicom_layers, write_nifti_layers
    from mrsolve.recon.interop_commands import export_result_file

    layers = get_reader(str(result_file))(str(result_file))
    written = write_nifti_layers(str(tmp_path / "gui.nii.gz"), layers)
    cli = {p.name: p for p in export_result_file(result_file, "nifti", tmp_path / "cli")}
    assert sorted(cli) == sorted(p.split("/")[-1] for p in written)
    for path in written:
        ours, ref = nib.load(path), nib.load(cli[path.split("/")[-1]])
        np.testing.assert_array_equal(ours.get_fdata(), ref.get_fdata())
        np.testing.assert_allclose(ours.affine, ref.affine)
    dicoms = write_dicom_layers(str(tmp_path / "gui_dicom"), layers)
    pixels = [pydicom.dcmread(p) for p in dicoms if p.endswith(".dcm")]
    assert pixels and all("SOPClassUID" in ds for ds in pixels)
