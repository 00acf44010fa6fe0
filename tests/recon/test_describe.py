"""``recon info`` (describe_file): slices, echoes, averages of raw files; axes of outputs."""

import io

import torch
from rich.console import Console

from mrsolve.data.exam import simulate_exam
from mrsolve.data.ismrmrd_io import write_exam
from mrsolve.data.results import Reconstruction, write_result
from mrsolve.recon.describe import describe_file

TINY = {"size": 16, "n_blades": 4, "n_lines": 4, "n_coils": 2, "noise": 0.01}


def _rows(path) -> dict[str, str]:
    console = Console(file=io.StringIO(), width=200)
    table = describe_file(path)
    console.print(table)
    fields, values = (list(col.cells) for col in table.columns)
    return dict(zip(fields, values, strict=True))


def test_raw_exam_lists_slices_echoes_and_averages(tmp_path):
    tes = (1.15e-3, 2.3e-3)
    sim = simulate_exam(
        n_slices=2, echo_times_s=tes, n_averages=3, seed=1, sequence="gradient_echo", **TINY
    )
    # slice indices 0 and 1 as written; every slice has its 3 averages
    write_exam(tmp_path / "exam.h5", sim.slices)
    rows = _rows(tmp_path / "exam.h5")
    assert rows["slices"] == "2: 0, 1"
    assert rows["echoes: TE (ms)"] == "2: 1.15, 2.3"
    assert rows["averages"] == "3"
    assert rows["coils"] == "2"


def test_single_slice_raw_and_output_axes(tmp_path):
    sim = simulate_exam(n_slices=1, seed=2, **TINY)
    write_exam(tmp_path / "one.h5", [sim.slices[0][0]])
    rows = _rows(tmp_path / "one.h5")
    assert rows["slices"] == "1: 0" and rows["averages"] == "1"
    assert rows["echoes: TE (ms)"].startswith("1: ")
    image = torch.zeros(2, 3, 8, 8, dtype=torch.complex64)
    rec = Reconstruction(image, method="gridding", axes=("slice", "echo", "y", "x"), slices=(4, 7))
    write_result(tmp_path / "out.h5", rec)
    rows = _rows(tmp_path / "out.h5")
    assert rows["axes"] == "slice, echo, y, x"
    assert rows["slices"] == "4, 7"
    assert rows["/image"].startswith("(2, 3, 8, 8)")
