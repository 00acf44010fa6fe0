"""Method options from a TOML file: one table per method, keys are keyword arguments.

Example ``recon.toml``::

    [gridding]
    dcf = "pipe-menon"

    [conjugate-phase]
    n_segments = 12
"""

from __future__ import annotations

import tomllib
from pathlib import Path


def load_method_options(path: Path, method: str) -> dict:
    """The options table for ``method`` in the TOML file at ``path`` (empty if absent)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        document = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    options = document.get(method, {})
    if not isinstance(options, dict):
        raise ValueError(
            f"config file {str(path)!r}: [{method}] must be a table of options, got {options!r}"
        )
    return options
