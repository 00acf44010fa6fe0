"""Per-pixel standard deviations of the water / fat / field-map fit (issue 18, part 4).

Per pixel r the parametric head (:class:`~mrsolve.recon.spectral.fields.WaterFatField`)
gives the temporal coefficients z(r) = a(psi) rho_w + b(psi) rho_f; the fit minimizes
f = 1/2 ||W^1/2 (A z - y)||^2 with the density weights W of
:mod:`~mrsolve.recon.spectral.problem`. With white noise of variance sigma^2 = E|n|^2 per
complex k-space sample, linearizing about the fit, theta_hat - theta = -H^-1 g with

    H = Re J^H A^H W A J      (the Gauss-Newton Hessian)
    E g g^T = sigma^2 / 2 M,   M = Re J^H A^H W^2 A J,

so Cov(theta) = sigma^2 / 2 H^-1 M H^-1 (weighted least squares' sandwich: the density
weights are not inverse noise variances, and treating them as such is wrong by the
spread of the weights). theta = (Re rho_w, Im rho_w, Re rho_f, Im rho_f, psi) and
J = [a, i a, b, i b, a' rho_w + b' rho_f].

Approximations (both make the std optimistic; ``*_factor`` calibrates them):
- per pixel: the blocks of A^H W^k A that couple a pixel to its neighbours are dropped,
  keeping the zero-lag block e(r) T_k, e(r) = sum_c |S_c(r)|^2 and T_k the frame's
  ``moments`` (the bound is the one for known neighbours);
- the regularizers (TV, field-map smoothness) are left out.

The field map lives on a coarse grid (psi = B theta, bicubic): each pixel's densities are
eliminated (the Schur complement s(r) of its 5 x 5 precision), the coarse field map's
precision is B^T diag(s) B plus a uniform prior over +-max_abs_hz (variance
max_abs_hz^2 / 3), inverted on overlapping tiles (its inverse decays fast away from the
diagonal), and each pixel's densities take the field map's variance back through their
coupling. Without signal the stds reach the uniform priors' (max_abs_hz / sqrt 3 for the
field map, 1 / sqrt 12 for the fat fraction) and are capped there: finite, never NaN.
"""

from __future__ import annotations

import math

import torch

from mrsolve.recon.spectral.fields import WaterFatField
from mrsolve.recon.spectral.problem import SpectralProblem
from mrsolve.solvers.validation import check_int, check_positive

#: central-difference step (Hz) of the derivatives of a(psi), b(psi)
DERIVATIVE_STEP_HZ = 0.5
#: coarse cells added on each side of a tile before its precision is inverted
TILE_MARGIN = 6
FAT_FRACTION_PRIOR_STD = 1 / math.sqrt(12)  # uniform on [0, 1]


def pixel_information(
    field_: WaterFatField, problem: SpectralProblem
) -> tuple[torch.Tensor, torch.Tensor]:
    """H and M of the module doc per pixel, for a field map per pixel and known neighbours.

    Returns:
        (ny, nx, 5, 5) float64 each, parameters (Re rho_w, Im rho_w, Re rho_f, Im rho_f,
        psi in Hz), densities in the problem's scaled units; summed over the frames.
    """
    if not isinstance(field_, WaterFatField):
        raise TypeError(f"field_ must be a WaterFatField, got {type(field_).__name__}")
    if not isinstance(problem, SpectralProblem):
        raise TypeError(f"problem must be a SpectralProblem, got {type(problem).__name__}")
    if tuple(field_.image_shape) != tuple(problem.image_shape):
        raise ValueError(
            f"field_ must have the problem's image shape {tuple(problem.image_shape)}, "
            f"got {tuple(field_.image_shape)}"
        )
    with torch.no_grad():
        psi = field_.field_map()
        water, fat = (v.to(torch.complex128) for v in field_.densities(psi))
        a, b = (v.to(torch.complex128) for v in field_.coefficients(psi))
        step = DERIVATIVE_STEP_HZ
        hi, lo = field_.coefficients(psi + step / 2), field_.coefficients(psi - step / 2)
        da, db = ((h.to(torch.complex128) - l) / step for h, l in zip(hi, lo, strict=True))
        jac = torch.stack([a, 1j * a, b, 1j * b, da * water + db * fat], -1)  # (L, ny, nx, 5)
        moments = sum(fr.moments for fr in problem.frames).to(jac.device)  # (2, L, L)
        energy = problem.coil_maps.abs().square().sum(0).to(jac.device, torch.float64)
        info = [
            torch.einsum("lyxp,lm,myxq->yxpq", jac.conj(), t_k.to(jac.dtype), jac).real
            * energy[..., None, None]
            for t_k in moments
        ]
    return info[0], info[1]


def parameter_curvature(
    field_: WaterFatField, problem: SpectralProblem
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gauss-Newton diagonal of the data term in the field's own parameters.

    Per pixel, H of :func:`pixel_information` taken through the parametrization's
    Jacobian (:meth:`WaterFatField.densities_of`); the field map's coarse cells sum their
    pixels' psi curvature with the squared bicubic weights, times (d psi / d raw)^2 of the
    tanh bound. Couplings between parameters and pixels are left out.

    Returns:
        (ny, nx, 2), (ny, nx, 2), coarse-grid shape: float64 curvatures of the real and
        imaginary parts of ``first`` and ``second`` and of ``psi_raw * psi_unit``.
    """
    hess, _ = pixel_information(field_, problem)
    with torch.no_grad():
        start = (field_._first(), field_._second(), field_.field_map())
        start = tuple(v.to(torch.complex128 if v.is_complex() else torch.float64) for v in start)
        base = field_.densities_of(*start)
        out = {}
        # densities_of is affine in each argument: a unit difference is the exact derivative
        for name, arg, steps in (("first", 0, (1, 1j)), ("second", 1, (1, 1j)), ("psi", 2, (1,))):
            diag = []
            for step in steps:
                moved = list(start)
                moved[arg] = moved[arg] + step
                dw, df = (m - b for m, b in zip(field_.densities_of(*moved), base, strict=True))
                dpsi = torch.full_like(dw.real, float(arg == 2))
                col = torch.stack([dw.real, dw.imag, df.real, df.imag, dpsi], -1)
                diag.append(torch.einsum("yxp,yxpq,yxq->yx", col, hess, col))
            out[name] = torch.stack(diag, -1)
    pixel_psi = out["psi"][..., 0]
    coarse = tuple(field_.psi_raw.shape)
    if coarse != tuple(pixel_psi.shape):
        by = interpolation_matrix(coarse[0], pixel_psi.shape[0], pixel_psi.device).square()
        bx = interpolation_matrix(coarse[1], pixel_psi.shape[1], pixel_psi.device).square()
        pixel_psi = torch.einsum("yx,yi,xj->ij", pixel_psi, by, bx)
    with torch.no_grad():
        slope = field_.max_abs_hz / torch.cosh(field_.psi_raw * field_.psi_unit).square()
    return out["first"], out["second"], pixel_psi * slope.double().square()


def water_fat_std(
    field_: WaterFatField,
    problem: SpectralProblem,
    noise_var: float,
    *,
    fat_fraction_factor: float = 1.0,
    field_map_factor: float = 1.0,
    fat_fraction_floor: float = 0.0,
    field_map_floor_hz: float = 0.0,
    tile: int = 32,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel std of the fat fraction and of the field map (Hz), (ny, nx) each, float32.

    Args:
        field_: the fitted head (its water, fat and field map are the linearization point).
        problem: the problem it was fitted to (frames' ``moments``, ``coil_maps``).
        noise_var: E|n|^2 of the (prewhitened) noise per complex k-space sample per coil
            in the problem's scaled units: scale^2 after prewhitening with a noise scan,
            else e.g. the held-out residual per held-out sample.
        fat_fraction_factor, field_map_factor, fat_fraction_floor, field_map_floor_hz:
            the returned std is sqrt((factor * std)^2 + floor^2), capped at the uniform
            prior's std: the factor scales the noise-only std, the floor stands for the
            errors it leaves out (module doc). 1 and 0 (the defaults): noise only; the
            fatwater preset's calibrated values are WaterFatConfig's
            (docs/uncertainty_design.md).
        tile: the coarse field map's covariance is inverted on tiles of ``tile`` x
            ``tile`` cells plus a margin (bounds memory; no effect on the result to ~1e-3).

    Returns:
        (fat-fraction std, field-map std in Hz) on the problem's device, each in
        [0, its uniform prior's std]: 1 / sqrt(12) and max_abs_hz / sqrt(3).
    """
    check_positive("noise_var", noise_var)
    check_positive("fat_fraction_factor", fat_fraction_factor)
    check_positive("field_map_factor", field_map_factor)
    check_positive("fat_fraction_floor", fat_fraction_floor, allow_zero=True)
    check_positive("field_map_floor_hz", field_map_floor_hz, allow_zero=True)
    check_int("tile", tile)
    hess, meat = pixel_information(field_, problem)
    precision = _precision(hess, meat, noise_var)
    prior_var = field_.max_abs_hz**2 / 3
    dens, coupling, own = precision[..., :4, :4], precision[..., :4, 4], precision[..., 4, 4]
    dens_inv = torch.linalg.inv(dens)
    gain = (dens_inv @ coupling[..., None])[..., 0]  # d(densities) per d(psi), negated
    schur = (own - (coupling * gain).sum(-1)).clamp_min(0)
    psi_var = _field_map_variance(field_, schur, 1 / prior_var, tile)
    cov = dens_inv + psi_var[..., None, None] * gain[..., :, None] * gain[..., None, :]
    with torch.no_grad():
        water, fat = (v.to(torch.complex128) for v in field_.densities())
    grad = _fat_fraction_gradient(water, fat)
    ff_var = (grad[..., None, :] @ cov @ grad[..., :, None])[..., 0, 0].clamp_min(0)
    ff_var = ff_var.nan_to_num(nan=math.inf)  # no signal: the prior's std (the cap)
    ff_std = inflate(ff_var.sqrt(), fat_fraction_factor, fat_fraction_floor)
    psi_std = inflate(psi_var.sqrt(), field_map_factor, field_map_floor_hz)
    ff_std = ff_std.clamp_max(FAT_FRACTION_PRIOR_STD)
    return ff_std.float(), psi_std.clamp_max(math.sqrt(prior_var)).float()


def inflate(std: torch.Tensor, factor: float, floor: float) -> torch.Tensor:
    """sqrt((factor * std)^2 + floor^2): a noise-only std calibrated to measured errors."""
    return torch.hypot(factor * std, torch.as_tensor(floor, dtype=std.dtype))


def _precision(hess: torch.Tensor, meat: torch.Tensor, noise_var: float) -> torch.Tensor:
    """2 / noise_var H M^-1 H: the inverse of the sandwich covariance, per pixel.

    A ridge of 1e-12 times each parameter's largest diagonal entry keeps pixels the coils
    do not see (H = M = 0) invertible: their variance is then huge and capped by the caller.
    """

    def ridged(mat):
        top = mat.diagonal(dim1=-2, dim2=-1).flatten(0, -2).amax(0).clamp_min(1e-300)
        return mat + torch.diag_embed(1e-12 * top)

    hess = ridged(hess)
    prec = hess @ torch.linalg.solve(ridged(meat), hess) * (2 / noise_var)
    return (prec + prec.mT) / 2


def _fat_fraction_gradient(water: torch.Tensor, fat: torch.Tensor) -> torch.Tensor:
    """(ny, nx, 4) gradient of |F| / (|W| + |F|) in (Re W, Im W, Re F, Im F); NaN where
    W = F = 0 (no fat fraction to differentiate).

    Where one density is exactly 0 its magnitude's direction is undefined: the real axis
    stands in for it, so that its noise still counts (about its std in any direction).
    """
    mw, mf = water.abs(), fat.abs()
    total = mw + mf
    unit_w = torch.where(mw > 0, water / mw, torch.ones_like(water))
    unit_f = torch.where(mf > 0, fat / mf, torch.ones_like(fat))
    dw, df = -mf / total**2, mw / total**2  # d ff / d|W|, d ff / d|F|
    return torch.stack([dw * unit_w.real, dw * unit_w.imag, df * unit_f.real, df * unit_f.imag], -1)


def interpolation_matrix(n_coarse: int, n_fine: int, device=None) -> torch.Tensor:
    """(n_fine, n_coarse) float64 weights of the field map's 1-D bicubic upsampling
    (align_corners, as :meth:`WaterFatField.field_map`; the 2-D one is their product)."""
    eye = torch.eye(n_coarse, dtype=torch.float64, device=device)[:, None, :, None]
    out = torch.nn.functional.interpolate(eye, size=(n_fine, 1), mode="bicubic", align_corners=True)
    return out[:, 0, :, 0].T


def _field_map_variance(
    field_: WaterFatField, schur: torch.Tensor, prior_precision: float, tile: int
) -> torch.Tensor:
    """(ny, nx) variance of psi = B theta with precision B^T diag(schur) B + prior * I."""
    coarse = tuple(field_.psi_raw.shape)
    if coarse == tuple(schur.shape):  # a field map per pixel: B = I
        return 1 / (schur + prior_precision)
    (ny, nx), dev = schur.shape, schur.device
    by = interpolation_matrix(coarse[0], ny, dev)
    bx = interpolation_matrix(coarse[1], nx, dev)
    owner_y, owner_x = by.argmax(1), bx.argmax(1)  # the coarse cell that owns each pixel
    out = torch.empty_like(schur)
    for y0 in range(0, coarse[0], tile):
        for x0 in range(0, coarse[1], tile):
            rows = torch.nonzero((owner_y >= y0) & (owner_y < y0 + tile)).flatten()
            cols = torch.nonzero((owner_x >= x0) & (owner_x < x0 + tile)).flatten()
            wy = slice(max(0, y0 - TILE_MARGIN), min(coarse[0], y0 + tile + TILE_MARGIN))
            wx = slice(max(0, x0 - TILE_MARGIN), min(coarse[1], x0 + tile + TILE_MARGIN))
            by_t, bx_t = by[:, wy], bx[:, wx]
            # precision of the window's cells, the cells outside it held fixed
            part = torch.einsum("yx,yi,yk->ikx", schur, by_t, by_t)
            prec = torch.einsum("ikx,xj,xl->ijkl", part, bx_t, bx_t)
            size = by_t.shape[1] * bx_t.shape[1]
            prec = prec.reshape(size, size)
            prec.diagonal().add_(prior_precision)
            cov = torch.cholesky_inverse(torch.linalg.cholesky(prec))
            cov = cov.reshape(by_t.shape[1], bx_t.shape[1], by_t.shape[1], bx_t.shape[1])
            py, px = by_t[rows], bx_t[cols]
            left = torch.einsum("yi,ijkl,yk->yjl", py, cov, py)
            out[rows[:, None], cols[None, :]] = torch.einsum("yjl,xj,xl->yx", left, px, px)
    return out
