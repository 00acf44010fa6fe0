"""Damaged copies of ISMRMRD files: the bad inputs the CLI's tests and
``benchmarks/reliability.py`` feed to ``recon`` (each edit maps an acquisition to its
damaged form, or to None to drop it)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import ismrmrd
import numpy as np

Edit = Callable[[ismrmrd.Acquisition], ismrmrd.Acquisition | None]


def rewrite(src: str | os.PathLike, dst: str | os.PathLike, edit: Edit) -> Path:
    """Copy the ISMRMRD file ``src`` to ``dst`` acquisition by acquisition through ``edit``."""
    with (
        ismrmrd.Dataset(str(src), "dataset", create_if_needed=False) as a,
        ismrmrd.Dataset(str(dst), "dataset", create_if_needed=True) as b,
    ):
        b.write_xml_header(a.read_xml_header())
        for i in range(a.number_of_acquisitions()):
            acq = edit(a.read_acquisition(i))
            if acq is not None:
                b.append_acquisition(acq)
    return Path(dst)


def _replaced(acq: ismrmrd.Acquisition, data: np.ndarray, traj: np.ndarray):
    """``acq`` with other samples (C, M) and trajectory (M, D), its timing and indices kept."""
    new = ismrmrd.Acquisition.from_array(data, np.ascontiguousarray(traj))
    for name in ("sample_time_us", "center_sample", "flags", "acquisition_time_stamp"):
        setattr(new, name, getattr(acq, name))
    new.idx.set, new.idx.kspace_encode_step_1 = acq.idx.set, acq.idx.kspace_encode_step_1
    return new


def nan_sample(acq: ismrmrd.Acquisition) -> ismrmrd.Acquisition:
    """A NaN in the first sample of every imaging line of blade 1."""
    if acq.idx.set == 1 and not acq.is_flag_set(ismrmrd.ACQ_IS_NOISE_MEASUREMENT):
        acq.data[0, 0] = np.nan
    return acq


def drop_blade(acq: ismrmrd.Acquisition) -> ismrmrd.Acquisition | None:
    """Blade 2 left out."""
    return None if acq.idx.set == 2 else acq


def zero_length(acq: ismrmrd.Acquisition) -> ismrmrd.Acquisition:
    """No samples at all."""
    return _replaced(
        acq,
        np.zeros((acq.active_channels, 0), np.complex64),
        np.zeros((0, acq.trajectory_dimensions), np.float32),
    )


def one_dim_trajectory(acq: ismrmrd.Acquisition) -> ismrmrd.Acquisition:
    """Only kx kept in the trajectory (lines without one are left alone)."""
    if not acq.traj.size:
        return acq
    return _replaced(acq, acq.data, acq.traj[:, :1])
