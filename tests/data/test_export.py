"""NIfTI and DICOM exports read back by independent readers (nibabel, pydicom, highdicom,
dciodvfy where installed): a marked voxel lands at its known scanner position in both."""

import shutil
import subprocess

import highdicom as hd
import nibabel as nib
import numpy as np
import pydicom
import pytest
import torch

from mrsolve.data.export_dicom import write_dicom
from mrsolve.data.export_nifti import write_nifti
from mrsolve.data.results import Reconstruction
from mrsolve.propeller.scanner_geometry import SliceGeometry, slice_affine

NY, NX, S = 12, 10, 3
FOV = (180.0, 150.0)  # (fov_y, fov_x): 15 mm pixels
MARK = (1, 4, 7)  # slice, row, column of the bright voxel


def _geometry(s: int) -> SliceGeometry:
    """Double-oblique slices, 6 mm apart along their normal."""
    a, b = np.deg2rad(25.0), np.deg2rad(-10.0)
    x = np.array([np.cos(a), np.sin(a), 0.0])
    y = np.array([-np.sin(a) * np.cos(b), np.cos(a) * np.cos(b), np.sin(b)])
    return SliceGeometry(
        position_mm=tuple(np.array([5.0, -40.0, 22.0]) + 6.0 * s * np.cross(x, y)),
        x_dir=tuple(x),
        y_dir=tuple(y),
        slice_thickness_mm=4.0,
    )


def _expected_lps(s: int, row: int, col: int) -> np.ndarray:
    g = _geometry(s)
    dy, dx = FOV[0] / NY, FOV[1] / NX
    return (
        np.array(g.position_mm)
        + (col - NX // 2) * dx * np.array(g.x_dir)
        + (row - NY // 2) * dy * np.array(g.y_dir)
    )


@pytest.fixture(scope="module")
def rec():
    rng = np.random.default_rng(0)
    image = rng.uniform(0.1, 1.0, (S, NY, NX)) * np.exp(1j * rng.uniform(0, 6, (S, NY, NX)))
    image[MARK] = 5.0
    return Reconstruction(
        image=torch.from_numpy(image.astype(np.complex64)),
        water=torch.from_numpy((0.7 * image).astype(np.complex64)),
        fat=torch.from_numpy((0.3 * image).astype(np.complex64)),
        fat_fraction=torch.full((S, NY, NX), 0.3),
        field_map_hz=torch.from_numpy(rng.normal(0, 40, (S, NY, NX)).astype(np.float32)),
        field_map_std_hz=torch.full((S, NY, NX), 2.5),
        axes=("slice", "y", "x"),
        affine_lps=np.stack([slice_affine(_geometry(s), (NY, NX), FOV) for s in range(S)]),
        method="test",
        input_sha256="ab" * 32,
        source_header={
            "subjectInformation": {"patientName": "Doe^Jane", "patientID": "P-17"},
            "studyInformation": {"studyDate": "2024-03-05", "studyTime": "10:20:30"},
            "sequenceParameters": {"TE": "2.3", "sequence_type": "GradientEcho"},
        },
    )


def test_nifti_affine_maps_the_marked_voxel_to_its_scanner_position(rec, tmp_path):
    files = write_nifti(rec, tmp_path)
    assert {f.name for f in files} == {
        "image.nii.gz",
        "water.nii.gz",
        "fat.nii.gz",
        "fat_fraction.nii.gz",
        "field_map_hz.nii.gz",
        "field_map_std_hz.nii.gz",
    }
    img = nib.load(tmp_path / "image.nii.gz")
    data = np.asarray(img.dataobj)
    assert data.shape == (NX, NY, S)
    i, j, k = np.unravel_index(np.argmax(data), data.shape)
    assert (k, j, i) == MARK
    ras = img.affine @ [i, j, k, 1]
    np.testing.assert_allclose(ras[:3] * [-1, -1, 1], _expected_lps(*MARK), atol=1e-3)
    assert int(img.header["sform_code"]) == 1 and int(img.header["qform_code"]) == 1
    np.testing.assert_allclose(img.get_qform(), img.get_sform(), atol=1e-4)
    field = nib.load(tmp_path / "field_map_hz.nii.gz")
    np.testing.assert_allclose(
        np.asarray(field.dataobj).transpose(2, 1, 0), rec.field_map_hz.numpy(), rtol=1e-6
    )
    assert b"Hz" in field.header["descrip"].tobytes()


def _dicom_lps(ds, row: int, col: int) -> np.ndarray:
    """DICOM PS3.3 C.7.6.2.1.1: P = S + c * dc * X + r * dr * Y."""
    ipp = np.array(ds.ImagePositionPatient, float)
    iop = np.array(ds.ImageOrientationPatient, float)
    dr, dc = (float(v) for v in ds.PixelSpacing)
    return ipp + col * dc * iop[:3] + row * dr * iop[3:]


def test_dicom_read_back_validated_and_agrees_with_nifti(rec, tmp_path):
    write_dicom(rec, tmp_path / "dcm")
    write_nifti(rec, tmp_path / "nii")
    series = [pydicom.dcmread(p) for p in sorted((tmp_path / "dcm" / "image").glob("*.dcm"))]
    assert len(series) == S and len({ds.SeriesInstanceUID for ds in series}) == 1
    assert str(series[0].PatientName) == "Doe^Jane" and series[0].PatientID == "P-17"
    assert series[0].StudyDate == "20240305" and series[0].AccessionNumber == ""
    assert float(series[0].EchoTime) == pytest.approx(2.3) and series[0].ScanningSequence == "GR"
    values = [ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept) for ds in series]
    s, row, col = np.unravel_index(np.argmax(np.stack(values)), (S, NY, NX))
    assert (s, row, col) == MARK
    np.testing.assert_allclose(np.stack(values), np.abs(rec.image.numpy()), atol=5.0 / 4095)
    dicom_pos = _dicom_lps(series[s], row, col)
    np.testing.assert_allclose(dicom_pos, _expected_lps(*MARK), atol=1e-3)
    nii = nib.load(tmp_path / "nii" / "image.nii.gz")
    nifti_pos = (nii.affine @ [col, row, s, 1])[:3] * [-1, -1, 1]
    np.testing.assert_allclose(dicom_pos, nifti_pos, atol=1e-3)
    # highdicom checks the series can form one Enhanced MR image (geometry, UIDs, modules)
    hd.legacy.LegacyConvertedEnhancedMRImage(
        series, hd.UID(), 1, hd.UID(), 1, require_volume=True, strict=True
    )
    for name, unit in (("fat_fraction", "1"), ("field_map_hz", "Hz"), ("field_map_std_hz", "Hz")):
        pm = hd.pm.ParametricMap.from_dataset(pydicom.dcmread(tmp_path / "dcm" / name / "PM_1.dcm"))
        assert "FloatPixelData" in pm and pm.FrameOfReferenceUID == series[0].FrameOfReferenceUID
        mapping = pm.SharedFunctionalGroupsSequence[0].RealWorldValueMappingSequence[0]
        assert mapping.MeasurementUnitsCodeSequence[0].CodeValue == unit
        corners = [np.array(ds.ImagePositionPatient, float) for ds in series]
        for frame, group in zip(pm.pixel_array, pm.PerFrameFunctionalGroupsSequence, strict=True):
            where = np.array(group.PlanePositionSequence[0].ImagePositionPatient, float)
            [k] = [k for k, c in enumerate(corners) if np.allclose(c, where, atol=1e-4)]
            np.testing.assert_allclose(frame, getattr(rec, name)[k].numpy(), rtol=1e-6)
    if shutil.which("dciodvfy"):  # the DICOM standard's own validator, where installed
        for path in (
            tmp_path / "dcm" / "image" / "IM_0001.dcm",
            tmp_path / "dcm" / "fat_fraction" / "PM_1.dcm",
        ):
            report = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
            assert "Error" not in report.stdout + report.stderr


def test_anonymize_drops_patient_fields_and_ids_are_stable(rec, tmp_path):
    write_dicom(rec, tmp_path / "a", anonymize=True)
    write_dicom(rec, tmp_path / "b")
    write_dicom(rec, tmp_path / "c")
    anon = pydicom.dcmread(tmp_path / "a" / "water" / "IM_0001.dcm")
    assert str(anon.PatientName) == "" and anon.PatientID == "" and anon.StudyDate == ""
    assert anon.PatientIdentityRemoved == "YES"
    b, c = (pydicom.dcmread(tmp_path / x / "water" / "IM_0001.dcm") for x in "bc")
    assert b.StudyInstanceUID == c.StudyInstanceUID != anon.StudyInstanceUID
    assert b.SeriesInstanceUID != c.SeriesInstanceUID and b.SOPInstanceUID != c.SOPInstanceUID


def test_multi_echo_goes_on_the_fourth_nifti_axis_and_echo_numbers(tmp_path):
    image = torch.rand(2, 3, 8, 8).to(torch.complex64)  # (slice, echo, y, x)
    affine = np.stack(
        [
            slice_affine(SliceGeometry(position_mm=(0, 0, 5.0 * s)), (8, 8), (80.0, 80.0))
            for s in range(2)
        ]
    )
    rec = Reconstruction(image=image, axes=("slice", "echo", "y", "x"), affine_lps=affine)
    write_nifti(rec, tmp_path)
    data = np.asarray(nib.load(tmp_path / "image.nii.gz").dataobj)
    assert data.shape == (8, 8, 2, 3)
    np.testing.assert_allclose(data[3, 5, 1, 2], image[1, 2, 5, 3].abs().item(), rtol=1e-6)
    write_dicom(rec, tmp_path / "dcm")
    echoes = [
        pydicom.dcmread(p).EchoNumbers for p in sorted((tmp_path / "dcm" / "image").glob("*"))
    ]
    assert echoes == [1, 2, 3, 1, 2, 3]
