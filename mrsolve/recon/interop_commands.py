"""What ``recon export``, ``recon convert``, ``recon stream`` and ``recon run --export`` do.

NIfTI / DICOM writers and ``mrd`` are imported inside the functions so that
``recon --help`` stays fast.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import BinaryIO

from rich.console import Console

from mrsolve.data.exam import stack_results
from mrsolve.data.export_maps import EXPORT_FORMATS
from mrsolve.data.ismrmrd_io import raw_format, read_records, slices_from_records, write_records
from mrsolve.data.results import Reconstruction, read_result
from mrsolve.recon.methods import check_request
from mrsolve.recon.progress import progress_callback
from mrsolve.solvers.validation import resolve_device

__all__ = ["convert_file", "export_reconstruction", "export_result_file", "parse_formats", "stream"]


def parse_formats(text: str) -> list[str]:
    """Export formats from "nifti", "dicom" or "nifti,dicom"."""
    formats = [f.strip().lower() for f in str(text).split(",") if f.strip()]
    bad = [f for f in formats if f not in EXPORT_FORMATS]
    if not formats or bad:
        raise ValueError(
            f"--format must be {' or '.join(EXPORT_FORMATS)} (comma-separated), got {text!r}"
        )
    return list(dict.fromkeys(formats))


def export_reconstruction(
    rec: Reconstruction, formats: list[str], folder: Path, anonymize: bool = False
) -> list[Path]:
    """Write ``rec`` in each format: into ``folder`` for one format, ``folder/<format>`` for several."""
    from mrsolve.data.export_dicom import write_dicom
    from mrsolve.data.export_nifti import write_nifti

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"export folder {str(folder)!r} is a file, expected a folder")
    if not folder.parent.is_dir():
        raise ValueError(f"export folder's parent {str(folder.parent)!r} does not exist")
    written = []
    for fmt in formats:
        target = folder if len(formats) == 1 else folder / fmt
        if fmt == "nifti":
            written += write_nifti(rec, target)
        else:
            written += write_dicom(rec, target, anonymize=anonymize)
    return written


def export_result_file(
    output: Path, formats: str, folder: Path, anonymize: bool = False
) -> list[Path]:
    """``recon export``: an mrsolve output file to NIfTI and / or DICOM."""
    return export_reconstruction(read_result(output), parse_formats(formats), folder, anonymize)


def convert_file(source: Path, target: Path) -> str:
    """``recon convert``: ISMRMRD 1 HDF5 -> MRD 2 stream, or MRD 2 -> ISMRMRD 1; returns
    the target's format. Every header field the two schemas share is kept."""
    from mrsolve.data.mrd2_io import write_mrd2

    source, target = Path(source), Path(target)
    if target.exists() and target.resolve() == source.resolve():
        raise ValueError(f"output {str(target)!r} is the input file; choose another name")
    kind = raw_format(source)
    xml, rows = read_records(source)
    if kind == "ismrmrd":
        write_mrd2(target, xml, rows)
        return "mrd2"
    write_records(target, xml, rows)
    return "ismrmrd"


def stream(
    method: str,
    options: dict,
    device: str = "cpu",
    complex_images: bool = False,
    source: BinaryIO | None = None,
    sink: BinaryIO | None = None,
) -> int:
    """``recon stream``: MRD 2 acquisitions on ``source`` (stdin) -> MRD 2 images on
    ``sink`` (stdout): the input header, then every map of every slice. Progress goes to
    stderr. Returns the number of images written."""
    import mrd

    from mrsolve.data.mrd2_io import header_to_mrd, image_items, read_mrd2
    from mrsolve.recon.commands import reconstruct_scan

    check_request(method, options, False)
    source = sys.stdin.buffer if source is None else source
    sink = sys.stdout.buffer if sink is None else sink
    xml, rows = read_mrd2(source)
    scans = slices_from_records(xml, rows, "stdin")
    dev = resolve_device(device)
    console = Console(stderr=True)
    recs = []
    for index, scan in scans.items():
        with progress_callback(f"{method} slice {index}", console) as callback:
            recs.append(reconstruct_scan(scan, method, None, dev, dict(options), callback))
    rec = stack_results(recs, "slice", list(scans)) if len(recs) > 1 else recs[0]
    items = list(image_items(rec, complex_images))
    with mrd.BinaryMrdWriter(sink) as writer:
        writer.write_header(header_to_mrd(xml))
        writer.write_data(items)
    return len(items)
