"""recon export / convert / stream / run --export, in processes as a user runs them;
``recon stream`` in a pipe between mrd-python's own phantom generator and PNG exporter."""

import io
import os
import subprocess
import sys
from pathlib import Path

import mrd
import nibabel as nib
import numpy as np
import pydicom
import pytest
from mrd.tools.stream_recon import reconstruct_mrd_stream

ROOT = Path(__file__).resolve().parents[2]
RECON = [sys.executable, "-c", "from mrsolve.recon.cli import main; main()"]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}


def _recon(*args, **kwargs):
    return subprocess.run([*RECON, *map(str, args)], env=ENV, capture_output=True, **kwargs)


@pytest.fixture(scope="module")
def recon_output(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    raw = folder / "raw.h5"
    done = _recon(
        "simulate",
        raw,
        "--truth",
        folder / "truth.h5",
        "--size",
        16,
        "--blades",
        4,
        "--lines",
        6,
        "--coils",
        2,
        "--n-slices",
        2,
    )
    assert done.returncode == 0, done.stderr
    done = _recon(
        "run", raw, "-o", folder / "out.h5", "--method", "gridding", "--export", "nifti,dicom"
    )
    assert done.returncode == 0, done.stderr
    return folder


def test_run_export_writes_both_formats(recon_output):
    folder = recon_output / "out_export"
    assert nib.load(folder / "nifti" / "image.nii.gz").shape == (16, 16, 2)
    assert len(list((folder / "dicom" / "image").glob("*.dcm"))) == 2


def test_export_command_and_bad_input(recon_output, tmp_path):
    done = _recon(
        "export", recon_output / "out.h5", "--format", "dicom", "-o", tmp_path / "d", "--anonymize"
    )
    assert done.returncode == 0, done.stderr
    ds = pydicom.dcmread(tmp_path / "d" / "image" / "IM_0002.dcm")
    assert ds.PatientIdentityRemoved == "YES" and float(ds.SliceThickness) == 5.0
    bad = _recon("export", recon_output / "out.h5", "--format", "png", "-o", tmp_path / "x")
    assert bad.returncode == 2 and "--format must be nifti or dicom" in bad.stderr.decode()
    raw = _recon("export", recon_output / "raw.h5", "--format", "nifti", "-o", tmp_path / "y")
    assert raw.returncode == 2 and "not an mrsolve output" in raw.stderr.decode()


def test_convert_both_ways_and_info_run_batch_read_mrd2(recon_output, tmp_path):
    raw = recon_output / "raw.h5"
    assert _recon("convert", raw, tmp_path / "raw.mrd").returncode == 0
    assert (tmp_path / "raw.mrd").read_bytes()[:5] == b"yardl"
    assert _recon("convert", tmp_path / "raw.mrd", tmp_path / "back.h5").returncode == 0
    info = _recon("info", tmp_path / "raw.mrd")
    assert info.returncode == 0 and "slices" in info.stdout.decode()
    done = _recon("run", tmp_path / "raw.mrd", "-o", tmp_path / "mrd.h5", "--method", "gridding")
    assert done.returncode == 0, done.stderr
    import h5py

    with h5py.File(tmp_path / "mrd.h5") as a, h5py.File(recon_output / "out.h5") as b:
        np.testing.assert_allclose(a["image"][()], b["image"][()], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a["affine_lps"][()], b["affine_lps"][()])
    batch = _recon(
        "batch",
        tmp_path / "raw.mrd",
        "-o",
        tmp_path / "batch",
        "--method",
        "gridding",
        "--workers",
        1,
    )
    assert batch.returncode == 0, batch.stderr
    (tmp_path / "junk.mrd").write_bytes(b"yardl-not-really")
    bad = _recon("run", tmp_path / "junk.mrd", "-o", tmp_path / "j.h5", "--method", "gridding")
    assert bad.returncode == 2 and "MRD 2" in bad.stderr.decode()


def test_stream_in_a_pipe_between_mrd_python_tools(tmp_path):
    phantom = subprocess.run(
        [sys.executable, "-m", "mrd.tools.phantom", "-m", "32", "-c", "2", "-n", "0.0001"],
        capture_output=True,
        check=True,
    ).stdout
    pipe = subprocess.run(
        f"{sys.executable} -m mrd.tools.phantom -m 32 -c 2 -n 0.0001 | "
        f"{sys.executable} -c 'from mrsolve.recon.cli import main; main()' stream --method gridding | "
        f"{sys.executable} -m mrd.tools.export_png_images -o {tmp_path}/img_",
        shell=True,
        env=ENV,
        capture_output=True,
    )
    assert pipe.returncode == 0, pipe.stderr
    assert (tmp_path / "img_0000.png").is_file()
    # our image against mrd-python's own FFT reconstruction of a phantom stream
    ours = _recon("stream", "--method", "gridding", input=phantom)
    assert ours.returncode == 0, ours.stderr
    with mrd.BinaryMrdReader(io.BytesIO(ours.stdout)) as reader:
        header = reader.read_header()
        images = [item.value for item in reader.read_data()]
    assert header.encoding[0].trajectory == mrd.Trajectory.CARTESIAN
    assert [im.meta["mrsolve_map"][0].value for im in images] == ["image"]
    reference = io.BytesIO()
    reconstruct_mrd_stream(io.BytesIO(phantom), reference)
    reference.seek(0)
    with mrd.BinaryMrdReader(reference) as reader:
        reader.read_header()
        [ref] = [item.value for item in reader.read_data()]
    np.testing.assert_allclose(images[0].head.col_dir, ref.head.col_dir)
    np.testing.assert_allclose(images[0].head.field_of_view[:2], ref.head.field_of_view[:2])
    a, b = images[0].data.ravel(), ref.data.ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.999
