"""Whole exams: several slices, echoes and averages in one file, and their stacked results.

- :func:`simulate_exam` simulates one phantom per slice, each echo time on the same
  phantom (the echoes become extra blades of the slice's Scan, ``Scan.echo``), and
  independent noise per average; :func:`simulate_exam_to_files` writes the raw ISMRMRD
  file and a ground truth with a leading "slice" axis.
- :func:`concat_echoes` joins single-echo scans of one slice into a multi-echo Scan.
- :func:`stack_results` stacks per-slice (or per-echo) Reconstructions on a new leading
  axis of the output format.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from mrsolve.data.files import atomic_output
from mrsolve.data.ismrmrd_io import write_exam
from mrsolve.data.results import (
    ARRAYS,
    LEADING_AXES,
    GroundTruth,
    Reconstruction,
    resolve_axes,
    write_truth,
)
from mrsolve.data.simulate import simulate
from mrsolve.propeller.scan import Scan


@dataclass
class ExamSimulation:
    """A simulated exam.

    Attributes:
        slices: per slice, its averages (each a Scan holding every echo).
        truth: ground truth with a leading "slice" axis ((S, ny, nx) maps and mask).
    """

    slices: list[list[Scan]]
    truth: GroundTruth


def concat_echoes(scans: Sequence[Scan]) -> Scan:
    """One Scan holding the blades of ``scans`` (echo i = scans[i], same geometry and phantom)."""
    if len(scans) == 0 or not all(isinstance(s, Scan) for s in scans):
        raise TypeError("scans must be a non-empty list of propeller.scan.Scan objects")
    if len({tuple(s.kspace.shape) for s in scans}) != 1:
        raise ValueError(
            f"echo scans must have one k-space shape, got {[tuple(s.kspace.shape) for s in scans]}"
        )
    first = scans[0]
    echo = torch.cat([torch.full((s.n_blades,), i, dtype=torch.int64) for i, s in enumerate(scans)])
    return replace(
        first,
        kspace=torch.cat([s.kspace for s in scans], dim=1),
        traj=torch.cat([s.traj for s in scans]),
        times=torch.cat([s.times for s in scans]),
        frame=torch.cat([s.frame for s in scans]),
        timestamps_s=torch.cat([s.timestamps_s for s in scans]),
        echo=echo,
        echo_te_s=tuple(s.te_s for s in scans),
    )


def simulate_exam(
    n_slices: int = 2,
    echo_times_s: Sequence[float] | None = None,
    n_averages: int = 1,
    seed: int = 0,
    **options,
) -> ExamSimulation:
    """Simulate ``n_slices`` slices (phantom seeds ``seed + slice``), each with every echo time
    of ``echo_times_s`` (None: the simulator's TE) and ``n_averages`` noise draws. Every
    slice carries the first slice's noise scan (an exam has one).

    ``options`` are :class:`~mrsolve.data.simulate.SimulationConfig` fields (not ``te_s``
    or ``seed``); several echoes need ``sequence="gradient_echo"`` for their TE to
    change the signal.
    """
    for name, value in (("n_slices", n_slices), ("n_averages", n_averages)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if "te_s" in options:
        raise TypeError("pass echo times as echo_times_s, not te_s")
    tes = [None] if echo_times_s is None else [float(t) for t in echo_times_s]
    if len(tes) == 0:
        raise ValueError("echo_times_s must hold at least one echo time, got an empty list")
    slices, truths = [], []
    for s in range(n_slices):
        base = simulate(seed=seed + s, te_s=tes[0], **options)
        averages = []
        for a in range(n_averages):
            echoes = [
                simulate(
                    phantom=base.phantom,
                    seed=seed + s + 7919 * (a * len(tes) + e),
                    te_s=te,
                    **options,
                ).scan
                if (a, e) != (0, 0)
                else base.scan
                for e, te in enumerate(tes)
            ]
            averages.append(concat_echoes(echoes) if len(tes) > 1 else echoes[0])
        if slices:  # one noise scan per exam, as a scanner records it (the file keeps one)
            averages = [replace(scan, noise=slices[0][0].noise) for scan in averages]
        slices.append(averages)
        truths.append(base.truth)
    return ExamSimulation(slices, _stack_truths(truths))


def _stack_truths(truths: list[GroundTruth]) -> GroundTruth:
    def stack(name):
        values = [getattr(t, name) for t in truths]
        return None if values[0] is None else torch.stack(values)

    return GroundTruth(
        image=stack("image"),
        water=stack("water"),
        fat=stack("fat"),
        fat_fraction=stack("fat_fraction"),
        field_map_hz=stack("field_map_hz"),
        mask=stack("mask"),
        coil_maps=None,
        noise_covariance=None,
        config={"slices": [t.config for t in truths]},
        axes=("slice", *resolve_axes(truths[0].axes, truths[0].image.ndim)),
    )


def simulate_exam_to_files(
    raw: str | os.PathLike, truth: str | os.PathLike, **options
) -> ExamSimulation:
    """Simulate an exam (see :func:`simulate_exam`); write the raw file and the truth (both or neither)."""
    sim = simulate_exam(**options)
    with atomic_output(raw) as tmp_raw, atomic_output(truth) as tmp_truth:
        write_exam(tmp_raw, sim.slices)
        write_truth(tmp_truth, sim.truth)
    return sim


def stack_results(
    recs: Sequence[Reconstruction], axis: str, indices: Sequence[int] | None = None
) -> Reconstruction:
    """Stack Reconstructions of one input on a new leading ``axis`` ("slice" or "echo").

    Every map present in the first must be present in all, with one shape; frequency
    bins must agree. ``indices`` (the file's slice numbers) are recorded for "slice".
    Run times add up; method, config, device and input hash are the first's.
    """
    if axis not in LEADING_AXES:
        raise ValueError(f"axis must be one of {list(LEADING_AXES)}, got {axis!r}")
    if len(recs) == 0:
        raise ValueError("recs must hold at least one Reconstruction, got none")
    first = recs[0]
    axes = resolve_axes(first.axes, first.image.ndim)
    lead = axes[:-2]
    if lead and LEADING_AXES.index(axis) >= LEADING_AXES.index(lead[0]):
        raise ValueError(f"cannot stack on {axis!r} before the existing axes {list(axes)}")
    maps = {}
    for name in ARRAYS:
        values = [getattr(r, name) for r in recs]
        if values[0] is None:
            continue
        values = [None if v is None else torch.as_tensor(v).cpu() for v in values]
        if name in ("field_map_hz", "field_map_std_hz") and axis != "slice":
            # only a "slice" axis may be kept by a field map that dropped the others
            values = [None if v is None else v.expand(first.image.shape) for v in values]
        if any(v is None or v.shape != values[0].shape for v in values):
            raise ValueError(f"every result must have {name} of shape {tuple(values[0].shape)}")
        maps[name] = torch.stack(values)
    if first.frequencies_hz is not None:
        freqs = [np.asarray(r.frequencies_hz, dtype=np.float64) for r in recs]
        if any(f.shape != freqs[0].shape or not np.allclose(f, freqs[0]) for f in freqs):
            raise ValueError("every result must use the same frequencies_hz to be stacked")
    slices = tuple(int(i) for i in indices) if indices is not None and axis == "slice" else ()
    affines = [r.affine_lps for r in recs]
    if axis == "slice" and first.affine_lps is not None:  # one affine per slice
        affines = None if any(a is None for a in affines) else np.stack(affines)
    else:
        affines = first.affine_lps
    return replace(
        first,
        **maps,
        affine_lps=affines,
        axes=(axis, *axes),
        slices=slices or first.slices,
        runtime_s=float(sum(r.runtime_s for r in recs)),
    )
