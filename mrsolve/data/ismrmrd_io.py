"""ISMRMRD HDF5 reader and writer for PROPELLER scans (methods/propeller.md, "File conventions").

One acquisition per readout line: ``idx.set`` = blade (within its frame),
``idx.kspace_encode_step_1`` = line in the blade, ``idx.repetition`` = frame;
``traj`` (samples, 2) in cycles/FOV as (kx, ky); ``sample_time_us`` = dwell;
``center_sample`` = echo centre; ``acquisition_time_stamp`` in ticks of 2.5 ms (the
Siemens convention). Noise scans carry ACQ_IS_NOISE_MEASUREMENT and become
``Scan.noise``, never data. Header: trajectory ``other`` with identifier ``propeller``
(``propellor`` and ``radial`` are accepted on input), TE in ms, sequence type,
field strength, matrix size and field of view.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import h5py
import ismrmrd
import ismrmrd.xsd as xsd
import numpy as np
import torch
from ismrmrd.hdf5 import acquisition_dtype, acquisition_header_dtype

from mrsolve.data.files import atomic_output, check_hdf5
from mrsolve.propeller.fat import GYROMAGNETIC_HZ_PER_T
from mrsolve.propeller.scan import Scan
from mrsolve.propeller.timing import readout_times

TICK_S = 2.5e-3  # acquisition_time_stamp unit
DEFAULT_FIELD_T = 3.0  # when the header gives neither field strength nor H1 frequency
PROPELLER_IDS = ("propeller", "propellor")
ACCEPTED_TRAJECTORIES = ("other", "radial")
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


# -- writing ---------------------------------------------------------------------------


def _header_xml(scan: Scan, n_sets: int, title: str) -> str:
    ny, nx = scan.image_shape
    fov_y, fov_x = scan.fov_mm
    space = xsd.encodingSpaceType(
        matrixSize=xsd.matrixSizeType(x=nx, y=ny, z=1),
        fieldOfView_mm=xsd.fieldOfViewMm(x=float(fov_x), y=float(fov_y), z=5.0),
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
            TE=[scan.te_s * 1e3], sequence_type=_SEQUENCE_NAMES[scan.sequence]
        ),
    )
    return xsd.ToXML(header)


def _blade_sets(frame: np.ndarray) -> np.ndarray:
    """Index of each blade within its frame, in acquisition order."""
    sets = np.zeros_like(frame)
    for f in np.unique(frame):
        where = np.flatnonzero(frame == f)
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


def write_ismrmrd(
    path: str | os.PathLike, scan: Scan, title: str = "mrsolve PROPELLER", noise_chunk: int = 1024
) -> Path:
    """Write ``scan`` as an ISMRMRD HDF5 file (atomically: temporary name, then rename).

    Noise scans come first, then one acquisition per line, blade by blade. Sample times
    are not stored: a reader recomputes them from dwell, echo centre, TE and sequence
    type. Timestamps are rounded to 2.5 ms ticks.
    """
    if not isinstance(scan, Scan):
        raise TypeError(f"scan must be a propeller.scan.Scan, got {type(scan).__name__}")
    kspace = scan.kspace.detach().cpu().numpy().astype(np.complex64)
    traj = scan.traj.detach().cpu().numpy().astype(np.float32)
    frame = scan.frame.cpu().numpy().astype(np.int64)
    sets = _blade_sets(frame)
    n_sets = int(sets.max()) + 1
    stamps = scan.timestamps_s.cpu().numpy().astype(np.float64)
    stamps = np.round((stamps - stamps.min()) / TICK_S)  # uint32 ticks from the first blade
    angles = scan.angles.cpu().numpy().astype(np.float64)
    noise_parts = []
    if scan.noise is not None:
        noise = scan.noise.detach().cpu().numpy().astype(np.complex64)
        noise_parts = [noise[:, i : i + noise_chunk] for i in range(0, noise.shape[1], noise_chunk)]
    n_noise, n_lines = len(noise_parts), scan.n_blades * scan.n_lines

    # Headers filled column-wise (the per-object ismrmrd.Acquisition API is ~100x slower here).
    heads = np.zeros(n_noise + n_lines, dtype=acquisition_header_dtype)
    heads["version"] = 1
    heads["scan_counter"] = np.arange(heads.size)
    heads["sample_time_us"] = scan.dwell_s * 1e6
    heads["active_channels"] = heads["available_channels"] = scan.n_coils
    heads["number_of_samples"][:n_noise] = [part.shape[1] for part in noise_parts]
    heads["flags"][:n_noise] = _flag("ACQ_IS_NOISE_MEASUREMENT")
    img = heads[n_noise:]  # a view: filling it fills heads
    blade = np.repeat(np.arange(scan.n_blades), scan.n_lines)
    line = np.tile(np.arange(scan.n_lines), scan.n_blades)
    img["number_of_samples"] = scan.n_readout
    img["trajectory_dimensions"] = 2
    img["center_sample"] = scan.center_sample
    img["acquisition_time_stamp"] = stamps[blade]
    img["idx"]["set"] = sets[blade]
    img["idx"]["kspace_encode_step_1"] = line
    img["idx"]["repetition"] = frame[blade]
    c, s = np.cos(angles[blade]), np.sin(angles[blade])
    img["read_dir"] = np.stack([c, s, 0 * c], -1)
    img["phase_dir"] = np.stack([-s, c, 0 * c], -1)
    img["slice_dir"][:, 2] = 1.0
    img["flags"] = np.where(line == 0, _flag("ACQ_FIRST_IN_ENCODE_STEP1"), 0) | np.where(
        line == scan.n_lines - 1, _flag("ACQ_LAST_IN_ENCODE_STEP1"), 0
    )
    img["flags"][-1] |= _flag("ACQ_LAST_IN_MEASUREMENT")
    data = noise_parts + list(kspace.transpose(1, 2, 0, 3).reshape(n_lines, scan.n_coils, -1))
    trajs = [np.zeros((p.shape[1], 0), np.float32) for p in noise_parts] + list(
        traj.reshape(n_lines, scan.n_readout, 2)
    )
    rows = _rows(heads, data, trajs)
    with atomic_output(path) as tmp:
        with ismrmrd.Dataset(str(tmp), "dataset", mode="w") as dset:
            dset.write_xml_header(_header_xml(scan, n_sets, title))
        with h5py.File(tmp, "a") as f:
            f["dataset"].create_dataset("data", data=rows, maxshape=(None,), chunks=True)
    return Path(path)


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
    field = _text(root, "acquisitionSystemInformation", "systemFieldStrength_T", cast=float)
    h1 = _text(root, "experimentalConditions", "H1resonanceFrequency_Hz", cast=float)

    def limit(name):
        value = _text(enc, "encodingLimits", name, "maximum", cast=int)
        return None if value is None else value + 1

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
    )


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


def read_ismrmrd(path: str | os.PathLike) -> Scan:
    """Read a PROPELLER (or radial / per-sample-trajectory) ISMRMRD file into a Scan.

    Blades are the (repetition, set) pairs in order of first appearance; lines are
    sorted by ``kspace_encode_step_1``. The file is opened read-only. Raises
    FileNotFoundError for a missing file and ValueError naming the problem for
    everything else (not HDF5, no ISMRMRD dataset, unsupported trajectory, wrong
    trajectory dimensions, NaN or empty data, blades inconsistent with the header).
    """
    p = check_hdf5(path)
    name = _dataset_name(p)
    with ismrmrd.Dataset(str(p), name, mode="r") as dset:
        facts = parse_header(dset.read_xml_header())
    if facts.trajectory not in ACCEPTED_TRAJECTORIES:
        raise ValueError(
            f"ISMRMRD trajectory must be one of {list(ACCEPTED_TRAJECTORIES)} "
            f"(PROPELLER: 'other' with identifier 'propeller'), got {facts.trajectory!r}"
        )
    # One bulk read of the acquisition records (ismrmrd.hdf5.acquisition_dtype layout):
    # Dataset.read_acquisition re-indexes the file per line, ~10 ms each here.
    with h5py.File(p, "r") as f:
        rows = f[name]["data"][()] if "data" in f[name] else np.empty(0, acquisition_dtype)
    heads = rows["head"]
    flags = heads["flags"].astype(np.uint64)
    is_noise = (flags & np.uint64(_flag("ACQ_IS_NOISE_MEASUREMENT"))) != 0
    skipped = np.zeros_like(is_noise)
    for flag in _SKIPPED_FLAGS:
        skipped |= (flags & np.uint64(_flag(flag))) != 0
    noise = [_samples(rows[i]) for i in np.flatnonzero(is_noise)]
    imaging = np.flatnonzero(~is_noise & ~skipped)
    if imaging.size == 0:
        raise ValueError(
            f"file {str(p)!r} has no imaging acquisitions (empty, or noise scans only)"
        )
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
    blades: dict[tuple[int, int], dict[int, tuple]] = {}
    for i in imaging:
        head = heads[i]
        key = (int(head["idx"]["repetition"]), int(head["idx"]["set"]))
        line = int(head["idx"]["kspace_encode_step_1"])
        lines = blades.setdefault(key, {})
        if line in lines:
            raise ValueError(
                f"acquisition {i}: blade (repetition={key[0]}, set={key[1]}) has line {line} twice"
            )
        n, d = int(head["number_of_samples"]), int(head["trajectory_dimensions"])
        traj = rows[i]["traj"].reshape(n, d)[:, :2]
        lines[line] = (_samples(rows[i]), traj, int(head["acquisition_time_stamp"]))
    first = heads[imaging[0]]
    return _assemble(blades, noise, facts, float(dwells[0]) * 1e-6, int(first["center_sample"]))


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
    reps = sorted({rep for rep, _ in blades})
    per_frame = {rep: sum(1 for r, _ in blades if r == rep) for rep in reps}
    _check_against_header(facts, per_frame, len(order), len(reps))

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
    t = readout_times(n_read, centre, dwell, sequence, te_s)
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
        frame=torch.tensor([frame_of[rep] for rep, _ in blades], dtype=torch.int64),
        timestamps_s=torch.from_numpy(((stamps - stamps.min()) * TICK_S).astype(np.float32)),
        noise=noise_arr,
        extra=extra,
    )


def _check_against_header(
    facts: HeaderFacts, per_frame: dict[int, int], n_lines: int, n_frames: int
) -> None:
    counts = set(per_frame.values())
    if len(counts) != 1:
        raise ValueError(
            f"every frame (repetition) must have the same number of blades, got {per_frame}"
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
