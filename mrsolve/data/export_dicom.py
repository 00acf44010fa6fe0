"""DICOM export of a Reconstruction: MR Image Storage series and Parametric Maps.

- magnitude image, water, fat: one MR Image Storage series each (pydicom), one
  single-frame instance per slice / echo / frame, 12-bit pixels with a rescale slope
  shared by the series, a window from the 1st-99.5th percentiles, Image Position /
  Orientation (Patient), Pixel Spacing and Slice Thickness from the slice affines;
- fat fraction, field map (Hz) and their standard deviations, where present: one
  Parametric Map each (highdicom), float pixels with a real-world value mapping in UCUM
  units, referencing the magnitude images as their source.

Patient, study and equipment fields come from the raw header (``source_header``) and are
left empty (type 2) or absent where it is silent, never made up; ``anonymize`` empties
them and marks the instances as de-identified. The study and frame-of-reference UIDs
are the header's, else derived from the raw file's SHA-256 (every export of one scan
lands in one study and one coordinate frame); series and instance UIDs are new.
Files: ``<folder>/<map>/IM_<n>.dcm`` (MR) and ``<folder>/<map>/PM_1.dcm`` (parametric).
"""

from __future__ import annotations

import os
from datetime import datetime
from pathlib import Path

import numpy as np

import mrsolve
from mrsolve.data.export_maps import ExportMap, export_maps, slice_affines
from mrsolve.data.files import atomic_output
from mrsolve.data.results import Reconstruction

MR_KINDS = {"image": "M", "water": "W", "fat": "F"}  # -> Image Type value 3
MAX_STORED = 4095  # 12-bit pixels, the usual MR range
_SEQUENCES = {"spinecho": "SE", "gradientecho": "GR"}


def _header_field(source: dict, section: str, name: str):
    value = source.get(section, {}).get(name)
    return value[0] if isinstance(value, list) else value


def _date(text: str | None) -> str:
    return "" if not text else text.replace("-", "")[:8]


def _time(text: str | None) -> str:
    return "" if not text else text.replace(":", "").split(".")[0][:6]


def _base_dataset(rec: Reconstruction, anonymize: bool):
    """Patient, study, frame-of-reference and equipment modules shared by every instance."""
    from pydicom.dataset import Dataset
    from pydicom.uid import generate_uid

    src = {} if anonymize else rec.source_header
    subject, study = "subjectInformation", "studyInformation"
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = _header_field(src, subject, "patientName") or ""
    ds.PatientID = _header_field(src, subject, "patientID") or ""
    ds.PatientBirthDate = _date(_header_field(src, subject, "patientBirthdate"))
    ds.PatientSex = (_header_field(src, subject, "patientGender") or "")[:1].upper()
    for keyword, name in (
        ("PatientWeight", "patientWeight_kg"),
        ("PatientSize", "patientHeight_m"),
    ):
        if _header_field(src, subject, name):
            setattr(ds, keyword, f"{float(_header_field(src, subject, name)):.6g}")
    seed = [rec.input_sha256 or "no input hash"]
    uid = _header_field(src, study, "studyInstanceUID")
    ds.StudyInstanceUID = uid or generate_uid(entropy_srcs=None if anonymize else [*seed, "study"])
    ds.StudyDate = _date(_header_field(src, study, "studyDate"))
    ds.StudyTime = _time(_header_field(src, study, "studyTime"))
    ds.StudyID = _header_field(src, study, "studyID") or ""
    ds.AccessionNumber = _header_field(src, study, "accessionNumber") or ""
    ds.ReferringPhysicianName = _header_field(src, study, "referringPhysicianName") or ""
    for keyword, name in (
        ("StudyDescription", "studyDescription"),
        ("BodyPartExamined", "bodyPartExamined"),
    ):
        if _header_field(src, study, name):
            setattr(ds, keyword, _header_field(src, study, name))
    measurement = "measurementInformation"
    ds.FrameOfReferenceUID = _header_field(src, measurement, "frameOfReferenceUID") or generate_uid(
        entropy_srcs=None if anonymize else [*seed, "frame of reference"]
    )
    ds.PositionReferenceIndicator = ""
    ds.PatientPosition = _header_field(src, measurement, "patientPosition") or ""
    ds.Laterality = ""  # type 2C: the raw header does not say
    if _header_field(src, measurement, "protocolName"):
        ds.ProtocolName = _header_field(src, measurement, "protocolName")
    system = "acquisitionSystemInformation"
    for keyword, name in (("InstitutionName", "institutionName"), ("StationName", "stationName")):
        if _header_field(src, system, name):
            setattr(ds, keyword, _header_field(src, system, name))
    field = _header_field(rec.source_header, system, "systemFieldStrength_T")
    if field:
        ds.MagneticFieldStrength = f"{float(field):.6g}"
    ds.Manufacturer = "mrsolve"
    ds.ManufacturerModelName = "mrsolve recon"
    ds.SoftwareVersions = mrsolve.__version__
    if anonymize:
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = "mrsolve --anonymize: patient, study, site fields emptied"
    return ds


def _plane(affine: np.ndarray) -> dict:
    """Image Plane module values of one slice from its voxel-to-LPS affine."""
    dx, dy, dz = (float(np.linalg.norm(affine[:3, k])) for k in range(3))
    x, y = affine[:3, 0] / dx, affine[:3, 1] / dy
    position = affine[:3, 3]
    return {
        "ImagePositionPatient": [f"{v:.6f}" for v in position],
        "ImageOrientationPatient": [f"{v:.8f}" for v in (*x, *y)],
        "PixelSpacing": [f"{dy:.6g}", f"{dx:.6g}"],
        "SliceThickness": f"{dz:.6g}",
        "SliceLocation": f"{float(position @ np.cross(x, y)):.6f}",
    }


def _window(values: np.ndarray) -> tuple[float, float]:
    low, high = np.percentile(values, [1.0, 99.5])
    return float((low + high) / 2), float(max(high - low, 1e-6))


def _file_meta(sop_class: str, sop_instance: str):
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta


def _save(ds, path: Path) -> Path:
    with atomic_output(path) as tmp:
        ds.save_as(tmp, enforce_file_format=True)
    return path


def _mr_series(rec, item: ExportMap, base, series_number: int, affines) -> list:
    """One MR Image Storage instance per (slice, echo, frame) of ``item``; returns the
    datasets, indexed [slice][echo][frame]."""
    from pydicom.dataset import Dataset
    from pydicom.uid import MRImageStorage, generate_uid

    values = item.values
    s_count, e_count, f_count = values.shape[:3]
    slope = float(values.max()) / MAX_STORED if values.max() > 0 else 1.0
    center, width = _window(values)
    series_uid, now = generate_uid(), datetime.now()
    tes = rec.source_header.get("sequenceParameters", {}).get("TE", [])
    tes = [tes] if isinstance(tes, str) else tes
    seq = _header_field(rec.source_header, "sequenceParameters", "sequence_type") or ""
    tr = _header_field(rec.source_header, "sequenceParameters", "TR")
    out, number = [], 0
    for s in range(s_count):
        per_echo = []
        for e in range(e_count):
            per_frame = []
            for f in range(f_count):
                number += 1
                ds = Dataset()
                ds.update(base)
                ds.SOPClassUID, ds.SOPInstanceUID = MRImageStorage, generate_uid()
                ds.file_meta = _file_meta(ds.SOPClassUID, ds.SOPInstanceUID)
                ds.Modality = "MR"
                ds.SeriesInstanceUID, ds.SeriesNumber = series_uid, series_number
                ds.SeriesDescription = f"mrsolve {rec.method} {item.description}"
                ds.InstanceNumber = number
                ds.ContentDate, ds.ContentTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
                ds.ImageType = ["DERIVED", "PRIMARY", MR_KINDS[item.name]]
                ds.ScanningSequence = _SEQUENCES.get(seq.lower().replace("_", ""), "RM")
                ds.SequenceVariant = "NONE"
                ds.ScanOptions = ""
                ds.MRAcquisitionType = "2D"
                ds.RepetitionTime = f"{float(tr):.6g}" if tr else ""
                ds.EchoTime = f"{float(tes[e]):.6g}" if e < len(tes) else ""
                ds.EchoTrainLength = ""
                ds.EchoNumbers = e + 1
                if f_count > 1:
                    ds.TemporalPositionIdentifier = f + 1
                    ds.NumberOfTemporalPositions = f_count
                for keyword, value in _plane(affines[s]).items():
                    setattr(ds, keyword, value)
                pixels = np.clip(np.rint(values[s, e, f] / slope), 0, MAX_STORED).astype(np.uint16)
                ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
                ds.Rows, ds.Columns = pixels.shape
                ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, 12, 11
                ds.PixelRepresentation = 0
                ds.RescaleIntercept, ds.RescaleSlope = "0", f"{slope:.8g}"
                ds.WindowCenter, ds.WindowWidth = f"{center:.6g}", f"{width:.6g}"
                ds.VOILUTFunction = "LINEAR_EXACT"  # windows narrower than 1 are allowed
                ds.PixelData = pixels.tobytes()
                per_frame.append(ds)
            per_echo.append(per_frame)
        out.append(per_echo)
    return out


def _parametric_map(rec, item: ExportMap, sources, series_number: int):
    """A highdicom Parametric Map of ``item`` (S, 1, 1, ny, nx), one frame per slice."""
    import highdicom as hd
    from pydicom.sr.codedict import codes
    from pydicom.uid import generate_uid

    values = item.values[:, 0, 0]
    unit = codes.UCUM.Hertz if item.unit == "Hz" else codes.UCUM.NoUnits
    low, high = float(values.min()), float(values.max())
    mapping = hd.pm.RealWorldValueMapping(
        lut_label=item.name[:16],
        lut_explanation=item.description,
        unit=unit,
        value_range=(low, high if high > low else low + 1.0),
        slope=1.0,
        intercept=0.0,
    )
    center, width = _window(values)
    pm = hd.pm.ParametricMap(
        source_images=sources,
        pixel_array=values.astype(np.float32),
        series_instance_uid=generate_uid(),
        series_number=series_number,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="mrsolve",
        manufacturer_model_name="mrsolve recon",
        software_versions=mrsolve.__version__,
        device_serial_number="none",
        contains_recognizable_visual_features=False,
        real_world_value_mappings=[mapping],
        voi_lut_transformations=[
            hd.VOILUTTransformation(
                window_center=center, window_width=width, voi_lut_function="LINEAR_EXACT"
            )
        ],
        content_description=f"mrsolve {rec.method} {item.description}"[:64],
        content_label=item.name.upper().replace("_", "")[:16],
        series_description=f"mrsolve {rec.method} {item.description}",
    )
    pm.Laterality = ""  # type 2C: the raw header does not say
    return pm


def write_dicom(
    rec: Reconstruction, folder: str | os.PathLike, anonymize: bool = False
) -> list[Path]:
    """Write ``rec`` as DICOM series under ``folder`` (created if missing); returns the files.

    Parametric maps with echo or frame axes keep their first echo / frame.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    maps = export_maps(rec)
    base = _base_dataset(rec, anonymize)
    affines = slice_affines(rec, maps[0].values.shape[0])
    written, magnitude = [], None
    for number, item in enumerate(maps, start=1):
        series_number = 100 + number
        target = folder / item.name
        target.mkdir(exist_ok=True)
        if item.name in MR_KINDS:
            series = _mr_series(rec, item, base, series_number, affines)
            magnitude = magnitude or series
            flat = [ds for echo in series for frames in echo for ds in frames]
            written += [_save(ds, target / f"IM_{ds.InstanceNumber:04d}.dcm") for ds in flat]
            continue
        sources = [per_slice[0][0] for per_slice in magnitude]  # "image" comes first
        pm = _parametric_map(rec, item, sources, series_number)
        written.append(_save(pm, target / "PM_1.dcm"))
    return written
