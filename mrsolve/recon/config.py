"""Method options from a TOML file: one table per method, keys are keyword arguments.

Example ``recon.toml``::

    [gridding]
    dcf = "pipe-menon"

    [conjugate-phase]
    n_segments = 12
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Collection
from pathlib import Path


def load_method_options(path: Path, method: str, known: Collection[str] = ()) -> dict:
    """The options table for ``method`` in the TOML file at ``path`` (empty if absent).

    With ``known`` (the method names), a table that names none of them is a ValueError
    (with the nearest name): a misspelt table would otherwise be silently ignored.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {str(path)!r} does not exist")
    try:
        document = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"config file {str(path)!r} is not valid TOML: {err}") from err
    for table in document:
        if known and table not in known:
            near = difflib.get_close_matches(table.replace("_", "-"), list(known), n=1)
            hint = f" (did you mean [{near[0]}]?)" if near else ""
            raise ValueError(
                f"config file {str(path)!r}: table [{table}] names no method{hint}; "
                f"tables are method names: {', '.join(known)}"
            )
    options = document.get(method, {})
    if not isinstance(options, dict):
        raise ValueError(
            f"config file {str(path)!r}: [{method}] must be a table of options, got {options!r}"
        )
    return options
