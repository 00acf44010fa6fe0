"""The ``recon`` command line: simulate, inspect, reconstruct and compare PROPELLER scans.

Every failure on bad input is one line on stderr and exit code 2; outputs are
written to a temporary name and renamed, so a failed command leaves no file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from mrsolve.recon import commands, interop_commands

app = typer.Typer(
    name="recon",
    help="Spectral-volume PROPELLER MRI reconstruction.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
console = Console()  # progress bars and results on stdout; errors alone on stderr

EXIT_BAD_INPUT = 2


@app.command()
def simulate(
    raw: Annotated[Path, typer.Argument(help="ISMRMRD file to write (raw k-space).")],
    truth: Annotated[Path, typer.Option("--truth", help="Ground-truth HDF5 file to write.")],
    size: Annotated[int, typer.Option(help="Image size N (N x N).")] = 128,
    blades: Annotated[int, typer.Option(help="Number of blades.")] = 16,
    lines: Annotated[int, typer.Option(help="Lines per blade.")] = 32,
    coils: Annotated[int, typer.Option(help="Receive coils.")] = 8,
    field_strength: Annotated[float, typer.Option(help="B0 in tesla.")] = 3.0,
    max_offres_hz: Annotated[float, typer.Option(help="Max |field map| in Hz.")] = 100.0,
    fat: Annotated[bool, typer.Option(help="Include fat.")] = True,
    motion: Annotated[
        float, typer.Option(help="Max rigid motion per blade: degrees and pixels.")
    ] = 0.0,
    frames: Annotated[int, typer.Option(help="Dynamic frames (1 = static).")] = 1,
    noise: Annotated[float, typer.Option(help="Noise std relative to the k-space RMS.")] = 0.01,
    sequence: Annotated[str, typer.Option(help="spin-echo or gradient-echo.")] = "spin-echo",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    n_slices: Annotated[int, typer.Option(help="Slices (one phantom each).")] = 1,
    echo_times_ms: Annotated[
        str | None, typer.Option(help="Echo times in ms, e.g. 1.15,2.3 (gradient echo).")
    ] = None,
    averages: Annotated[int, typer.Option(help="Averages (independent noise).")] = 1,
) -> None:
    """Simulate a phantom scan with the exact per-sample signal equation."""
    exam = {}
    if n_slices != 1 or echo_times_ms is not None or averages != 1:
        exam = {
            "n_slices": n_slices,
            "n_averages": averages,
            "echo_times_s": commands.parse_echo_times(echo_times_ms),
        }
    commands.simulate_to_files(
        raw,
        truth,
        **exam,
        size=size,
        n_blades=blades,
        n_lines=lines,
        n_coils=coils,
        field_strength_t=field_strength,
        max_offres_hz=max_offres_hz,
        fat=fat,
        max_rotation_deg=motion,
        max_shift_px=motion,
        n_frames=frames,
        noise=noise,
        sequence=sequence.replace("-", "_"),
        seed=seed,
    )
    console.print(f"wrote [bold]{raw}[/] and [bold]{truth}[/]")


@app.command()
def info(file: Annotated[Path, typer.Argument(help="Raw ISMRMRD or mrsolve output file.")]) -> None:
    """Summarize a raw ISMRMRD file, an output file or a ground-truth file."""
    console.print(commands.describe(file))


@app.command()
def run(
    raw: Annotated[Path, typer.Argument(help="ISMRMRD 1 (HDF5) or MRD 2 raw file.")],
    output: Annotated[Path, typer.Option("-o", "--output", help="Output HDF5 file.")],
    method: Annotated[str, typer.Option(help=f"One of {', '.join(commands.METHODS)}.")] = (
        commands.DEFAULT_METHOD
    ),
    preset: Annotated[
        str | None, typer.Option(help="spectral: static, fatwater or dynamic.")
    ] = None,
    iterations: Annotated[int | None, typer.Option(help="spectral: iteration budget.")] = None,
    seed: Annotated[int | None, typer.Option(help="spectral: random seed.")] = None,
    checkpoint: Annotated[
        Path | None, typer.Option(help="spectral: checkpoint file, saved as it runs.")
    ] = None,
    resume: Annotated[bool, typer.Option(help="spectral: continue from --checkpoint.")] = False,
    field_map: Annotated[
        Path | None, typer.Option(help="HDF5 with /field_map_hz (conjugate phase).")
    ] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    config: Annotated[Path | None, typer.Option(help="TOML file of method options.")] = None,
    slices: Annotated[
        str | None, typer.Option(help="Slices to reconstruct, e.g. 0,3-5 (default: all).")
    ] = None,
    export: Annotated[
        str | None, typer.Option(help="Also write nifti and/or dicom (e.g. nifti,dicom).")
    ] = None,
    anonymize: Annotated[bool, typer.Option(help="--export dicom: no patient fields.")] = False,
) -> None:
    """Reconstruct a raw file and write the output format (spectral volume by default)."""
    formats = interop_commands.parse_formats(export) if export is not None else []
    flags = {"preset": preset, "iterations": iterations, "seed": seed, "checkpoint": checkpoint}
    flags = {k: v for k, v in flags.items() if v is not None}
    if resume:
        flags["resume"] = True
    rec = commands.reconstruct_file(
        raw,
        output,
        method,
        field_map,
        device,
        config,
        console=console,
        flags=flags,
        slices=commands.parse_slices(slices),
    )
    console.print(f"wrote [bold]{output}[/] ({rec.method}, {rec.runtime_s:.1f} s on {rec.device})")
    if formats:
        folder = output.with_name(f"{output.stem}_export")
        files = interop_commands.export_reconstruction(rec, formats, folder, anonymize)
        console.print(f"exported {len(files)} file(s) to [bold]{folder}[/]")
    warning = commands.separation_warning(rec)
    if warning:
        typer.echo(f"warning: {warning}", err=True)


@app.command()
def compare(
    output: Annotated[Path, typer.Argument(help="Reconstruction output file.")],
    truth: Annotated[Path, typer.Argument(help="Ground-truth file.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score a reconstruction against the ground truth."""
    scores = commands.compare_files(output, truth)
    if as_json:
        typer.echo(json.dumps(scores, indent=2))
    else:
        console.print(commands.scores_table({output.name: scores}))


@app.command()
def batch(
    inputs: Annotated[list[Path], typer.Argument(help="ISMRMRD raw files.")],
    out_dir: Annotated[Path, typer.Option("-o", "--out-dir", help="Output folder.")],
    method: Annotated[str, typer.Option(help=f"One of {', '.join(commands.METHODS)}.")] = (
        commands.DEFAULT_METHOD
    ),
    executor: Annotated[str, typer.Option(help="local (process pool) or ray.")] = "local",
    address: Annotated[
        str | None, typer.Option(help="ray: cluster address (auto, ray://host:10001).")
    ] = None,
    workers: Annotated[
        int | None, typer.Option(help="Local processes, or CPUs of a Ray cluster started here.")
    ] = None,
    gpus_per_task: Annotated[float, typer.Option(help="ray: GPUs reserved per task.")] = 0.0,
    device: Annotated[
        str | None, typer.Option(help="cpu, cuda or auto (default: auto with GPUs, else cpu).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="TOML file of method options.")] = None,
    preset: Annotated[
        str | None, typer.Option(help="spectral: static, fatwater or dynamic.")
    ] = None,
    iterations: Annotated[int | None, typer.Option(help="spectral: iteration budget.")] = None,
) -> None:
    """Reconstruct many files, one task per slice; rerun to finish what is missing."""
    from mrsolve.recon.batch import run_batch

    flags = {k: v for k, v in {"preset": preset, "iterations": iterations}.items() if v is not None}
    options = commands.method_options(method, config, flags)
    report = run_batch(
        inputs,
        out_dir,
        method,
        options,
        executor=executor,
        workers=workers,
        address=address,
        gpus_per_task=gpus_per_task,
        device=device or ("auto" if gpus_per_task else "cpu"),
        console=console,
    )
    console.print(
        f"{report.count('done')} slice(s) reconstructed, {report.count('skipped')} already done, "
        f"{len(report.failed)} failed; manifest [bold]{report.manifest}[/]"
    )
    for record in report.failed:
        where = (
            record["input"] if record["slice"] is None else f"{record['input']}:{record['slice']}"
        )
        console.print(f"[red]failed[/] {where}: {record['error']}")
    if report.failed:
        raise typer.Exit(1)


@app.command()
def export(
    output: Annotated[Path, typer.Argument(help="mrsolve output file (recon run).")],
    format: Annotated[str, typer.Option("--format", help="nifti, dicom or nifti,dicom.")],
    folder: Annotated[Path, typer.Option("-o", "--out-dir", help="Folder to write into.")],
    anonymize: Annotated[bool, typer.Option(help="DICOM without patient fields.")] = False,
) -> None:
    """Export a reconstruction as NIfTI and/or DICOM, in scanner coordinates."""
    files = interop_commands.export_result_file(output, format, folder, anonymize)
    console.print(f"wrote {len(files)} file(s) to [bold]{folder}[/]")


@app.command()
def convert(
    source: Annotated[Path, typer.Argument(help="ISMRMRD 1 (HDF5) or MRD 2 raw file.")],
    target: Annotated[Path, typer.Argument(help="File to write, in the other format.")],
) -> None:
    """Convert raw data between ISMRMRD 1 (HDF5) and MRD 2 (either direction)."""
    kind = interop_commands.convert_file(source, target)
    console.print(f"wrote [bold]{target}[/] ({'MRD 2' if kind == 'mrd2' else 'ISMRMRD 1'})")


@app.command()
def stream(
    method: Annotated[str, typer.Option(help=f"One of {', '.join(commands.METHODS)}.")] = (
        commands.DEFAULT_METHOD
    ),
    preset: Annotated[
        str | None, typer.Option(help="spectral: static, fatwater or dynamic.")
    ] = None,
    iterations: Annotated[int | None, typer.Option(help="spectral: iteration budget.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    config: Annotated[Path | None, typer.Option(help="TOML file of method options.")] = None,
    complex_images: Annotated[
        bool, typer.Option("--complex", help="Complex image, water and fat (else magnitudes).")
    ] = False,
) -> None:
    """MRD 2 acquisitions on stdin -> MRD 2 images (image, water, fat, maps) on stdout."""
    flags = {k: v for k, v in {"preset": preset, "iterations": iterations}.items() if v is not None}
    options = commands.method_options(method, config, flags)
    interop_commands.stream(method, options, device, complex_images)


@app.command()
def view(file: Annotated[Path, typer.Argument(help="Raw ISMRMRD or mrsolve output file.")]) -> None:
    """Open a file in napari with the mrsolve widgets (needs the gui extra)."""
    try:
        import napari  # noqa: F401  (only to tell a missing extra from other errors)
    except ImportError:
        _fail("recon view needs the gui extra: pip install 'mrsolve[gui]'")
    from mrsolve.gui.launch import view as launch_view

    launch_view(file)


@app.command()
def demo(
    folder: Annotated[Path, typer.Argument(help="Folder for the files and the figure.")] = Path(
        "mrsolve-demo"
    ),
    size: Annotated[int, typer.Option(help="Image size N.")] = 128,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto.")] = "cpu",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Simulate a phantom, reconstruct it with every method, print scores, save a figure."""
    table, figure = commands.demo(folder, size=size, device=device, seed=seed, console=console)
    console.print(table)
    console.print(f"figure: [bold]{figure}[/]")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one line on stderr and exit 2 for any bad input."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = app(args=args or ["--help"], prog_name="recon", standalone_mode=False)
    except typer.Exit as done:
        code = done.exit_code
    except typer.Abort:
        sys.exit(130)
    except typer.TyperException as err:
        _fail(err.format_message())
    except (ValueError, TypeError, OSError, KeyError) as err:
        _fail(str(err) or type(err).__name__)
    sys.exit(code if isinstance(code, int) else 0)


def _fail(message: str) -> None:
    print(f"recon: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)
