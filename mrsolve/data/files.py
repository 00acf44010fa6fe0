"""File helpers shared by the readers and writers: atomic output, HDF5 checks, hashing."""

from __future__ import annotations

import hashlib
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import h5py


@contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success.

    On any error the temporary file is removed and ``path`` is left untouched.
    """
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise ValueError(f"output folder {str(folder)!r} does not exist (for {str(target)!r})")
    if target.is_dir():
        raise ValueError(f"output path {str(target)!r} is a folder, expected a file name")
    if not os.access(folder, os.W_OK):
        raise ValueError(f"output folder {str(folder)!r} is not writable")
    tmp = folder / f".{target.name}.{uuid.uuid4().hex}.tmp"
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def existing_file(path: str | os.PathLike, expected: str) -> Path:
    """Return ``path`` as a Path; ValueError for a folder (naming what was ``expected``),
    FileNotFoundError if nothing is there."""
    p = Path(path)
    if p.is_dir():
        raise ValueError(f"{str(p)!r} is a folder, expected {expected}")
    if not p.is_file():
        raise FileNotFoundError(f"file {str(p)!r} does not exist")
    return p


def check_hdf5(path: str | os.PathLike) -> Path:
    """Return ``path`` as a Path; FileNotFoundError if missing, ValueError for a folder,
    a file that is not HDF5, or one h5py cannot open (truncated, damaged)."""
    p = existing_file(path, "an HDF5 file")
    if not h5py.is_hdf5(p):
        raise ValueError(f"file {str(p)!r} is not an HDF5 file")
    try:
        h5py.File(p, "r").close()
    except OSError as err:  # h5py's text names no file
        reason = str(err).split("(", 1)[-1].rstrip(")") if "(" in str(err) else str(err)
        raise ValueError(f"file {str(p)!r} is a damaged HDF5 file ({reason})") from None
    return p


def sha256_file(path: str | os.PathLike, block: int = 1 << 20) -> str:
    """Hex SHA-256 digest of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(block):
            digest.update(chunk)
    return digest.hexdigest()
