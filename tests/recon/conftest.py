"""Shared fixtures of the reconstruction tests."""

import pytest

from mrsolve.data.ismrmrd_io import read_ismrmrd
from mrsolve.data.scan_space import ScanSpace, draw_params, simulate_scan, write_raw

MULTI_ECHO = ScanSpace(
    readout=(64, 64), coils=(6, 6), blades=(10, 10), gradient_echo=1.0, multi_echo=1.0
)


@pytest.fixture(scope="session")
def multi_echo_scan(tmp_path_factory):
    """A 32 px, three- or four-echo scan with a strong field map (independent simulator)."""
    seed = next(
        s
        for s in range(500)
        if len((p := draw_params(s, MULTI_ECHO)).echo_times_s) >= 3 and p.max_offres_hz > 150
    )
    sim = simulate_scan(draw_params(seed, MULTI_ECHO))
    raw = write_raw(tmp_path_factory.mktemp("echo") / "scan.h5", sim)
    return read_ismrmrd(raw), sim.truth
