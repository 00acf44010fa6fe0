"""Readable summaries of the files the tool reads and writes (``recon info``)."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
from rich.table import Table

from mrsolve.data.files import check_hdf5
from mrsolve.data.ismrmrd_io import read_ismrmrd


def describe_file(path: Path) -> Table:
    """A table describing a raw ISMRMRD file, an output file or a ground-truth file."""
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


def _describe_raw(path: Path) -> Table:
    scan = read_ismrmrd(path)
    table = _table(f"{path.name}: ISMRMRD PROPELLER raw data")
    dk = scan.traj[0, 0, 1] - scan.traj[0, 0, 0]
    rows = {
        "image size (ny, nx)": scan.image_shape,
        "field of view (mm)": scan.fov_mm,
        "coils": scan.n_coils,
        "blades x lines x readout": f"{scan.n_blades} x {scan.n_lines} x {scan.n_readout}",
        "frames": scan.n_frames,
        "readout spacing (cycles/FOV)": f"{float(dk.norm()):.3g}",
        "sequence": scan.sequence.replace("_", " "),
        "TE (ms)": f"{scan.te_s * 1e3:.3g}",
        "dwell (us)": f"{scan.dwell_s * 1e6:.3g}",
        "readout duration (ms)": f"{scan.n_readout * scan.dwell_s * 1e3:.3g}",
        "field strength (T)": scan.field_strength_t,
        "noise scan samples": 0 if scan.noise is None else scan.noise.shape[-1],
    }
    for key, value in rows.items():
        table.add_row(key, str(value))
    return table


def _describe_maps(path: Path, f: h5py.File) -> Table:
    kind = "mrsolve reconstruction" if "method" in f.attrs else "ground truth / maps"
    table = _table(f"{path.name}: {kind}")
    for key in ("method", "device", "runtime_s", "mrsolve_version", "input_sha256"):
        if key in f.attrs:
            table.add_row(key, str(f.attrs[key]))
    for name, node in f.items():
        if isinstance(node, h5py.Dataset):
            table.add_row(f"/{name}", f"{node.shape} {node.dtype}")
    if "config" in f.attrs:
        table.add_row("config", json.dumps(json.loads(f.attrs["config"]), sort_keys=True))
    return table
