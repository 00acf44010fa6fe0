"""The ``recon`` command line: simulate, inspect, reconstruct and compare PROPELLER scans.

Every failure on bad input is one line on stderr and exit code 2; outputs are
written to a temporary name and renamed, so a failed command leaves no file. Results
(tables, JSON, what was written) go to stdout; progress bars, warnings and failures to
stderr, so stdout can be piped. torch, sigpy, numba and scipy are imported only inside
the commands that compute, so ``recon --help`` starts in well under a second.
"""

from __future__ import annotations

import json
import re
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from typer.core import TyperArgument, TyperCommand, TyperGroup

#: the method registry's names (mrsolve.recon.methods.METHODS, which imports torch;
#: a test keeps the two equal)
METHOD_NAMES = ("spectral", "gridding", "pipe", "conjugate-phase")
DEFAULT_METHOD = "spectral"
EXIT_BAD_INPUT = 2


def _untyped_flags(params: list) -> list:
    """No ``<bool>`` beside flags (``--help``, ``--resume``: they take no value) and no
    ``<list[Path]>`` beside arguments (their upper-case name says what they are)."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
        elif isinstance(param, TyperArgument):
            param.display_type_rich = lambda ctx: None
    return params


class _Command(TyperCommand):
    """Usage lines as ``recon run [OPTIONS] RAW`` (typer writes ``{raw}``); untyped flags."""

    def collect_usage_pieces(self, ctx) -> list[str]:
        pieces = [self.options_metavar] if self.options_metavar else []
        for param in self.get_params(ctx):
            if isinstance(param, TyperArgument):
                name = (param.metavar or param.name).upper()
                name += "..." if param.nargs != 1 else ""
                pieces.append(name if param.required else f"[{name}]")
        return pieces

    def get_params(self, ctx) -> list:
        return _untyped_flags(super().get_params(ctx))


class _Group(TyperGroup):
    def get_params(self, ctx) -> list:
        return _untyped_flags(super().get_params(ctx))


app = typer.Typer(
    name="recon",
    help="Spectral-volume PROPELLER MRI reconstruction.",
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    cls=_Group,
)
console = Console(soft_wrap=True)  # results: stdout, lines never wrapped (scripts parse them)
diagnostics = Console(stderr=True)  # progress bars, warnings, failures: stderr

_METHOD_HELP = f"One of {', '.join(METHOD_NAMES)}."
_DEVICE_HELP = "cpu, cuda or auto (auto: CUDA where present)."
_PRESET_HELP = "spectral: static, fatwater or dynamic."
_ITER_HELP = "spectral: iteration budget of the last stage (static 100, fatwater 250 + 2 x 30 coarse, dynamic 100)."


@app.command(cls=_Command)
def simulate(
    raw: Annotated[
        Path, typer.Argument(help="ISMRMRD file to write (raw k-space).", metavar="RAW")
    ],
    truth: Annotated[
        Path, typer.Option("--truth", help="Ground-truth HDF5 file to write.", metavar="FILE")
    ],
    size: Annotated[int, typer.Option(help="Image size N (N x N).", metavar="N")] = 128,
    blades: Annotated[int, typer.Option(help="Number of blades.", metavar="N")] = 16,
    lines: Annotated[int, typer.Option(help="Lines per blade.", metavar="N")] = 32,
    coils: Annotated[int, typer.Option(help="Receive coils.", metavar="N")] = 8,
    field_strength: Annotated[float, typer.Option(help="B0 in tesla.", metavar="T")] = 3.0,
    max_offres_hz: Annotated[float, typer.Option(help="Max |field map| in Hz.", metavar="HZ")] = (
        100.0
    ),
    fat: Annotated[bool, typer.Option(help="Include fat.")] = True,
    rotation: Annotated[
        float, typer.Option(help="Max rigid rotation per blade, degrees.", metavar="DEG")
    ] = 0.0,
    shift: Annotated[
        float, typer.Option(help="Max rigid shift per blade, pixels.", metavar="PX")
    ] = 0.0,
    frames: Annotated[int, typer.Option(help="Dynamic frames (1 = static).", metavar="N")] = 1,
    noise: Annotated[
        float, typer.Option(help="Noise std relative to the k-space RMS.", metavar="X")
    ] = 0.01,
    sequence: Annotated[
        str, typer.Option(help="spin-echo or gradient-echo.", metavar="NAME")
    ] = "spin-echo",
    seed: Annotated[int, typer.Option(help="Random seed.", metavar="N")] = 0,
    n_slices: Annotated[int, typer.Option(help="Slices (one phantom each).", metavar="N")] = 1,
    echo_times_ms: Annotated[
        str | None,
        typer.Option(help="Echo times in ms, e.g. 1.15,2.3 (gradient echo).", metavar="MS,..."),
    ] = None,
    averages: Annotated[int, typer.Option(help="Averages (independent noise).", metavar="N")] = 1,
) -> None:
    """Simulate a phantom scan with the exact per-sample signal equation."""
    from mrsolve.recon import commands

    exam = {}
    if n_slices != 1 or echo_times_ms is not None or averages != 1:
        exam = {
            "n_slices": n_slices,
            "n_averages": averages,
            "echo_times_s": commands.parse_echo_times(echo_times_ms),
        }
    try:
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
            max_rotation_deg=rotation,
            max_shift_px=shift,
            n_frames=frames,
            noise=noise,
            sequence=commands.parse_sequence(sequence),
            seed=seed,
        )
    except (ValueError, TypeError) as err:  # the simulator names its own fields
        raise type(err)(_flag_names(str(err))) from None
    console.print(f"wrote [bold]{raw}[/] and [bold]{truth}[/]")


@app.command(cls=_Command)
def info(
    file: Annotated[
        Path, typer.Argument(help="Raw ISMRMRD, mrsolve output or truth file.", metavar="FILE")
    ],
) -> None:
    """Summarize a raw ISMRMRD file, an output file or a ground-truth file."""
    from mrsolve.recon.describe import describe_file

    console.print(describe_file(file))


@app.command(cls=_Command)
def run(
    raw: Annotated[Path, typer.Argument(help="ISMRMRD 1 (HDF5) or MRD 2 raw file.", metavar="RAW")],
    output: Annotated[
        Path, typer.Option("-o", "--output", help="Output HDF5 file.", metavar="FILE")
    ],
    method: Annotated[str, typer.Option(help=_METHOD_HELP, metavar="NAME")] = DEFAULT_METHOD,
    preset: Annotated[
        str | None, typer.Option(help=_PRESET_HELP, metavar="NAME", show_default="static")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help=_ITER_HELP, metavar="N", show_default="the preset's")
    ] = None,
    seed: Annotated[
        int | None, typer.Option(help="spectral: random seed.", metavar="N", show_default="0")
    ] = None,
    checkpoint: Annotated[
        Path | None,
        typer.Option(help="spectral: checkpoint file, saved as it runs.", metavar="FILE"),
    ] = None,
    resume: Annotated[bool, typer.Option(help="spectral: continue from --checkpoint.")] = False,
    field_map: Annotated[
        Path | None,
        typer.Option(help="HDF5 with /field_map_hz (conjugate-phase only).", metavar="FILE"),
    ] = None,
    device: Annotated[str, typer.Option(help=_DEVICE_HELP, metavar="NAME")] = "cpu",
    config: Annotated[
        Path | None, typer.Option(help="TOML file of method options.", metavar="FILE")
    ] = None,
    slices: Annotated[
        str | None,
        typer.Option(help="Slices to reconstruct, e.g. 0,3-5.", metavar="LIST", show_default="all"),
    ] = None,
    export: Annotated[
        str | None,
        typer.Option(help="Also write nifti and/or dicom (e.g. nifti,dicom).", metavar="LIST"),
    ] = None,
    anonymize: Annotated[bool, typer.Option(help="--export dicom: no patient fields.")] = False,
) -> None:
    """Reconstruct a raw file and write the output format (spectral volume by default)."""
    from mrsolve.recon import commands, interop_commands

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
        console=diagnostics,
        flags=flags,
        slices=commands.parse_slices(slices),
        warn=_warn,
    )
    console.print(f"wrote [bold]{output}[/] ({rec.method}, {rec.runtime_s:.1f} s on {rec.device})")
    if formats:
        folder = output.with_name(f"{output.stem}_export")
        files = interop_commands.export_reconstruction(rec, formats, folder, anonymize)
        console.print(f"exported {len(files)} file(s) to [bold]{folder}[/]")
    warning = commands.separation_warning(rec)
    if warning:
        _warn(warning)


@app.command(cls=_Command)
def compare(
    output: Annotated[Path, typer.Argument(help="Reconstruction output file.", metavar="OUTPUT")],
    truth: Annotated[Path, typer.Argument(help="Ground-truth file.", metavar="TRUTH")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Score a reconstruction against the ground truth."""
    from mrsolve.recon import commands

    scores = commands.compare_files(output, truth)
    if as_json:
        typer.echo(json.dumps(scores, indent=2))
    else:
        commands.print_table(console, commands.scores_table({output.name: scores}))


@app.command(cls=_Command)
def batch(
    inputs: Annotated[list[Path], typer.Argument(help="ISMRMRD raw files.", metavar="RAW")],
    out_dir: Annotated[Path, typer.Option("-o", "--out-dir", help="Output folder.", metavar="DIR")],
    method: Annotated[str, typer.Option(help=_METHOD_HELP, metavar="NAME")] = DEFAULT_METHOD,
    executor: Annotated[
        str, typer.Option(help="local (process pool) or ray.", metavar="NAME")
    ] = "local",
    address: Annotated[
        str | None,
        typer.Option(help="ray: cluster address (auto, ray://host:10001).", metavar="URL"),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            help="Local processes, or CPUs of a Ray cluster started here.",
            metavar="N",
            show_default="CPU count",
        ),
    ] = None,
    gpus_per_task: Annotated[
        float, typer.Option(help="ray: GPUs reserved per task.", metavar="X")
    ] = 0.0,
    device: Annotated[
        str | None,
        typer.Option(
            help=_DEVICE_HELP, metavar="NAME", show_default="cpu; auto with --gpus-per-task"
        ),
    ] = None,
    config: Annotated[
        Path | None, typer.Option(help="TOML file of method options.", metavar="FILE")
    ] = None,
    preset: Annotated[
        str | None, typer.Option(help=_PRESET_HELP, metavar="NAME", show_default="static")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help=_ITER_HELP, metavar="N", show_default="the preset's")
    ] = None,
) -> None:
    """Reconstruct many files, one task per slice; rerun to finish what is missing."""
    from mrsolve.recon import commands
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
        console=diagnostics,
    )
    console.print(
        f"{report.count('done')} slice(s) reconstructed, {report.count('skipped')} already done, "
        f"{len(report.failed)} failed; manifest [bold]{report.manifest}[/]"
    )
    for record in report.failed:
        where = (
            record["input"] if record["slice"] is None else f"{record['input']}:{record['slice']}"
        )
        diagnostics.print(f"[red]failed[/] {where}: {record['error']}", soft_wrap=True)
    if report.interrupted:
        raise KeyboardInterrupt
    if report.failed:
        raise typer.Exit(1)


@app.command(cls=_Command)
def export(
    output: Annotated[
        Path, typer.Argument(help="mrsolve output file (recon run).", metavar="OUTPUT")
    ],
    format: Annotated[
        str, typer.Option("--format", help="nifti, dicom or nifti,dicom.", metavar="LIST")
    ],
    folder: Annotated[
        Path, typer.Option("-o", "--out-dir", help="Folder to write into.", metavar="DIR")
    ],
    anonymize: Annotated[bool, typer.Option(help="DICOM without patient fields.")] = False,
) -> None:
    """Export a reconstruction as NIfTI and/or DICOM, in scanner coordinates."""
    from mrsolve.recon import interop_commands

    files = interop_commands.export_result_file(output, format, folder, anonymize)
    console.print(f"wrote {len(files)} file(s) to [bold]{folder}[/]")


@app.command(cls=_Command)
def convert(
    source: Annotated[
        Path, typer.Argument(help="ISMRMRD 1 (HDF5) or MRD 2 raw file.", metavar="SOURCE")
    ],
    target: Annotated[
        Path, typer.Argument(help="File to write, in the other format.", metavar="TARGET")
    ],
) -> None:
    """Convert raw data between ISMRMRD 1 (HDF5) and MRD 2 (either direction)."""
    from mrsolve.recon import interop_commands

    kind = interop_commands.convert_file(source, target)
    console.print(f"wrote [bold]{target}[/] ({'MRD 2' if kind == 'mrd2' else 'ISMRMRD 1'})")


@app.command(cls=_Command)
def stream(
    method: Annotated[str, typer.Option(help=_METHOD_HELP, metavar="NAME")] = DEFAULT_METHOD,
    preset: Annotated[
        str | None, typer.Option(help=_PRESET_HELP, metavar="NAME", show_default="static")
    ] = None,
    iterations: Annotated[
        int | None, typer.Option(help=_ITER_HELP, metavar="N", show_default="the preset's")
    ] = None,
    device: Annotated[str, typer.Option(help=_DEVICE_HELP, metavar="NAME")] = "cpu",
    config: Annotated[
        Path | None, typer.Option(help="TOML file of method options.", metavar="FILE")
    ] = None,
    complex_images: Annotated[
        bool, typer.Option("--complex", help="Complex image, water and fat (else magnitudes).")
    ] = False,
) -> None:
    """MRD 2 acquisitions on stdin -> MRD 2 images (image, water, fat, maps) on stdout."""
    from mrsolve.recon import commands, interop_commands

    flags = {k: v for k, v in {"preset": preset, "iterations": iterations}.items() if v is not None}
    options = commands.method_options(method, config, flags)
    interop_commands.stream(method, options, device, complex_images)


@app.command(cls=_Command)
def view(
    file: Annotated[
        Path, typer.Argument(help="Raw ISMRMRD or mrsolve output file.", metavar="FILE")
    ],
) -> None:
    """Open a file in napari with the mrsolve widgets (needs the gui extra)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # napari's use of old pydantic
        try:
            import napari  # noqa: F401  (only to tell a missing extra from other errors)
        except ImportError:
            _fail("recon view needs the gui extra: pip install 'mrsolve[gui]'")
    from mrsolve.gui.launch import view as launch_view

    launch_view(file)


@app.command(cls=_Command)
def demo(
    folder: Annotated[
        Path, typer.Argument(help="Folder for the files and the figure.", metavar="FOLDER")
    ] = Path("mrsolve-demo"),
    size: Annotated[int, typer.Option(help="Image size N.", metavar="N")] = 128,
    device: Annotated[str, typer.Option(help=_DEVICE_HELP, metavar="NAME")] = "cpu",
    seed: Annotated[int, typer.Option(help="Random seed.", metavar="N")] = 0,
) -> None:
    """Simulate a phantom, reconstruct it with every method, print scores, save a figure."""
    from mrsolve.recon import commands

    table, figure = commands.demo(folder, size=size, device=device, seed=seed, console=diagnostics)
    commands.print_table(console, table)
    console.print(f"figure: [bold]{figure}[/]")


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: one line on stderr and exit 2 for any bad input."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        code = app(args=args or ["--help"], prog_name="recon", standalone_mode=False)
    except typer.Exit as done:
        code = done.exit_code
    except (typer.Abort, KeyboardInterrupt):
        print("recon: interrupted", file=sys.stderr)
        sys.exit(130)
    except typer.TyperException as err:
        _fail(err.format_message())
    except (ValueError, TypeError, OSError, KeyError) as err:
        _fail(str(err) or type(err).__name__)
    sys.exit(code if isinstance(code, int) else 0)


#: SimulationConfig's field names as the ``simulate`` command spells them
_SIMULATE_FLAGS = {
    "matrix_size": "--size",
    "size": "--size",
    "n_blades": "--blades",
    "n_lines": "--lines",
    "n_coils": "--coils",
    "n_frames": "--frames",
    "n_slices": "--n-slices",
    "n_averages": "--averages",
    "echo_times_s": "--echo-times-ms",
    "field_strength_t": "--field-strength",
    "max_offres_hz": "--max-offres-hz",
    "max_rotation_deg": "--rotation",
    "max_shift_px": "--shift",
    "noise": "--noise",
}


def _flag_names(message: str) -> str:
    """``message`` with the simulator's internal names replaced by the command line's."""
    pattern = r"(?<![\w/.-])(" + "|".join(sorted(_SIMULATE_FLAGS, key=len, reverse=True)) + r")\b"
    return re.sub(pattern, lambda m: _SIMULATE_FLAGS[m.group(1)], message)


def _warn(message: str) -> None:
    print(f"recon: warning: {' '.join(message.split())}", file=sys.stderr)


def _fail(message: str) -> None:
    print(f"recon: error: {' '.join(message.split())}", file=sys.stderr)
    sys.exit(EXIT_BAD_INPUT)


if __name__ == "__main__":
    main()
