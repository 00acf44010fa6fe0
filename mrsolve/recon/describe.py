"""Readable summaries of the files the tool reads and writes (``recon info``)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import ismrmrd
import numpy as np
from rich.table import Table

from mrsolve.data.files import check_hdf5
from mrsolve.data.ismrmrd_io import list_slices, raw_format, read_ismrmrd, read_records

_NOISE_FLAG = np.uint64(1 << (ismrmrd.ACQ_IS_NOISE_MEASUREMENT - 1))


def describe_file(path: Path) -> Table:
    """A table describing a raw ISMRMRD 1 or MRD 2 file, an output file or a ground-truth file."""
    if raw_format(path) == "mrd2":
        return _describe_raw(Path(path))
    p = check_hdf5(path)
    with h5py.File(p, "r") as f:
        is_raw = any(isinstance(g, h5py.Group) and "xml" in g for g in f.values())
        if not is_raw:
            if "image" not in f:
                raise ValueError(
                    f"file {str(p)!r} is neither an ISMRMRD raw file nor an mrsolve output "
                    f"or truth file (no ISMRMRD header and no /image)"
                )
            return _describe_maps(p, f)
    return _describe_raw(p)


def _table(title: str) -> Table:
    table = Table(title=title, show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    return table


def _count_averages(path: Path) -> int:
    """Distinct ``idx.average`` values of the imaging lines (reads the headers only)."""
    _, heads = read_records(path, heads_only=True)
    imaging = (heads["flags"].astype(np.uint64) & _NOISE_FLAG) == 0
    return len(set(heads["idx"]["average"][imaging].tolist()))


def _describe_raw(path: Path) -> Table:
    slices = list_slices(path)
    scan = read_ismrmrd(path, slice=slices[0])  # slices of one file share their geometry
    kind = "MRD 2" if raw_format(path) == "mrd2" else "ISMRMRD"
    table = _table(f"{path.name}: {kind} PROPELLER raw data")
    dk = scan.traj[0, 0, 1] - scan.traj[0, 0, 0]
    tes = ", ".join(f"{te * 1e3:.3g}" for te in scan.echo_te_s)
    rows = {
        "slices": f"{len(slices)}: {', '.join(map(str, slices))}",
        "echoes: TE (ms)": f"{scan.n_echoes}: {tes}",
        "averages": _count_averages(path),
        "image size (ny, nx)": scan.image_shape,
        "field of view (mm)": scan.fov_mm,
        "coils": scan.n_coils,
        "blades x lines x readout": f"{scan.n_blades} x {scan.n_lines} x {scan.n_readout}",
        "frames": scan.n_frames,
        "readout spacing (cycles/FOV)": f"{float(dk.norm()):.3g}",
        "sequence": scan.sequence.replace("_", " "),
        "dwell (us)": f"{scan.dwell_s * 1e6:.3g}",
        "readout duration (ms)": f"{scan.n_readout * scan.dwell_s * 1e3:.3g}",
        "field strength (T)": scan.field_strength_t,
        "noise scan samples": 0 if scan.noise is None else scan.noise.shape[-1],
        "slice centre, x / y axes (LPS)": "unknown (axial at the isocentre assumed)"
        if scan.geometry is None
        else f"{scan.geometry.position_mm}, {scan.geometry.x_dir} / {scan.geometry.y_dir}",
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


def _describe_maps(path: Path, f: h5py.File) -> Table:
    method = f.attrs.get("method")
    if method == "truth":  # write_truth's mark
        kind = "ground truth"
    else:
        kind = "mrsolve reconstruction" if method is not None else "maps"
    table = _table(f"{path.name}: {kind}")
    for key in ("method", "device", "runtime_s", "mrsolve_version", "input_sha256"):
        if key in f.attrs:
            table.add_row(key, str(f.attrs[key]))
    for key in ("axes", "slices"):  # the leading axes of a whole-exam output, its slice indices
        if key in f.attrs:
            values = [v.decode() if isinstance(v, bytes) else str(v) for v in f.attrs[key]]
            table.add_row(key, ", ".join(values))
    for name, node in f.items():
        if isinstance(node, h5py.Dataset):
            table.add_row(f"/{name}", f"{node.shape} {node.dtype}")
    if "config" in f.attrs:
        table.add_row("config", json.dumps(json.loads(f.attrs["config"]), sort_keys=True))
    return table
