"""Stage 2: the parametric water / fat / field-map head (non-convex).

Coarse to fine: the field map starts at zero on a grid ``downsample * 2^(levels - 1)``
times coarser than the image, water and fat at their least-squares fit for psi = 0 (CG,
more steps on larger images); on each coarse level L-BFGS fits water, fat and the field
map jointly for ``level_iterations`` steps, and the three are carried to a field-map grid
twice as fine. The last level (grid ``downsample``) runs the configured optimizer with
the held-out stopping rule and checkpoints. Each L-BFGS run sees its parameters in units
of their Gauss-Newton curvature (:func:`precondition`). Nothing is chosen with the truth. What made
the fit work, and the figures, are in docs/spectral_design.md.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace

import torch

from mrsolve.propeller.fat import FatSpectrum
from mrsolve.recon.spectral.field_start import EchoStartConfig
from mrsolve.recon.spectral.fields import WaterFatField
from mrsolve.recon.spectral.problem import SpectralProblem
from mrsolve.recon.spectral.regularizers import smooth_tv, smoothness
from mrsolve.recon.spectral.runner import Callback, Checkpointer, StoppingConfig, run, shifted
from mrsolve.recon.spectral.steppers import LBFGS, Adam
from mrsolve.recon.spectral.uncertainty import parameter_curvature, water_fat_std
from mrsolve.solvers.alg import cg


@dataclass
class StdCalibration:
    """The calibrated std is sqrt((factor * s)^2 + floor^2), s the noise-only std of
    :func:`~mrsolve.recon.spectral.uncertainty.water_fat_std`: the floor stands for the
    errors s leaves out (coupling through the point-spread function, regularizer bias,
    the field-map / fat ambiguity). Chosen on the development set so that RMS(error / std)
    is ~1 and |error| <= 1.96 std in ~95 % of the pixels
    (benchmarks/water_fat_calibration.py, docs/uncertainty_design.md)."""

    fat_fraction_factor: float = 1.0
    fat_fraction_floor: float = 0.0
    field_map_factor: float = 1.0
    field_map_floor_hz: float = 0.0


@dataclass
class WaterFatConfig:
    """Parametric water / fat / field-map stage.

    ``iterations`` is the budget of the last (finest) level, which the held-out rule may
    end earlier; each of the ``levels - 1`` coarser field-map grids gets
    ``level_iterations`` L-BFGS steps first. ``parametrization``: see
    :class:`~mrsolve.recon.spectral.fields.WaterFatField` ("densities" is the plain form).

    The held-out rule waits at least ``min_patience`` checks here (more if the stopping
    section says so): while the fit moves the field map along its near-null direction the
    held-out loss improves slowly for many steps. The initial least-squares water / fat
    needs more CG steps on larger images (docs/spectral_design.md).
    """

    enabled: bool = False
    optimizer: str = "lbfgs"  # a key of OPTIMIZERS
    iterations: int = 250
    lr: float = 0.05
    init_cg_iterations: int | None = None  # None: 20 per 32 px of image width
    tv: float = 0.003
    tv_noise: float = 1.0  # tv grows with the measured noise as the free stage's does
    psi_smooth: float = 1e-7
    downsample: int = 4
    max_abs_hz: float = 200.0
    levels: int = 3
    level_iterations: int = 30
    parametrization: str = "common_phase"  # WaterFatField's "common_phase", "moment" or "densities"
    share_penalty: float = 1.0  # weight keeping "common_phase"'s fat share in [0, 1]
    # write per-pixel stds (uncertainty.water_fat_std), calibrated separately for scans
    # whose echoes separate fat (min_echo_cycles) and for the others (StdCalibration)
    std_maps: bool = True
    std_echo_resolved: StdCalibration = field(
        default_factory=lambda: StdCalibration(12.6, 0.0363, 79.4, 0.917)
    )
    std_otherwise: StdCalibration = field(
        default_factory=lambda: StdCalibration(251.0, 0.0, 63.1, 46.0)
    )
    # fat is reported resolvable from field when the echoes' k-space centres spread the fat
    # phase by min_echo_cycles, or one readout moves fat by min_readout_shift_px; chosen on
    # the development set (docs/spectral_design.md), see propeller.fat.fat_separation
    min_echo_cycles: float = 0.25
    min_readout_shift_px: float = 2.5
    min_patience: int = 6  # held-out checks without improvement, at least
    # L-BFGS on parameters in units of their Gauss-Newton curvature (a diagonal
    # preconditioner, set at each level's start); curvatures below this share of their
    # median are raised to it (no signal: the regularizers set the scale)
    precondition: bool = True
    curvature_floor: float = 1.0
    history_size: int = 50  # L-BFGS curvature pairs
    # where the echoes separate fat, the field map starts from their images, not zero
    echo_start: EchoStartConfig = field(default_factory=EchoStartConfig)

    @property
    def total_iterations(self) -> int:
        """Steps reported to the progress callback: the coarse levels' and the last's."""
        return (self.levels - 1) * self.level_iterations + self.iterations


def initial_water_fat(problem: SpectralProblem, field_: WaterFatField, n_iter: int) -> None:
    """Set water and fat to the least-squares fit at the field's current field map
    (``n_iter`` CG steps from zero)."""
    with torch.no_grad():
        a, c = field_.coefficients(field_.field_map())  # (L, ny, nx) each
    frame = problem.frames[0]

    def normal(v):  # v (2, ny, nx) = (water, fat) -> gradient of the quadratic
        nz = frame.normal(a * v[0] + c * v[1])
        return torch.stack([(a.conj() * nz).sum(0), (c.conj() * nz).sum(0)])

    rhs = torch.stack([(a.conj() * frame.b).sum(0), (c.conj() * frame.b).sum(0)])
    v, _ = cg(normal, rhs, max_iter=n_iter, tol=1e-6)
    with torch.no_grad():
        field_.set_densities(v[0], v[1])


def precondition(field_: WaterFatField, problem: SpectralProblem, floor: float) -> None:
    """Set the field's parameter units to 1 / sqrt(curvature)
    (:func:`~mrsolve.recon.spectral.uncertainty.parameter_curvature`), each curvature
    raised to at least ``floor`` times its group's median over positive entries."""
    units = []
    for curv in parameter_curvature(field_, problem):
        positive = curv[curv > 0]
        ref = positive.median() if positive.numel() else curv.new_ones(())
        units.append(curv.clamp_min(floor * ref).rsqrt().float())
    field_.set_units(*units)


def _cg_steps(wf: WaterFatConfig, image_shape: tuple[int, int]) -> int:
    if wf.init_cg_iterations is not None:
        return wf.init_cg_iterations
    return max(1, round(20 * max(image_shape) / 32))


def _objective(problem: SpectralProblem, field_: WaterFatField, wf: WaterFatConfig):
    def loss_fn():
        data = problem.data_loss(field_())
        water, fat = field_.densities()
        reg = wf.tv * (smooth_tv(water) + smooth_tv(fat))
        reg = reg + wf.psi_smooth * smoothness(field_.field_map())
        reg = reg + wf.share_penalty * field_.share_penalty()
        return data + reg, data

    return loss_fn


def _field(
    problem: SpectralProblem,
    spectrum: FatSpectrum,
    wf: WaterFatConfig,
    downsample: int,
    start: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
) -> WaterFatField:
    water, fat, field_map = start
    field_ = WaterFatField(
        problem.basis,
        spectrum,
        water,
        fat,
        field_map,
        downsample=downsample,
        max_abs_hz=wf.max_abs_hz,
        parametrization=wf.parametrization,
    )
    return field_.to(problem.device)


def _maps(field_: WaterFatField) -> torch.Tensor:
    """(3, ny, nx) complex: water, fat and the field map (Hz, as the real part)."""
    with torch.no_grad():
        return torch.stack([*field_.densities(), field_.field_map().to(torch.complex64)])


#: the last level's optimizer by name: ``make(field, loss, wf) -> stepper``
OPTIMIZERS: dict[str, Callable] = {
    "lbfgs": lambda field_, loss, wf: LBFGS(field_, loss, wf.history_size),
    "adam": lambda field_, loss, wf: Adam(field_, loss, wf.lr, wf.iterations),
}


def coarse_levels(
    problem: SpectralProblem,
    spectrum: FatSpectrum,
    wf: WaterFatConfig,
    callback: Callback = None,
    checkpointer: Checkpointer | None = None,
    checkpoint_every: int = 10,
    start_field_map: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Water, fat (scaled units) and field map (Hz) after the coarse levels, (ny, nx) each;
    ``callback(step, wf.total_iterations, loss=...)`` after each coarse L-BFGS step; each
    level's state is checkpointed every ``checkpoint_every`` steps (and resumed from).

    Level l = levels - 1, ..., 1 fits the field map on a grid ``downsample * 2^l`` times
    coarser than the image (module doc), from ``start_field_map`` (Hz, (ny, nx); None:
    zero) and the least-squares water / fat there; with one level: those.
    """
    zeros = torch.zeros(problem.image_shape, dtype=torch.complex64, device=problem.device)
    psi = zeros.real if start_field_map is None else start_field_map.to(zeros.real)
    maps = (zeros, zeros, psi)
    done = 0
    for level in range(wf.levels - 1, -1, -1):
        field_ = _field(problem, spectrum, wf, wf.downsample * 2**level, maps)
        if level == wf.levels - 1:
            initial_water_fat(problem, field_, _cg_steps(wf, problem.image_shape))
        if level > 0:
            if wf.precondition:
                precondition(field_, problem, wf.curvature_floor)
            stepper = LBFGS(field_, _objective(problem, field_, wf), wf.history_size)
            progress = shifted(callback, done, wf.total_iterations)
            run(
                stepper,
                wf.level_iterations,
                residual=problem.relative_residual,
                callback=progress,
                checkpointer=checkpointer,
                name=f"waterfat_level{level}",
                checkpoint_every=checkpoint_every,
            )
            done += wf.level_iterations
        with torch.no_grad():
            psi = field_.field_map()
            maps = (*field_.densities(psi), psi)
    return maps


def run_water_fat(
    problem: SpectralProblem,
    spectrum: FatSpectrum,
    wf: WaterFatConfig,
    stopping: StoppingConfig,
    *,
    callback: Callback = None,
    checkpointer: Checkpointer | None = None,
    noise_var: float | None = None,
    echo_resolved: bool = False,
    start_field_map: torch.Tensor | None = None,
) -> tuple[dict, dict]:
    """Stage 2: {"water", "fat", "field_map_hz"} (unscaled), with ``wf.std_maps`` also
    "fat_fraction_std" and "field_map_std_hz"
    (:func:`~mrsolve.recon.spectral.uncertainty.water_fat_std`), and a report.

    ``noise_var``: noise variance per complex k-space sample in the problem's scaled
    units (None: measured on the held-out lines at the fit; no stds without them).
    ``echo_resolved``: whether the echoes separate fat from the field map (their k-space
    centres spread the fat phase by ``wf.min_echo_cycles``, ``propeller.fat.fat_separation``);
    picks the stds' calibration (the development set had no single-echo scan whose readout
    alone resolves fat, and such a scan's field map errs far beyond the multi-echo
    calibration: docs/uncertainty_design.md).
    ``start_field_map``: where the coarse levels start the field map (Hz, (ny, nx); None:
    zero), e.g. :func:`~mrsolve.recon.spectral.field_start.echo_field_map`.
    """
    if not isinstance(wf.levels, int) or wf.levels < 1:
        raise ValueError(f"waterfat levels must be a positive integer, got {wf.levels!r}")
    if not isinstance(wf.min_patience, int) or wf.min_patience < 1:
        raise ValueError(
            f"waterfat min_patience must be a positive integer, got {wf.min_patience!r}"
        )
    stopping = replace(stopping, patience=max(stopping.patience, wf.min_patience))
    saved = checkpointer.state("waterfat_start") if checkpointer is not None else None
    if checkpointer is not None and checkpointer.state("waterfat") is not None:
        # resuming: the last level's state (module included) comes from the checkpoint
        zeros = torch.zeros(problem.image_shape, dtype=torch.complex64, device=problem.device)
        start = (zeros, zeros, zeros.real)
    elif saved is not None:  # resuming after the coarse levels
        start = tuple(v.to(problem.device) for v in saved)
    else:
        start = coarse_levels(
            problem,
            spectrum,
            wf,
            callback,
            checkpointer,
            checkpoint_every=stopping.check_every,
            start_field_map=start_field_map,
        )
        if checkpointer is not None:
            checkpointer.save("waterfat_start", [v.cpu() for v in start])
    coarse = wf.total_iterations - wf.iterations
    field_ = _field(problem, spectrum, wf, wf.downsample, start)
    if wf.precondition:
        precondition(field_, problem, wf.curvature_floor)
    stepper = OPTIMIZERS[wf.optimizer](field_, _objective(problem, field_, wf), wf)

    def heldout():
        with torch.no_grad():
            return problem.heldout_loss(field_())

    result = run(
        stepper,
        wf.iterations,
        lambda: _maps(field_),
        heldout=heldout,
        stopping=stopping,
        residual=problem.relative_residual,
        callback=shifted(callback, coarse, wf.total_iterations),
        checkpointer=checkpointer,
        name="waterfat",
    )
    best = result.best
    out = {"water": best[0] / problem.scale, "fat": best[1] / problem.scale}
    out["field_map_hz"] = best[2].real
    report = result.report()
    if wf.std_maps:
        fitted = _field(problem, spectrum, wf, wf.downsample, (best[0], best[1], best[2].real))
        if noise_var is None:
            with torch.no_grad():
                noise_var = problem.heldout_noise_var(fitted())
        if math.isfinite(noise_var) and noise_var > 0:
            calibration = wf.std_echo_resolved if echo_resolved else wf.std_otherwise
            stds = water_fat_std(fitted, problem, noise_var, **asdict(calibration))
            out["fat_fraction_std"], out["field_map_std_hz"] = stds
            report["noise_var"] = noise_var
    return out, report
