"""MRD 2 (the ``mrd-python`` binary stream format) to and from the ISMRMRD 1 record layout.

The readers of this package work on ISMRMRD 1 acquisition records (the
``ismrmrd.hdf5.acquisition_dtype`` rows of an HDF5 file) and the XML header; an MRD 2
stream is read into exactly that form, so both formats pass the same checks. Header
conversion walks the two generated type trees (``ismrmrd.xsd`` dataclasses and
``mrd`` classes) by field name: ``fieldOfView_mm`` <-> ``field_of_view_mm``, enums by
their names, dates and times by their components, so every field the two schemas share
survives a round trip. Acquisition flags have the same bit values in both formats.

``mrd`` is imported inside the functions: ``recon --help`` must not pay for it.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import os
import re
import types
import typing
from collections.abc import Iterable, Iterator
from typing import BinaryIO

import ismrmrd.xsd as xsd
import numpy as np
from ismrmrd.hdf5 import acquisition_dtype

MAGIC = b"yardl"  # first bytes of a yardl binary stream (MRD 2)
_ACRONYMS = {"TR": "t_r", "TE": "t_e", "TI": "t_i"}
_SHARED_HEAD = (
    "flags",
    "measurement_uid",
    "scan_counter",
    "acquisition_time_stamp",
    "discard_pre",
    "discard_post",
    "center_sample",
    "encoding_space_ref",
    "sample_time_us",
)
_VECTORS = ("position", "read_dir", "phase_dir", "slice_dir", "patient_table_position")
_COUNTERS = (
    "kspace_encode_step_1",
    "kspace_encode_step_2",
    "average",
    "slice",
    "contrast",
    "phase",
    "repetition",
    "set",
    "segment",
)


def is_mrd2(path: str | os.PathLike) -> bool:
    """True when the file starts with the MRD 2 (yardl binary) magic bytes."""
    with open(path, "rb") as handle:
        return handle.read(len(MAGIC)) == MAGIC


# -- header: ismrmrd.xsd dataclasses <-> mrd classes --------------------------------------


def _snake(name: str) -> str:
    if name in _ACRONYMS:
        return _ACRONYMS[name]
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", name).lower()


def _inner(hint) -> tuple[type, bool]:
    """(element type, is a list) of an annotation such as ``Optional[list[X]]`` or ``None | X``."""
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) in (typing.Union, types.UnionType) and len(args) == 1:
        return _inner(args[0])
    if typing.get_origin(hint) is list:
        return typing.get_args(hint)[0], True
    return hint, False


def _enum_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _convert(value, target: type, to_mrd: bool):
    """One leaf or record value converted to the ``target`` type of the other schema."""
    if isinstance(target, type) and issubclass(target, enum.Enum):
        key = _enum_key(value.name if isinstance(value, enum.Enum) else str(value))
        for member in target:
            if key in (_enum_key(member.name), _enum_key(str(member.value))):
                return member
        raise ValueError(f"header value {value!r} has no counterpart in {target.__name__}")
    if target is str and isinstance(value, enum.Enum):  # mrd PatientGender -> xsd str
        return value.name
    if target is datetime.date:
        return value.to_date()
    if target.__name__ == "Time":  # mrd's yardl Time
        return target.from_components(value.hour, value.minute, value.second, 0)
    if target.__name__ == "XmlDate":
        return target.from_date(value)
    if target.__name__ == "XmlTime":
        return target(value.hour, value.minute, value.second)
    if dataclasses.is_dataclass(target) or target.__module__ == "mrd.types":
        return _record(value, target, to_mrd)
    if target is bytes and isinstance(value, str):
        return value.encode()
    return target(value)


def _record(obj, target: type, to_mrd: bool):
    """``obj`` (an xsd dataclass or an mrd record) as an instance of ``target``."""
    if to_mrd:
        hints = typing.get_type_hints(target.__init__)
        pairs = [(f.name, _snake(f.name)) for f in dataclasses.fields(obj)]
    else:
        hints = typing.get_type_hints(target)
        pairs = [(_snake(f.name), f.name) for f in dataclasses.fields(target)]
    kwargs = {}
    for source_name, target_name in pairs:
        value = getattr(obj, source_name, None)
        if value is None or (isinstance(value, list) and not value) or target_name not in hints:
            continue
        element, is_list = _inner(hints[target_name])
        kwargs[target_name] = (
            [_convert(v, element, to_mrd) for v in value]
            if is_list
            else _convert(value, element, to_mrd)
        )
    return target(**kwargs)


def header_to_mrd(xml: str):
    """An ISMRMRD 1 XML header as an ``mrd.Header``."""
    import mrd

    return _record(xsd.CreateFromDocument(xml), mrd.Header, to_mrd=True)


def header_to_xml(header) -> str:
    """An ``mrd.Header`` as ISMRMRD 1 XML."""
    return xsd.ToXML(_record(header, xsd.ismrmrdHeader, to_mrd=False))


# -- acquisitions: ISMRMRD 1 records <-> mrd.Acquisition ----------------------------------


def acquisitions_to_records(acquisitions: Iterable) -> np.ndarray:
    """``mrd.Acquisition`` objects as rows of ``ismrmrd.hdf5.acquisition_dtype``."""
    acquisitions = list(acquisitions)
    rows = np.zeros(len(acquisitions), dtype=acquisition_dtype)
    heads = rows["head"]
    for i, acq in enumerate(acquisitions):
        h = acq.head
        head = heads[i]
        head["version"] = 1
        for name in _SHARED_HEAD:
            value = getattr(h, name)
            head[name] = 0 if value is None else int(value) if name != "sample_time_us" else value
        for name in _VECTORS:
            head[name] = getattr(h, name)
        for name in _COUNTERS:
            head["idx"][name] = getattr(h.idx, name) or 0
        head["idx"]["user"][: len(h.idx.user)] = h.idx.user[:8]
        head["physiology_time_stamp"][: len(h.physiology_time_stamp)] = h.physiology_time_stamp[:3]
        head["user_int"][: len(h.user_int)] = h.user_int[:8]
        head["user_float"][: len(h.user_float)] = h.user_float[:8]
        coils, samples = acq.data.shape
        head["number_of_samples"] = samples
        head["active_channels"] = head["available_channels"] = coils
        head["trajectory_dimensions"] = acq.trajectory.shape[0] if acq.trajectory.size else 0
        rows[i]["data"] = np.ascontiguousarray(acq.data, np.complex64).view(np.float32).ravel()
        # MRD 2 trajectories are (dimensions, samples); ISMRMRD 1 stores samples first
        rows[i]["traj"] = np.ascontiguousarray(acq.trajectory.T, np.float32).ravel()
    return rows


def records_to_acquisitions(rows: np.ndarray) -> Iterator:
    """Rows of ``ismrmrd.hdf5.acquisition_dtype`` as ``mrd.Acquisition`` objects."""
    import mrd

    for row in rows:
        head = row["head"]
        coils, samples = int(head["active_channels"]), int(head["number_of_samples"])
        dims = int(head["trajectory_dimensions"])
        idx = mrd.EncodingCounters(
            **{name: int(head["idx"][name]) for name in _COUNTERS},
            user=[int(v) for v in head["idx"]["user"]],
        )
        fields = {name: head[name].item() for name in _SHARED_HEAD}
        fields["flags"] = mrd.AcquisitionFlags(int(fields["flags"]))
        yield mrd.Acquisition(
            head=mrd.AcquisitionHeader(
                **fields,
                idx=idx,
                physiology_time_stamp=[int(v) for v in head["physiology_time_stamp"]],
                channel_order=list(range(coils)),
                user_int=[int(v) for v in head["user_int"]],
                user_float=[float(v) for v in head["user_float"]],
                **{name: np.asarray(head[name], np.float32) for name in _VECTORS},
            ),
            data=row["data"].view(np.complex64).reshape(coils, samples),
            trajectory=np.ascontiguousarray(
                row["traj"].reshape(samples, dims).T if dims else np.zeros((0, samples)),
                np.float32,
            ),
        )


# -- files and streams --------------------------------------------------------------------


def read_mrd2(source: str | os.PathLike | BinaryIO) -> tuple[str, np.ndarray]:
    """(ISMRMRD 1 XML header, acquisition records) of an MRD 2 stream (path or binary file).

    Items other than acquisitions (images, waveforms) are skipped. Raises ValueError
    when the stream is not MRD 2 or has no header.
    """
    import mrd

    stream = str(source) if isinstance(source, str | os.PathLike) else source
    try:
        with mrd.BinaryMrdReader(stream) as reader:
            header = reader.read_header()
            acquisitions = [
                item.value
                for item in reader.read_data()
                if isinstance(item, mrd.StreamItem.Acquisition)
            ]
    # a truncated or corrupt stream fails inside the generated decoder in many ways
    except (RuntimeError, EOFError, BufferError, ValueError, IndexError, KeyError) as err:
        raise ValueError(f"input is not a readable MRD 2 stream: {err}") from err
    if header is None:
        raise ValueError("MRD 2 stream has no header")
    return header_to_xml(header), acquisitions_to_records(acquisitions)


def write_mrd2(target: str | os.PathLike | BinaryIO, xml: str, rows: np.ndarray) -> None:
    """Write an ISMRMRD 1 header and acquisition records as an MRD 2 stream with
    ``mrd.BinaryMrdWriter`` (a path is written atomically)."""
    import mrd

    from mrsolve.data.files import atomic_output

    def write(stream) -> None:
        with mrd.BinaryMrdWriter(stream) as writer:
            writer.write_header(header_to_mrd(xml))
            writer.write_data(mrd.StreamItem.Acquisition(a) for a in records_to_acquisitions(rows))

    if isinstance(target, str | os.PathLike):
        with atomic_output(target) as tmp:
            write(str(tmp))
    else:
        write(target)


def image_items(rec, complex_images: bool = False) -> Iterator:
    """The maps of a Reconstruction as MRD 2 image stream items, one per slice / echo /
    frame of each map, with image headers (geometry, indices, series index per map) and
    meta (``mrsolve_map``, ``unit``, ``method``).

    Images are float magnitudes (what image tools downstream expect); with
    ``complex_images`` the image, water and fat are complex instead.
    """
    import mrd

    from mrsolve.data.export_maps import export_maps, slice_affines

    maps = export_maps(rec)
    affines = slice_affines(rec, maps[0].values.shape[0])
    index = 0
    for series, item in enumerate(maps, start=1):
        values = item.values
        if complex_images and item.name in ("image", "water", "fat"):
            values = np.asarray(getattr(rec, item.name)).reshape(values.shape)
        s_count, e_count, f_count, ny, nx = values.shape
        for s in range(s_count):
            affine = affines[s]
            steps = np.linalg.norm(affine[:3, :3], axis=0)
            position = affine @ np.array([nx // 2, ny // 2, 0, 1])
            for e in range(e_count):
                for f in range(f_count):
                    pixels = values[s, e, f][None, None]
                    head = mrd.ImageHeader(
                        image_type=(
                            mrd.ImageType.COMPLEX
                            if np.iscomplexobj(pixels)
                            else mrd.ImageType.REAL
                            if item.name == "field_map_hz"
                            else mrd.ImageType.MAGNITUDE
                        ),
                        field_of_view=np.array(
                            [steps[0] * nx, steps[1] * ny, steps[2]], np.float32
                        ),
                        position=position[:3].astype(np.float32),
                        col_dir=(affine[:3, 0] / steps[0]).astype(np.float32),
                        line_dir=(affine[:3, 1] / steps[1]).astype(np.float32),
                        slice_dir=(affine[:3, 2] / steps[2]).astype(np.float32),
                        slice=s,
                        contrast=e,
                        repetition=f,
                        image_index=index,
                        image_series_index=series,
                    )
                    index += 1
                    meta = {
                        "mrsolve_map": [mrd.ImageMetaValue.String(item.name)],
                        "unit": [mrd.ImageMetaValue.String(item.unit)],
                        "method": [mrd.ImageMetaValue.String(str(rec.method))],
                    }
                    if np.iscomplexobj(pixels):
                        image = mrd.Image[np.complex64](
                            head=head, data=pixels.astype(np.complex64), meta=meta
                        )
                        yield mrd.StreamItem.ImageComplexFloat(image)
                    else:
                        image = mrd.Image[np.float32](
                            head=head, data=pixels.astype(np.float32), meta=meta
                        )
                        yield mrd.StreamItem.ImageFloat(image)
