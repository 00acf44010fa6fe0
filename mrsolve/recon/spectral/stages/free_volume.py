"""Stage 1: the free spectral volume x(r, f) (or x(t, r, f) for dynamic scans).

On the dense grid: FISTA with spatial TV per bin, optional TV / l1 along f and TV along
t (convex). On a learned encoding (planes, hash grid): Adam on the data term plus smooth
TV (and time smoothness), started from ``warm_start`` dense FISTA iterations through the
encoding's ``init_from_volume``; from a random start the product of planes stays far
from the data (docs/spectral_design.md). :data:`ENCODINGS` maps each encoding name to
its fit; the runner (:func:`~mrsolve.recon.spectral.runner.run`) owns every loop.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch

from mrsolve.recon.spectral.encodings.hash_grid import HashGridConfig
from mrsolve.recon.spectral.encodings.planes import PlanesConfig
from mrsolve.recon.spectral.fields import SpectralField
from mrsolve.recon.spectral.problem import SpectralProblem
from mrsolve.recon.spectral.regularizers import TVProx, noise_weight, smooth_tv, smoothness
from mrsolve.recon.spectral.runner import Callback, Checkpointer, StoppingConfig, run
from mrsolve.recon.spectral.steppers import FISTA, Adam
from mrsolve.solvers.alg import power_iteration
from mrsolve.solvers.validation import check_choice, make_generator


@dataclass
class FreeVolumeConfig:
    """Free spectral volume stage (regularization weights in units of the scaled image).

    ``encoding`` names an entry of :data:`ENCODINGS`; a learned encoding's own options
    are in the section of the same name (``planes``, ``hash_grid``).
    """

    enabled: bool = True
    encoding: str = "dense"  # "dense" (FISTA), "planes" or "hash_grid" (Adam)
    iterations: int = 100
    tv: float = 0.003  # chosen on the generalization benchmark's development set
    # the weights grow with the measured noise: tv_noise * noise_std^1.5 is added to tv in
    # quadrature (noise_scaled; chosen on the development set's noise sweep)
    tv_noise: float = 1.0
    tv_f: float = 0.0
    l1_f: float = 0.0
    tv_time: float = 0.0
    prox_iterations: int = 2  # warm-started inner TV steps per FISTA step
    restart_every: int = 0  # FISTA momentum restart every this many steps (0: adaptive only)
    warm_start: int = 10  # dense FISTA iterations that start a learned encoding (0: random)
    planes: PlanesConfig = field(default_factory=PlanesConfig)
    hash_grid: HashGridConfig = field(default_factory=HashGridConfig)


@dataclass
class _Penalty:
    """The prox of t (tv TV(x) + l1 ||x||_1) for FISTA; the TV dual is its warm state."""

    tv_prox: TVProx
    tv: float
    l1: float

    def __call__(self, v: torch.Tensor, t: float) -> torch.Tensor:
        return self.tv_prox(v, t * self.tv, t * self.l1)

    def state_dict(self) -> dict:
        return self.tv_prox.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.tv_prox.load_state_dict(state)


def _penalty(free: FreeVolumeConfig, dynamic: bool) -> _Penalty:
    extra = [(-3, free.tv_f / free.tv if free.tv > 0 else 0.0)]
    if dynamic:
        extra.append((-4, free.tv_time / free.tv if free.tv > 0 else 0.0))
    return _Penalty(TVProx(extra, free.prox_iterations), free.tv, free.l1_f)


def noise_scaled(free: FreeVolumeConfig, noise_std: float) -> FreeVolumeConfig:
    """``free`` with its weights (tv, tv_f, l1_f, tv_time) raised by one factor so that
    tv becomes :func:`~mrsolve.recon.spectral.regularizers.noise_weight` (tv, tv_noise)."""
    tv = noise_weight(free.tv, free.tv_noise, noise_std)
    if free.tv <= 0:
        return replace(free, tv=tv)
    k = tv / free.tv
    return replace(free, tv=tv, tv_f=k * free.tv_f, l1_f=k * free.l1_f, tv_time=k * free.tv_time)


def volume_shape(problem: SpectralProblem, bins_hz: torch.Tensor) -> tuple[int, int, int, int]:
    """(T, F, ny, nx) of the free volume (T = 1 for static scans)."""
    return (len(problem.frames), bins_hz.numel(), *problem.image_shape)


def fit_dense(
    problem: SpectralProblem,
    bins_hz: torch.Tensor,
    free: FreeVolumeConfig,
    stopping: StoppingConfig,
    *,
    dynamic: bool = False,
    seed: int | torch.Generator = 0,
    callback: Callback = None,
    checkpointer: Checkpointer | None = None,
) -> tuple[torch.Tensor, dict]:
    """FISTA on the dense grid: the volume (F, ny, nx) or (T, F, ny, nx) and a report.

    ``seed`` seeds the power iteration's random start (the step size).
    """
    coef = problem.basis.coefficients(bins_hz).to(problem.device)
    shape = volume_shape(problem, bins_hz)

    def to_z(x):
        return torch.einsum("lf,...fyx->...lyx", coef, x)

    def loss(x):
        return problem.data_loss(to_z(x if dynamic else x[None]))

    x0 = torch.zeros(shape if dynamic else shape[1:], dtype=torch.complex64, device=problem.device)
    # a safety margin over a short power iteration keeps the fixed step below 1 / L; from a
    # random start: from a constant image, 12 steps read L up to 2.6x low on multi-echo
    # scans and FISTA diverged (docs/spectral_design.md)
    gen = make_generator(seed, "torch")
    start = torch.randn(x0.shape, dtype=x0.dtype, generator=gen).to(x0.device)
    lip = power_iteration(_hessian_product(loss, x0), x0=start, max_iter=30, tol=1e-3)
    step = 1.0 / (1.25 * lip)
    fista = FISTA(loss, _penalty(free, dynamic), x0, step, restart_every=free.restart_every)
    result = run(
        fista,
        free.iterations,
        lambda: fista.x,
        heldout=lambda: problem.heldout_loss(to_z(fista.x)),
        stopping=stopping,
        residual=problem.relative_residual,
        preview=lambda: fista.x.sum(-3).detach() / problem.scale,
        callback=callback,
        checkpointer=checkpointer,
        name="free",
    )
    return result.best / problem.scale, {**result.report(), "step": step}


def fit_encoding(
    problem: SpectralProblem,
    bins_hz: torch.Tensor,
    free: FreeVolumeConfig,
    stopping: StoppingConfig,
    *,
    dynamic: bool = False,
    seed: int | torch.Generator = 0,
    callback: Callback = None,
    checkpointer: Checkpointer | None = None,
) -> tuple[torch.Tensor, dict]:
    """Adam on the learned encoding ``free.encoding`` (module doc), warm-started from
    dense FISTA: the volume (F, ny, nx) or (T, F, ny, nx) and a report."""
    name = free.encoding
    options = getattr(free, name)
    encoding = options.build(volume_shape(problem, bins_hz), seed=seed).to(problem.device)
    resumed = checkpointer is not None and checkpointer.state(name) is not None
    warm_report = None
    if free.warm_start > 0 and not resumed:
        warm = replace(free, encoding="dense", iterations=free.warm_start)
        start, warm_report = fit_dense(problem, bins_hz, warm, stopping, dynamic=dynamic)
        start = start * problem.scale
        encoding.init_from_volume(start if dynamic else start[None])
    field_ = SpectralField(encoding, problem.basis.coefficients(bins_hz).to(problem.device))

    def loss():
        vol = field_.volume()  # evaluated once: the encoding is the costly part
        z = field_(vol)
        data = problem.data_loss(z if dynamic else z[0])
        return data + free.tv * smooth_tv(vol) + free.tv_time * smoothness(vol, (0,)), data

    def volume():
        v = field_.volume().detach()
        return v if dynamic else v[0]

    def heldout():
        with torch.no_grad():
            return problem.heldout_loss(field_())

    result = run(
        Adam(field_, loss, options.lr, free.iterations),
        free.iterations,
        volume,
        heldout=heldout,
        stopping=stopping,
        residual=problem.relative_residual,
        callback=callback,
        checkpointer=checkpointer,
        name=name,
    )
    return result.best / problem.scale, {**result.report(), "warm_start": warm_report}


#: how stage 1 fits each encoding: ``fit(problem, bins_hz, free, stopping, *, dynamic,
#: seed, callback, checkpointer) -> (volume, report)``
ENCODINGS: dict[str, Callable[..., tuple[torch.Tensor, dict]]] = {
    "dense": fit_dense,
    "planes": fit_encoding,
    "hash_grid": fit_encoding,
}


def run_free_volume(
    problem: SpectralProblem,
    bins_hz: torch.Tensor,
    free: FreeVolumeConfig,
    stopping: StoppingConfig,
    *,
    dynamic: bool = False,
    seed: int | torch.Generator = 0,
    callback: Callback = None,
    checkpointer: Checkpointer | None = None,
    noise_std: float | None = None,
) -> tuple[torch.Tensor, dict]:
    """Stage 1: the free volume (F, ny, nx), or (T, F, ny, nx) when ``dynamic``, and a report.

    ``noise_std``: the gridding image's noise std (scaled units) that raises the weights
    (:func:`noise_scaled`); None keeps them as configured.
    """
    fit = ENCODINGS[check_choice("encoding", free.encoding, ENCODINGS)]
    if noise_std is not None:
        free = noise_scaled(free, noise_std)
    volume, report = fit(
        problem,
        bins_hz,
        free,
        stopping,
        dynamic=dynamic,
        seed=seed,
        callback=callback,
        checkpointer=checkpointer,
    )
    return volume, {**report, "noise_std": noise_std, "tv": free.tv}


def _gradient(loss: Callable, x: torch.Tensor) -> torch.Tensor:
    xr = x.detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(loss(xr), xr)[0]


def _hessian_product(loss: Callable, like: torch.Tensor) -> Callable:
    """v -> H v of a quadratic loss: its gradient at v minus its gradient at 0."""
    g0 = _gradient(loss, torch.zeros_like(like))
    return lambda v: _gradient(loss, v) - g0
