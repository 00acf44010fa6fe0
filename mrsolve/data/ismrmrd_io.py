"""ISMRMRD HDF5 reader and writer for PROPELLER scans (methods/propeller.md, "File conventions").

One acquisition per readout line: ``idx.set`` = blade (within its frame and echo),
``idx.kspace_encode_step_1`` = line in the blade, ``idx.repetition`` = frame,
``idx.slice`` = slice (one Scan each), ``idx.contrast`` = echo (its TE is entry
``contrast`` of the header's ``sequenceParameters.TE`` list; echoes become extra blades
of the slice's Scan with ``Scan.echo``), ``idx.average`` = average (the averages of a
line are combined by their complex mean);
``traj`` (samples, 2) in cycles/FOV as (kx, ky); ``sample_time_us`` = dwell;
``center_sample`` = echo centre; ``acquisition_time_stamp`` in ticks of 2.5 ms (the
Siemens convention); ``position`` and ``read_dir`` / ``phase_dir`` give the slice's place
in the scanner (``Scan.geometry``, propeller/scanner_geometry.py: the directions rotate
with each blade, or stay fixed at the image axes), the header's field of view z its
thickness. Noise scans carry ACQ_IS_NOISE_MEASUREMENT and become
``Scan.noise``, never data. Header: trajectory ``other`` with identifier ``propeller``
(``propellor`` and ``radial`` are accepted on input), TE in ms, sequence type,
field strength, matrix size and field of view. Cartesian files without per-sample
trajectories are read as one blade (k-space positions from the sample and line
indices, image in the recon space). Files are ISMRMRD 1 HDF5 or MRD 2 streams
(``mrd2_io``), told apart by their first bytes.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import torch
from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

from mrsolve.data.files import atomic_output, check_hdf5, existing_file
from mrsolve.data.mrd2_io import is_mrd2, read_mrd2
from mrsolve.propeller.fat import GYROMAGNETIC_HZ_PER_T
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.scanner_geometry import SliceGeometry, blade_directions, slice_affine
from mrsolve.propeller.timing import readout_times

TICK_S = 2.5e-3  # acquisition_time_stamp unit
DEFAULT_FIELD_T = 3.0  # when the header gives neither field strength nor H1 frequency
PROPELLER_IDS = ("propeller", "propellor")
ACCEPTED_TRAJECTORIES = ("other", "radial", "cartesian")
DEFAULT_THICKNESS_MM = 5.0  # when the header gives no field of view z
DEFAULT_DWELL_US = 10.0  # when the lines leave sample_time_us at 0 (unset)
#: header sections copied to ``Scan.extra["source_header"]`` (for DICOM export)
SOURCE_SECTIONS = (
    "subjectInformation",
    "studyInformation",
    "measurementInformation",
    "acquisitionSystemInformation",
    "sequenceParameters",
)
_SEQUENCE_NAMES = {"spin_echo": "SpinEcho", "gradient_echo": "GradientEcho"}
_SKIPPED_FLAGS = (
    "ACQ_IS_NAVIGATION_DATA",
    "ACQ_IS_PHASECORR_DATA",
    "ACQ_IS_DUMMYSCAN_DATA",
    "ACQ_IS_RTFEEDBACK_DATA",
)


@dataclass
class HeaderFacts:
    """What the reader needs from the XML header (None where the header is silent)."""

    trajectory: str
    identifier: str | None
    matrix_size: tuple[int, int]  # (ny, nx)
    fov_mm: tuple[float, float]  # (fov_y, fov_x)
    te_s: float | None
    sequence_type: str | None
    field_strength_t: float | None
    n_sets: int | None
    n_lines: int | None
    n_repetitions: int | None
    parser: str
    echo_te_s: tuple[float, ...] = ()
    slice_thickness_mm: float | None = None
    recon_matrix_size: tuple[int, int] | None = None  # (ny, nx)
    recon_fov_mm: tuple[float, float] | None = None  # (fov_y, fov_x)
    line_center: int | None = None  # encodingLimits.kspace_encoding_step_1.center


# -- writing ---------------------------------------------------------------------------


def scan_geometry(scan: Scan, slice_index: int | None = None) -> SliceGeometry:
    """The scan's geometry or, when unknown, an axial slice at the isocentre, slice i at
    z = i * 5 mm (``slice_index`` None: ``scan.extra["slice"]``, else 0)."""
    if scan.geometry is not None:
        return scan.geometry
    index = scan.extra.get("slice", 0) if slice_index is None else slice_index
    return SliceGeometry(position_mm=(0.0, 0.0, index * DEFAULT_THICKNESS_MM))


def scan_affine(scan: Scan) -> np.ndarray:
    """(4, 4) voxel-to-LPS affine of the scan's image (see :func:`scan_geometry`)."""
    return slice_affine(scan_geometry(scan), scan.image_shape, scan.fov_mm)


def _header_xml(scan: Scan, n_sets: int, n_slices: int, n_averages: int, title: str) -> str:
    ny, nx = scan.image_shape
    fov_y, fov_x = scan.fov_mm
    thickness = scan_geometry(scan, 0).slice_thickness_mm
    space = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=1),
        fieldOfView_mm=xsd.fieldOfViewMm(x=float(fov_x), y=float(fov_y), z=thickness),
    )
    limits = xsd.encodingLimitsType(
        kspace_encoding_step_0=xsd.limitType(
            minimum=0, maximum=scan.n_readout - 1, center=scan.center_sample
        ),
        kspace_encoding_step_1=xsd.limitType(
            minimum=0, maximum=scan.n_lines - 1, center=scan.n_lines // 2
        ),
        set=xsd.limitType(minimum=0, maximum=n_sets - 1, center=0),
        repetition=xsd.limitType(minimum=0, maximum=scan.n_frames - 1, center=0),
        slice=xsd.limitType(minimum=0, maximum=n_slices - 1, center=0),
        contrast=xsd.limitType(minimum=0, maximum=scan.n_echoes - 1, center=0),
        average=xsd.limitType(minimum=0, maximum=n_averages - 1, center=0),
    )
    description = xsd.trajectoryDescriptionType(
        identifier="propeller",
        userParameterLong=[
            xsd.userParameterLongType(name="blades", value=n_sets),
            xsd.userParameterLongType(name="lines", value=scan.n_lines),
            xsd.userParameterLongType(name="readout_samples", value=scan.n_readout),
        ],
        comment=title,
    )
    header = xsd.ismrmrdHeader(
        version=1,
        experimentalConditions=xsd.experimentalConditionsType(
            H1resonanceFrequency_Hz=round(GYROMAGNETIC_HZ_PER_T * scan.field_strength_t)
        ),
        acquisitionSystemInformation=xsd.acquisitionSystemInformationType(
            systemFieldStrength_T=float(scan.field_strength_t), receiverChannels=scan.n_coils
        ),
        encoding=[
            xsd.encodingType(
                encodedSpace=space,
                reconSpace=space,
                encodingLimits=limits,
                trajectory=xsd.trajectoryType.OTHER,
                trajectoryDescription=description,
            )
        ],
        sequenceParameters=xsd.sequenceParametersType(
            TE=[te * 1e3 for te in scan.echo_te_s], sequence_type=_SEQUENCE_NAMES[scan.sequence]
        ),
    )
    return xsd.ToXML(header)


def _blade_sets(frame: np.ndarray, echo: np.ndarray) -> np.ndarray:
    """Index of each blade within its (frame, echo), in acquisition order."""
    sets = np.zeros_like(frame)
    for key in set(zip(frame.tolist(), echo.tolist(), strict=True)):
        where = np.flatnonzero((frame == key[0]) & (echo == key[1]))
        sets[where] = np.arange(where.size)
    return sets


def _flag(name: str) -> int:
    return 1 << (getattr(ismrmrd, name) - 1)


def _rows(heads: np.ndarray, data: list[np.ndarray], traj: list[np.ndarray]) -> np.ndarray:
    """Acquisition records in the ``ismrmrd.hdf5.acquisition_dtype`` layout."""
    rows = np.empty(len(heads), dtype=acquisition_dtype)
    rows["head"] = heads
    for i, (d, t) in enumerate(zip(data, traj, strict=True)):
        rows[i]["data"] = np.ascontiguousarray(d, dtype=np.complex64).view(np.float32).ravel()
        rows[i]["traj"] = np.ascontiguousarray(t, dtype=np.float32).ravel()
    return rows


def _noise_parts(scan: Scan, noise_chunk: int) -> list[np.ndarray]:
    if scan.noise is None:
        return []
    noise = scan.noise.detach().cpu().numpy().astype(np.complex64)
    return [noise[:, i : i + noise_chunk] for i in range(0, noise.shape[1], noise_chunk)]


def _image_records(scan: Scan, slice_index: int, average: int) -> tuple[np.ndarray, list, list]:
    """Headers, data and trajectories of the imaging lines of one slice (one average)."""
    kspace = scan.kspace.detach().cpu().numpy().astype(np.complex64)
    traj = scan.traj.detach().cpu().numpy().astype(np.float32)
    frame = scan.frame.cpu().numpy().astype(np.int64)
    echo = scan.echo.cpu().numpy().astype(np.int64)
    sets = _blade_sets(frame, echo)
    stamps = scan.timestamps_s.cpu().numpy().astype(np.float64)
    stamps = np.round((stamps - stamps.min()) / TICK_S)  # uint32 ticks from the first blade
    angles = scan.angles.cpu().numpy().astype(np.float64)
    n_lines = scan.n_blades * scan.n_lines
    # Headers filled column-wise (the per-object ismrmrd.Acquisition API is ~100x slower here).
    img = np.zeros(n_lines, dtype=acquisition_header_dtype)
    blade = np.repeat(np.arange(scan.n_blades), scan.n_lines)
    line = np.tile(np.arange(scan.n_lines), scan.n_blades)
    img["number_of_samples"] = scan.n_readout
    img["trajectory_dimensions"] = 2
    img["center_sample"] = scan.center_sample
    img["acquisition_time_stamp"] = stamps[blade]
    img["idx"]["set"] = sets[blade]
    img["idx"]["kspace_encode_step_1"] = line
    img["idx"]["repetition"] = frame[blade]
    img["idx"]["contrast"] = echo[blade]
    img["idx"]["slice"] = slice_index
    img["idx"]["average"] = average
    geometry = scan_geometry(scan, slice_index)
    read, phase = blade_directions(geometry, angles)
    img["read_dir"], img["phase_dir"] = read[blade], phase[blade]
    img["slice_dir"] = geometry.normal
    img["position"] = geometry.position_mm
    img["flags"] = np.where(line == 0, _flag("ACQ_FIRST_IN_ENCODE_STEP1"), 0) | np.where(
        line == scan.n_lines - 1, _flag("ACQ_LAST_IN_ENCODE_STEP1"), 0
    )
    data = list(kspace.transpose(1, 2, 0, 3).reshape(n_lines, scan.n_coils, -1))
    return img, data, list(traj.reshape(n_lines, scan.n_readout, 2))


def _check_compatible(slices: list[list[Scan]]) -> None:
    first = slices[0][0]
    keys = ("image_shape", "dwell_s", "center_sample", "sequence", "echo_te_s")
    for i, averages in enumerate(slices):
        for scan in averages:
            if not isinstance(scan, Scan):
                raise TypeError(
                    f"slices must hold propeller.scan.Scan objects, got {type(scan).__name__}"
                )
            if tuple(scan.kspace.shape) != tuple(first.kspace.shape) or any(
                getattr(scan, k) != getattr(first, k) for k in keys
            ):
                raise ValueError(
                    f"slice {i} must have the first slice's k-space shape and {', '.join(keys)} "
                    f"(one ISMRMRD header), got a different scan"
                )
    if len({len(a) for a in slices}) != 1:
        raise ValueError(
            f"every slice must have the same number of averages, got {[len(a) for a in slices]}"
        )


def write_exam(
    path: str | os.PathLike,
    slices: Sequence[Scan | Sequence[Scan]],
    title: str = "mrsolve PROPELLER",
    noise_chunk: int = 1024,
) -> Path:
    """Write several slices (each a Scan, or a list of Scans = its averages) as one ISMRMRD file.

    Slice i gets ``idx.slice = i``, average a ``idx.average = a`` and each blade's echo
    ``idx.contrast``; the header holds every echo's TE. All scans must share one header
    (image shape, dwell, echo centre, sequence, echo times). The noise scan of the first
    slice comes first. Written atomically (temporary name, then rename).
    """
    if isinstance(slices, Scan) or not isinstance(slices, Sequence) or len(slices) == 0:
        raise ValueError(f"slices must be a non-empty list of Scans, got {type(slices).__name__}")
    groups = [[s] if isinstance(s, Scan) else list(s) for s in slices]
    if any(len(g) == 0 for g in groups):
        raise ValueError("every slice must have at least one Scan (average), got an empty list")
    _check_compatible(groups)
    first = groups[0][0]
    noise_parts = _noise_parts(first, noise_chunk)
    records = [
        _image_records(scan, i, a) for i, group in enumerate(groups) for a, scan in enumerate(group)
    ]
    noise_heads = np.zeros(len(noise_parts), dtype=acquisition_header_dtype)
    noise_heads["number_of_samples"] = [part.shape[1] for part in noise_parts]
    noise_heads["flags"] = _flag("ACQ_IS_NOISE_MEASUREMENT")
    heads = np.concatenate([noise_heads, *(r[0] for r in records)])
    heads["version"] = 1
    heads["scan_counter"] = np.arange(heads.size)
    heads["sample_time_us"] = first.dwell_s * 1e6
    heads["active_channels"] = heads["available_channels"] = first.n_coils
    heads["flags"][-1] |= _flag("ACQ_LAST_IN_MEASUREMENT")
    data = noise_parts + [d for r in records for d in r[1]]
    trajs = [np.zeros((p.shape[1], 0), np.float32) for p in noise_parts]
    trajs += [t for r in records for t in r[2]]
    rows = _rows(heads, data, trajs)
    n_sets = int(_blade_sets(first.frame.cpu().numpy(), first.echo.cpu().numpy()).max()) + 1
    xml = _header_xml(first, n_sets, len(groups), len(groups[0]), title)
    return write_records(path, xml, rows)


def write_records(path: str | os.PathLike, xml: str, rows: np.ndarray) -> Path:
    """Write an XML header and acquisition records (``acquisition_dtype``) as an ISMRMRD 1
    HDF5 file, atomically."""
    with atomic_output(path) as tmp:
        with ismrmrd.Dataset(str(tmp), "dataset", mode="w") as dset:
            dset.write_xml_header(xml)
        with h5py.File(tmp, "a") as f:
            f["dataset"].create_dataset("data", data=rows, maxshape=(None,), chunks=True)
    return Path(path)


def write_ismrmrd(
    path: str | os.PathLike, scan: Scan, title: str = "mrsolve PROPELLER", noise_chunk: int = 1024
) -> Path:
    """Write ``scan`` as an ISMRMRD HDF5 file (atomically: temporary name, then rename).

    Noise scans come first, then one acquisition per line, blade by blade. Sample times
    are not stored: a reader recomputes them from dwell, echo centre, each echo's TE and
    the sequence type. Timestamps are rounded to 2.5 ms ticks.
    """
    if not isinstance(scan, Scan):
        raise TypeError(f"scan must be a propeller.scan.Scan, got {type(scan).__name__}")
    return write_exam(path, [scan], title, noise_chunk)


# -- header parsing ----------------------------------------------------------------------


def _limit(limits, name: str) -> int | None:
    value = getattr(limits, name, None) if limits is not None else None
    return None if value is None else int(value.maximum) + 1


def _facts_from_ismrmrd(xml: str) -> HeaderFacts:
    hdr = xsd.CreateFromDocument(xml)
    enc = hdr.encoding[0]
    space = enc.encodedSpace
    desc = enc.trajectoryDescription
    seq = hdr.sequenceParameters
    system = hdr.acquisitionSystemInformation
    h1 = hdr.experimentalConditions.H1resonanceFrequency_Hz
    recon = enc.reconSpace
    limits = enc.encodingLimits
    return HeaderFacts(
        trajectory=enc.trajectory.value,
        identifier=desc.identifier if desc is not None else None,
        matrix_size=(int(space.matrixSize.y), int(space.matrixSize.x)),
        fov_mm=(float(space.fieldOfView_mm.y), float(space.fieldOfView_mm.x)),
        te_s=float(seq.TE[0]) * 1e-3 if seq is not None and seq.TE else None,
        sequence_type=seq.sequence_type if seq is not None else None,
        field_strength_t=(
            float(system.systemFieldStrength_T)
            if system is not None and system.systemFieldStrength_T is not None
            else (h1 / GYROMAGNETIC_HZ_PER_T if h1 else None)
        ),
        n_sets=_limit(enc.encodingLimits, "set"),
        n_lines=_limit(enc.encodingLimits, "kspace_encoding_step_1"),
        n_repetitions=_limit(enc.encodingLimits, "repetition"),
        parser="ismrmrd",
        echo_te_s=tuple(float(te) * 1e-3 for te in (seq.TE if seq is not None else None) or ()),
        slice_thickness_mm=float(space.fieldOfView_mm.z) or None,
        recon_matrix_size=(int(recon.matrixSize.y), int(recon.matrixSize.x)),
        recon_fov_mm=(float(recon.fieldOfView_mm.y), float(recon.fieldOfView_mm.x)),
        line_center=(
            int(limits.kspace_encoding_step_1.center)
            if limits is not None and limits.kspace_encoding_step_1 is not None
            else None
        ),
    )


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _child(node: ET.Element | None, *names: str) -> ET.Element | None:
    """Follow a path of child names, ignoring XML namespaces."""
    for name in names:
        if node is None:
            return None
        node = next((c for c in node if _local(c.tag) == name), None)
    return node


def _text(node: ET.Element | None, *names: str, cast=str):
    found = _child(node, *names)
    if found is None or found.text is None or not found.text.strip():
        return None
    try:
        return cast(found.text.strip())
    except ValueError as err:
        raise ValueError(
            f"ISMRMRD header field {'/'.join(names)} must be a {cast.__name__}, got {found.text!r}"
        ) from err


def _facts_from_etree(xml: str) -> HeaderFacts:
    """Read the needed fields leniently (unknown elements, missing optional parts)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise ValueError(f"ISMRMRD XML header is not well-formed XML: {err}") from err
    enc = _child(root, "encoding")
    if enc is None:
        raise ValueError("ISMRMRD XML header has no <encoding> element")
    nx = _text(enc, "encodedSpace", "matrixSize", "x", cast=int)
    ny = _text(enc, "encodedSpace", "matrixSize", "y", cast=int)
    if nx is None or ny is None:
        raise ValueError("ISMRMRD XML header has no encoding/encodedSpace/matrixSize x and y")
    fov_x = _text(enc, "encodedSpace", "fieldOfView_mm", "x", cast=float)
    fov_y = _text(enc, "encodedSpace", "fieldOfView_mm", "y", cast=float)
    te_ms = _text(root, "sequenceParameters", "TE", cast=float)
    seq_node = _child(root, "sequenceParameters")
    all_te_ms = [
        float(c.text) for c in (seq_node if seq_node is not None else []) if _local(c.tag) == "TE"
    ]
    field = _text(root, "acquisitionSystemInformation", "systemFieldStrength_T", cast=float)
    h1 = _text(root, "experimentalConditions", "H1resonanceFrequency_Hz", cast=float)

    def limit(name):
        value = _text(enc, "encodingLimits", name, "maximum", cast=int)
        return None if value is None else value + 1

    rx = _text(enc, "reconSpace", "matrixSize", "x", cast=int)
    ry = _text(enc, "reconSpace", "matrixSize", "y", cast=int)
    rfov_x = _text(enc, "reconSpace", "fieldOfView_mm", "x", cast=float)
    rfov_y = _text(enc, "reconSpace", "fieldOfView_mm", "y", cast=float)

    return HeaderFacts(
        trajectory=(_text(enc, "trajectory") or "").lower(),
        identifier=_text(enc, "trajectoryDescription", "identifier"),
        matrix_size=(ny, nx),
        fov_mm=(fov_y or 256.0, fov_x or 256.0),
        te_s=None if te_ms is None else te_ms * 1e-3,
        sequence_type=_text(root, "sequenceParameters", "sequence_type"),
        field_strength_t=field if field else (h1 / GYROMAGNETIC_HZ_PER_T if h1 else None),
        n_sets=limit("set"),
        n_lines=limit("kspace_encoding_step_1"),
        n_repetitions=limit("repetition"),
        parser="etree",
        echo_te_s=tuple(te * 1e-3 for te in all_te_ms),
        slice_thickness_mm=_text(enc, "encodedSpace", "fieldOfView_mm", "z", cast=float) or None,
        recon_matrix_size=(ry, rx) if rx and ry else None,
        recon_fov_mm=(rfov_y, rfov_x) if rfov_x and rfov_y else None,
        line_center=_text(enc, "encodingLimits", "kspace_encoding_step_1", "center", cast=int),
    )


def source_header(xml: str | bytes) -> dict[str, dict[str, str | list[str]]]:
    """The header's patient, study, measurement, system and sequence fields as text
    ({section: {field: text, or a list of texts when repeated}}; sections it lacks are absent)."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as err:
        raise ValueError(f"ISMRMRD XML header is not well-formed XML: {err}") from err
    out: dict[str, dict] = {}
    for section in SOURCE_SECTIONS:
        node = _child(root, section)
        if node is None:
            continue
        fields: dict[str, str | list[str]] = {}
        for child in node:
            if child.text is None or not child.text.strip() or len(child):
                continue
            name, text = _local(child.tag), child.text.strip()
            if name in fields:
                previous = fields[name]
                fields[name] = [*previous, text] if isinstance(previous, list) else [previous, text]
            else:
                fields[name] = text
        if fields:
            out[section] = fields
    return out


def parse_header(xml: str | bytes) -> HeaderFacts:
    """Header facts through the ``ismrmrd`` schema classes, or leniently with xml.etree
    when the strict parser rejects the header."""
    text = xml.decode("utf-8", errors="replace") if isinstance(xml, bytes) else str(xml)
    try:
        return _facts_from_ismrmrd(text)
    except Exception:  # the strict parser raises many types (xsdata, ValueError, ...)
        return _facts_from_etree(text)


def _sequence(sequence_type: str | None) -> str:
    name = (sequence_type or "").replace("_", "").replace(" ", "").lower()
    if name in ("gradientecho", "gre", "flash", "fisp", "spgr", "ge"):
        return "gradient_echo"
    return "spin_echo"


# -- reading -----------------------------------------------------------------------------


def _dataset_name(path: Path) -> str:
    with h5py.File(path, "r") as f:
        if isinstance(f.get("dataset"), h5py.Group) and "xml" in f["dataset"]:
            return "dataset"
        for name, node in f.items():
            if isinstance(node, h5py.Group) and "xml" in node and "data" in node:
                return name
    raise ValueError(
        f"file {str(path)!r} holds no ISMRMRD dataset (no group with an 'xml' header and 'data')"
    )


def raw_format(path: str | os.PathLike) -> str:
    """ "mrd2" (an MRD 2 stream) or "ismrmrd" (ISMRMRD 1 HDF5), from the file's content.

    Raises FileNotFoundError for a missing file and ValueError for anything else.
    """
    p = existing_file(path, "a raw data file")
    if is_mrd2(p):
        return "mrd2"
    if not h5py.is_hdf5(p):
        raise ValueError(f"file {str(p)!r} is not an HDF5 file (ISMRMRD 1) nor an MRD 2 stream")
    return "ismrmrd"


def read_records(path: str | os.PathLike, heads_only: bool = False) -> tuple[str, np.ndarray]:
    """(XML header, acquisition records) of an ISMRMRD 1 or MRD 2 file, in the
    ``ismrmrd.hdf5.acquisition_dtype`` layout (only the ``head`` field with ``heads_only``)."""
    if raw_format(path) == "mrd2":
        xml, rows = read_mrd2(path)
        return xml, rows["head"] if heads_only else rows
    p = check_hdf5(path)
    name = _dataset_name(p)
    with ismrmrd.Dataset(str(p), name, mode="r") as dset:
        xml = dset.read_xml_header()
    xml = xml.decode("utf-8", errors="replace") if isinstance(xml, bytes) else str(xml)
    # One bulk read of the acquisition records: Dataset.read_acquisition re-indexes the
    # file per line, ~10 ms each here.
    with h5py.File(p, "r") as f:
        if "data" not in f[name]:
            rows = np.empty(0, acquisition_dtype)
            return xml, rows["head"] if heads_only else rows
        data = f[name]["data"]
        return xml, data.fields("head")[()] if heads_only else data[()]


def _checked_facts(xml: str) -> HeaderFacts:
    facts = parse_header(xml)
    if facts.trajectory not in ACCEPTED_TRAJECTORIES:
        raise ValueError(
            f"ISMRMRD trajectory must be one of {list(ACCEPTED_TRAJECTORIES)} "
            f"(PROPELLER: 'other' with identifier 'propeller'), got {facts.trajectory!r}"
        )
    return facts


def _imaging(heads: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the noise scans and of the imaging lines (navigators etc. skipped)."""
    flags = heads["flags"].astype(np.uint64)
    is_noise = (flags & np.uint64(_flag("ACQ_IS_NOISE_MEASUREMENT"))) != 0
    skipped = np.zeros_like(is_noise)
    for flag in _SKIPPED_FLAGS:
        skipped |= (flags & np.uint64(_flag(flag))) != 0
    return np.flatnonzero(is_noise), np.flatnonzero(~is_noise & ~skipped)


def list_slices(path: str | os.PathLike) -> list[int]:
    """The slice indices (``idx.slice``) of a file's imaging lines, sorted; reads headers only."""
    xml, heads = read_records(path, heads_only=True)
    _checked_facts(xml)
    _, imaging = _imaging(heads)
    if imaging.size == 0:
        raise ValueError(
            f"file {str(path)!r} has no imaging acquisitions (empty, or noise scans only)"
        )
    return sorted(set(heads["idx"]["slice"][imaging].tolist()))


def read_slices(path: str | os.PathLike, slices: Sequence[int] | None = None) -> dict[int, Scan]:
    """Read the slices of an ISMRMRD 1 or MRD 2 file: {slice index: Scan}, in slice order.

    Per slice, blades are the (repetition, contrast, set) triples in order of first
    appearance (``Scan.frame`` = repetition, ``Scan.echo`` = contrast, each echo's
    sample times from its own TE); lines are sorted by ``kspace_encode_step_1``; the
    averages of a line are combined by their complex mean. ``slices`` = None reads
    them all. Raises FileNotFoundError for a missing file and ValueError naming the
    problem for everything else (not HDF5 or MRD 2, no ISMRMRD dataset, unsupported
    trajectory, wrong trajectory dimensions, NaN or empty data, blades inconsistent
    with the header, a requested slice not in the file).
    """
    xml, rows = read_records(path)
    return slices_from_records(xml, rows, str(path), slices)


def slices_from_records(
    xml: str, rows: np.ndarray, label: str = "stream", slices: Sequence[int] | None = None
) -> dict[int, Scan]:
    """:func:`read_slices` on a header and records already in memory (``label`` names
    their source in messages)."""
    facts = _checked_facts(xml)
    heads = rows["head"]
    noise_idx, imaging = _imaging(heads)
    noise = [_samples(rows[i]) for i in noise_idx]
    if imaging.size == 0:
        raise ValueError(f"file {label!r} has no imaging acquisitions (empty, or noise scans only)")
    if facts.trajectory == "cartesian":
        facts = _cartesian_trajectories(rows, imaging, facts)
    dims = heads["trajectory_dimensions"][imaging]
    if not np.isin(dims, (2, 3)).all():
        bad = int(imaging[~np.isin(dims, (2, 3))][0])
        raise ValueError(
            f"acquisition {bad}: trajectory must have 2 dimensions (kx, ky) per sample (3 with "
            f"density weights), got trajectory_dimensions={heads['trajectory_dimensions'][bad]}"
        )
    dwells = heads["sample_time_us"][imaging].astype(np.float64)
    if not np.allclose(dwells, dwells[0], rtol=1e-4):
        raise ValueError(
            f"sample_time_us must be the same for all lines, got values from {dwells.min()} to {dwells.max()}"
        )
    in_file = sorted(set(heads["idx"]["slice"][imaging].tolist()))
    wanted = in_file if slices is None else [int(s) for s in slices]
    missing = sorted(set(wanted) - set(in_file))
    if missing:
        raise ValueError(f"slices {missing} are not in {label!r}, which holds slices {in_file}")
    first = heads[imaging[0]]
    dwell, centre = float(dwells[0]) * 1e-6, int(first["center_sample"])
    source = source_header(xml)
    scans = {}
    for index in sorted(set(wanted)):
        lines = imaging[heads["idx"]["slice"][imaging] == index]
        scan = _assemble(
            _blades(rows, lines), noise, facts, dwell or DEFAULT_DWELL_US * 1e-6, centre
        )
        if not dwell:
            scan.extra["assumed"].append(f"dwell {DEFAULT_DWELL_US} us")
        scan.geometry = _slice_geometry(rows, lines, facts, index)
        scan.extra.update(slice=index, slices_in_file=in_file, source_header=source)
        scans[index] = scan
    return scans


def _cartesian_trajectories(rows: np.ndarray, imaging: np.ndarray, facts: HeaderFacts):
    """Give Cartesian lines their k-space positions in cycles per recon field of view
    (readout oversampling shrinks the readout step); the image is the recon space."""
    heads = rows["head"]
    if (heads["trajectory_dimensions"][imaging] != 0).any():
        raise ValueError(
            f"ISMRMRD trajectory must be one of {list(ACCEPTED_TRAJECTORIES)}, with 'cartesian' "
            "only for lines without per-sample trajectories, got 'cartesian' with trajectories"
        )
    matrix = facts.recon_matrix_size or facts.matrix_size
    fov = facts.recon_fov_mm or facts.fov_mm
    step = (fov[1] / facts.fov_mm[1], fov[0] / facts.fov_mm[0])  # (kx, ky) per index
    centre = (
        facts.line_center
        if facts.line_center is not None
        else facts.n_lines // 2
        if facts.n_lines
        else 0
    )
    for i in imaging:
        head = heads[i]
        u = np.arange(int(head["number_of_samples"])) - int(head["center_sample"])
        ky = (int(head["idx"]["kspace_encode_step_1"]) - centre) * step[1]
        rows[i]["traj"] = (
            np.stack([u * step[0], np.full(u.size, ky)], -1).astype(np.float32).ravel()
        )
    heads["trajectory_dimensions"][imaging] = 2
    rows["head"] = heads
    return replace(facts, matrix_size=matrix, fov_mm=fov)


def _slice_geometry(
    rows: np.ndarray, lines: np.ndarray, facts: HeaderFacts, index: int
) -> SliceGeometry | None:
    """The slice's plane from its lines' position and read / phase directions (None when
    the file leaves the directions zero)."""
    heads = rows["head"][lines]
    read = heads["read_dir"].astype(np.float64)
    phase = heads["phase_dir"].astype(np.float64)
    if not (read.any() or phase.any()):
        return None
    theta = np.empty(len(lines))
    for k, i in enumerate(lines):  # each line's readout angle, from its own trajectory
        n, d = (
            int(rows[i]["head"]["number_of_samples"]),
            int(rows[i]["head"]["trajectory_dimensions"]),
        )
        t = rows[i]["traj"].reshape(n, d)
        theta[k] = np.arctan2(t[-1, 1] - t[0, 1], t[-1, 0] - t[0, 0])
    c, s = np.cos(theta)[:, None], np.sin(theta)[:, None]
    x, y = c * read - s * phase, s * read + c * phase

    def fixed(a, b):
        return np.abs(a - a[0]).max() < 1e-3 and np.abs(b - b[0]).max() < 1e-3

    if fixed(x, y):  # directions rotate with each blade (PROPELLER)
        x_dir, y_dir = x[0], y[0]
    elif fixed(read, phase):  # directions are the image axes
        x_dir, y_dir = read[0], phase[0]
    else:
        raise ValueError(
            f"slice {index}: acquisition read_dir / phase_dir must rotate with each line's "
            "readout angle or stay the same for every line, got neither"
        )
    try:
        return SliceGeometry(
            position_mm=tuple(heads["position"][0]),
            x_dir=tuple(x_dir),
            y_dir=tuple(y_dir),
            slice_thickness_mm=facts.slice_thickness_mm or DEFAULT_THICKNESS_MM,
        )
    except ValueError as err:
        raise ValueError(f"slice {index}: acquisition geometry is invalid: {err}") from err


def read_ismrmrd(path: str | os.PathLike, slice: int | None = None) -> Scan:
    """Read one slice of a PROPELLER (or radial / per-sample-trajectory) ISMRMRD file.

    ``slice`` = None reads the file's lowest slice index (the only one of a single-slice
    file); ``scan.extra["slices_in_file"]`` lists them all. See :func:`read_slices`.
    """
    if slice is None:
        return next(iter(read_slices(path, [list_slices(path)[0]]).values()))
    return read_slices(path, [slice])[slice]


def _blades(rows: np.ndarray, lines: np.ndarray) -> dict[tuple[int, int, int], dict[int, tuple]]:
    """{(repetition, contrast, set): {line: (data, traj, time stamp)}}, averages combined."""
    heads = rows["head"]
    blades: dict[tuple[int, int, int], dict[int, list]] = {}
    for i in lines:
        head = heads[i]
        idx = head["idx"]
        key = (int(idx["repetition"]), int(idx["contrast"]), int(idx["set"]))
        line, average = int(idx["kspace_encode_step_1"]), int(idx["average"])
        entry = blades.setdefault(key, {}).setdefault(line, [[], None, None, set()])
        if average in entry[3]:
            raise ValueError(
                f"acquisition {i}: blade (repetition={key[0]}, contrast={key[1]}, set={key[2]}) "
                f"has line {line} twice (average {average})"
            )
        n, d = int(head["number_of_samples"]), int(head["trajectory_dimensions"])
        entry[0].append(_samples(rows[i]))
        if entry[1] is None:
            entry[1] = rows[i]["traj"].reshape(n, d)[:, :2]
            entry[2] = int(head["acquisition_time_stamp"])
        entry[3].add(average)
    counts = {len(e[3]) for lines_ in blades.values() for e in lines_.values()}
    if len(counts) > 1:
        raise ValueError(f"every line must have the same number of averages, got {sorted(counts)}")
    out = {}
    for key, lines_ in blades.items():
        out[key] = {}
        for line, (data, traj, stamp, _) in lines_.items():
            shapes = {d.shape for d in data}
            if len(shapes) != 1:
                raise ValueError(
                    f"the averages of a line must have one shape, got {sorted(shapes)}"
                )
            out[key][line] = (np.mean(data, axis=0).astype(np.complex64), traj, stamp)
    return out


def _samples(row: np.void) -> np.ndarray:
    """(coils, samples) complex64 data of one acquisition record."""
    head = row["head"]
    shape = (int(head["active_channels"]), int(head["number_of_samples"]))
    return row["data"].view(np.complex64).reshape(shape)


def _assemble(blades, noise, facts: HeaderFacts, dwell: float, centre: int) -> Scan:
    line_sets = {tuple(sorted(lines)) for lines in blades.values()}
    if len(line_sets) != 1:
        raise ValueError(
            f"blades must all hold the same lines (kspace_encode_step_1), got {len(line_sets)} "
            f"different line sets"
        )
    shapes = {v[0].shape for lines in blades.values() for v in lines.values()}
    if len(shapes) != 1:
        raise ValueError(f"all lines must have the same (coils, samples), got {sorted(shapes)}")
    (n_coils, n_read), order = shapes.pop(), line_sets.pop()
    if n_coils == 0 or n_read == 0:
        raise ValueError(
            f"acquisitions must hold samples, got {n_coils} coil(s) x {n_read} samples per line"
        )
    reps = sorted({key[0] for key in blades})
    contrasts = sorted({key[1] for key in blades})
    groups = [(rep, con) for rep in reps for con in contrasts]
    per_frame = {g: sum(1 for k in blades if k[:2] == g) for g in groups}
    _check_against_header(facts, per_frame, len(order), len(reps))
    echo_te_s = _echo_times(facts, contrasts)

    kspace = np.stack([np.stack([blades[k][l][0] for l in order], 1) for k in blades], 1)
    traj = np.stack([np.stack([blades[k][l][1] for l in order]) for k in blades]).astype(np.float32)
    if not np.isfinite(kspace).all():
        raise ValueError("acquisition data must be finite, got NaN or infinite samples")
    if not np.isfinite(traj).all():
        raise ValueError("acquisition trajectories must be finite, got NaN or infinite values")
    ny, nx = facts.matrix_size
    extra = {
        "header_parser": facts.parser,
        "trajectory_identifier": facts.identifier,
        "propeller": (facts.identifier or "").lower() in PROPELLER_IDS,
    }
    if np.linalg.norm(traj, axis=-1).max() <= 0.75 and min(nx, ny) >= 4:
        # normalized to [-0.5, 0.5) (corners of rotated blades reach 0.71); in cycles/FOV
        # the readout alone reaches N/2 >= 2
        traj = traj * np.array([nx, ny], dtype=np.float32)
        extra["trajectory_rescaled"] = True
    if centre == 0 and n_read > 1:
        # writer left center_sample unset: take the sample nearest k = 0 on a centre line
        mid = traj[0, len(order) // 2]
        centre = int(np.argmin(np.linalg.norm(mid, axis=-1)))
    sequence = _sequence(facts.sequence_type)
    te_s = facts.te_s if facts.te_s is not None else 0.0
    field = facts.field_strength_t or DEFAULT_FIELD_T
    extra["assumed"] = [
        text
        for missing, text in (
            (facts.sequence_type is None, "sequence_type=SpinEcho"),
            (facts.te_s is None, "TE=0"),
            (facts.field_strength_t is None, f"field strength {DEFAULT_FIELD_T} T"),
        )
        if missing
    ]
    echo_of = {con: i for i, con in enumerate(contrasts)}
    echo = np.array([echo_of[key[1]] for key in blades], dtype=np.int64)
    te_s = echo_te_s[0]
    lines_times = [readout_times(n_read, centre, dwell, sequence, te) for te in echo_te_s]
    t = torch.stack([lines_times[e] for e in echo])[:, None, :]
    n_blades = len(blades)
    stamps = np.array([min(v[2] for v in lines.values()) for lines in blades.values()], np.float64)
    frame_of = {rep: i for i, rep in enumerate(reps)}
    noise_arr = None
    if noise:
        if any(n.shape[0] != n_coils for n in noise):
            raise ValueError(
                f"noise scans must have {n_coils} coils like the data, got "
                f"{sorted({n.shape[0] for n in noise})}"
            )
        noise_arr = torch.from_numpy(np.concatenate(noise, axis=1).astype(np.complex64))
    return Scan(
        kspace=torch.from_numpy(kspace.astype(np.complex64)),
        traj=torch.from_numpy(traj),
        times=t.expand(n_blades, len(order), n_read).contiguous(),
        image_shape=(ny, nx),
        dwell_s=dwell,
        center_sample=centre,
        te_s=te_s,
        sequence=sequence,
        field_strength_t=field,
        fov_mm=facts.fov_mm,
        frame=torch.tensor([frame_of[key[0]] for key in blades], dtype=torch.int64),
        timestamps_s=torch.from_numpy(((stamps - stamps.min()) * TICK_S).astype(np.float32)),
        noise=noise_arr,
        extra=extra,
        echo=torch.from_numpy(echo),
        echo_te_s=echo_te_s,
    )


def _echo_times(facts: HeaderFacts, contrasts: list[int]) -> tuple[float, ...]:
    """TE of each contrast present (seconds), from the header's TE list."""
    if len(contrasts) == 1:
        te = facts.echo_te_s
        return (te[contrasts[0]] if contrasts[0] < len(te) else (facts.te_s or 0.0),)
    if max(contrasts) >= len(facts.echo_te_s):
        raise ValueError(
            f"header sequenceParameters.TE must list a TE for each contrast {contrasts}, "
            f"got {len(facts.echo_te_s)} value(s)"
        )
    return tuple(facts.echo_te_s[c] for c in contrasts)


def _check_against_header(
    facts: HeaderFacts, per_frame: dict[tuple[int, int], int], n_lines: int, n_frames: int
) -> None:
    counts = set(per_frame.values())
    if len(counts) != 1:
        raise ValueError(
            "every frame (repetition) and echo (contrast) must have the same number of "
            f"blades, got {per_frame}"
        )
    n_blades = counts.pop()
    if facts.n_sets is not None and facts.n_sets != n_blades:
        raise ValueError(
            f"header encodingLimits.set says {facts.n_sets} blades, the data hold {n_blades} per frame"
        )
    if facts.n_lines is not None and facts.n_lines != n_lines:
        raise ValueError(
            f"header encodingLimits.kspace_encoding_step_1 says {facts.n_lines} lines per blade, "
            f"the data hold {n_lines}"
        )
    if facts.n_repetitions is not None and facts.n_repetitions != n_frames:
        raise ValueError(
            f"header encodingLimits.repetition says {facts.n_repetitions} frames, the data hold {n_frames}"
        )
