"""Fields: what the reconstruction represents, mapped to the forward model's input.

The forward model (:mod:`mrsolve.recon.spectral.operator`) takes temporal coefficient images
z (L, ny, nx) of a basis U (n_t, L) of e^{i 2 pi f t}. A field turns its parameters
into z:

- :class:`SpectralField`: free spectral volume x(r, f) over F frequency bins (from an
  encoding), z = B x with B = U^H P(bins); a leading time axis (T, F, ny, nx) gives a
  dynamic volume with one z per frame.
- :class:`WaterFatField`: parametric head, water rho_w, fat rho_f (multi-peak spectrum
  c(t) = sum_p a_p e^{i 2 pi f_p t}) and a smooth field map psi (Hz, on a coarse grid
  upsampled bicubically): m(r, t) = (rho_w + rho_f c(t)) e^{i 2 pi psi t},
  z = U^H m (exact when psi and psi + f_p lie in the basis' frequency range), evaluated
  per pixel from tabulated coefficients a(psi), b(psi); parametrized by default so that
  its near-null direction ("more field map plus some fat") is the psi axis.
"""

from __future__ import annotations

import math

import torch

from mrsolve.propeller.fat import FatSpectrum
from mrsolve.recon.spectral.encodings import DenseGrid
from mrsolve.recon.spectral.operator import TemporalBasis
from mrsolve.solvers.validation import check_choice, check_positive

PARAMETRIZATIONS = ("common_phase", "moment", "densities")


def frequency_bins(
    spectrum: FatSpectrum, n_bins: int = 32, margin_hz: float = 150.0
) -> torch.Tensor:
    """F bin frequencies (Hz, float32) from min(fat) - margin to max(fat) + margin.

    Water (0 Hz) and every fat peak, each off-resonant by up to ``margin_hz``, fall inside.
    """
    if not isinstance(n_bins, int) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    check_positive("margin_hz", margin_hz, allow_zero=True)
    f = torch.cat([spectrum.frequencies_hz.double(), torch.zeros(1, dtype=torch.float64)])
    lo, hi = float(f.min()) - margin_hz, float(f.max()) + margin_hz
    if n_bins == 1:
        return torch.zeros(1)
    return torch.linspace(lo, hi, n_bins).float()


class SpectralField(torch.nn.Module):
    """Free spectral volume from an encoding whose output is (F, ny, nx) or (T, F, ny, nx)."""

    def __init__(self, encoding: torch.nn.Module, coefficients: torch.Tensor) -> None:
        super().__init__()
        self.encoding = encoding
        self.register_buffer("coefficients", coefficients.to(torch.complex64))  # (L, F)

    def volume(self) -> torch.Tensor:
        return self.encoding()

    def forward(self, volume: torch.Tensor | None = None) -> torch.Tensor:
        """z (L, ny, nx) or (T, L, ny, nx) of ``volume`` (default: the encoding's)."""
        volume = self.volume() if volume is None else volume
        return torch.einsum("lf,...fyx->...lyx", self.coefficients, volume)


def dense_spectral_field(
    basis: TemporalBasis, bins_hz: torch.Tensor, init: torch.Tensor
) -> SpectralField:
    """A :class:`SpectralField` on a :class:`DenseGrid` started at ``init`` (..., F, ny, nx)."""
    coef = basis.coefficients(bins_hz).to(init.device)
    return SpectralField(DenseGrid(init.shape, init), coef)


class WaterFatField(torch.nn.Module):
    """Parametric water / fat / field-map head (module doc).

    Per pixel z = a(psi) rho_w + b(psi) rho_f with a(psi) = U^H e^{i 2 pi psi t} and
    b(psi) = U^H (c(t) e^{i 2 pi psi t}), both (L,) and functions of the scalar psi only:
    they are tabulated once with their derivatives every ``table_step_hz`` over
    [-max_abs_hz, max_abs_hz] and read by cubic Hermite interpolation (relative error
    ~1e-8 at 2.5 Hz for millisecond read-outs), O(L) work per pixel instead of O(n_t).

    Parametrizations (the same model, different optimization geometry):

    - "densities": parameters rho_w, rho_f, psi.
    - "moment": parameters rho = rho_w + rho_f, h = rho_f + psi rho / f_bar and psi, with
      f_bar = sum_p a_p f_p the fat spectrum's mean offset (Hz). To first order in the
      read-out shift (f M dt pixels along each blade), the data see rho and the first
      spectral moment psi rho_w + sum_p a_p (psi + f_p) rho_f = psi rho + f_bar rho_f =
      f_bar h, not psi and rho_f apart: "more field map plus some fat" fits about as
      well as the truth. Here that near-null direction is the psi axis at fixed (rho, h),
      so a quasi-Newton method can move the field map along it (with densities, it must
      move psi and the fat together through an ill-conditioned valley and stalls near
      its start).
    - "common_phase": the moment form with water and fat in phase, as they are at t = 0
      (the field map's phase is modelled): parameters rho (complex), a real eta and psi,
      rho_f = s rho and rho_w = (1 - s) rho with the fat share s = eta - psi / f_bar.
      Along the near-null direction the moment form trades a field-map offset for fat
      of either phase; here fat in opposite phase to water is excluded and the share is
      kept in [0, 1] by :meth:`share_penalty` (docs/spectral_design.md).

    Args:
        basis: temporal basis of the forward model.
        spectrum: fat peaks.
        water, fat: (ny, nx) complex initial densities.
        field_map_hz: (ny, nx) initial field map.
        downsample: field-map grid is (ny, nx) / downsample (1: per pixel).
        max_abs_hz: the field map is bounded to +-max_abs_hz (tanh), keeping it in range.
        table_step_hz: spacing of the tabulated a(psi), b(psi).
        parametrization: "common_phase", "moment" or "densities" (above).
    """

    def __init__(
        self,
        basis: TemporalBasis,
        spectrum: FatSpectrum,
        water: torch.Tensor,
        fat: torch.Tensor,
        field_map_hz: torch.Tensor,
        downsample: int = 4,
        max_abs_hz: float = 150.0,
        table_step_hz: float = 2.5,
        parametrization: str = "moment",
    ) -> None:
        super().__init__()
        self.parametrization = check_choice("parametrization", parametrization, PARAMETRIZATIONS)
        if not isinstance(downsample, int) or downsample < 1:
            raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
        self.max_abs_hz = check_positive("max_abs_hz", max_abs_hz)
        self.step_hz = check_positive("table_step_hz", table_step_hz)
        self.image_shape = tuple(water.shape[-2:])
        dev = water.device
        n_half = math.ceil(self.max_abs_hz / self.step_hz) + 1
        self.start_hz = -n_half * self.step_hz
        grid = self.start_hz + self.step_hz * torch.arange(2 * n_half + 1, device=dev).double()
        t = basis.times_s.to(dev).double()
        u_conj = basis.u.to(dev).conj().T  # (L, n_t) complex128
        peaks = 2 * math.pi * t[:, None] * spectrum.frequencies_hz.to(dev).double()
        fat_t = spectrum.amplitudes.to(dev).double() * torch.polar(torch.ones_like(peaks), peaks)
        rot = torch.polar(torch.ones_like(t[:, None] * grid), 2 * math.pi * t[:, None] * grid)
        slope = 2j * math.pi * self.step_hz * t[:, None]  # step * d/dpsi of e^{i 2 pi psi t}
        water_t, fat_rot = rot, fat_t.sum(-1)[:, None] * rot
        rows = [u_conj @ v for v in (water_t, slope * water_t, fat_rot, slope * fat_rot)]
        # (K, 4, L): a, step * a', b, step * b' at every tabulated psi
        self.register_buffer("table", torch.stack(rows).permute(2, 0, 1).to(torch.complex64))
        self.fat_mean_hz = float((spectrum.amplitudes * spectrum.frequencies_hz).sum())
        if self.parametrization != "densities" and self.fat_mean_hz == 0:
            raise ValueError("spectrum must have a non-zero mean offset for the moment form")
        self.first = DenseGrid(water.shape, water)  # rho_w or rho
        self.second = DenseGrid(fat.shape, fat)  # rho_f or h (eta: its real part)
        coarse = tuple(max(1, math.ceil(s / downsample)) for s in self.image_shape)
        psi = torch.nn.functional.interpolate(
            field_map_hz.float()[None, None], size=coarse, mode="area"
        )[0, 0]
        ratio = (psi / self.max_abs_hz).clamp(-0.999, 0.999)
        self.psi_raw = torch.nn.Parameter(torch.atanh(ratio))
        # the parameters are stored divided by these units (set_units: a diagonal preconditioner)
        self.register_buffer("first_unit", torch.ones_like(self.first.values))
        self.register_buffer("second_unit", torch.ones_like(self.second.values))
        self.register_buffer("psi_unit", torch.ones_like(self.psi_raw))
        self.set_densities(water, fat)

    def set_units(self, first: torch.Tensor, second: torch.Tensor, psi: torch.Tensor) -> None:
        """Store the parameters in new units, the represented maps unchanged: an optimizer
        then sees the curvature scaled by unit^2 (``first``, ``second`` (ny, nx, 2) for the
        real and imaginary parts, ``psi`` the coarse grid's shape, all positive)."""
        with torch.no_grad():
            for old, new, value in (
                (self.first_unit, first, self.first.values),
                (self.second_unit, second, self.second.values),
                (self.psi_unit, psi, self.psi_raw),
            ):
                if tuple(new.shape) != tuple(old.shape) or not bool((new > 0).all()):
                    raise ValueError(
                        f"units must be positive of shape {tuple(old.shape)}, got "
                        f"{tuple(new.shape)}"
                    )
                value.mul_(old / new)
                old.copy_(new)

    def _first(self) -> torch.Tensor:
        return torch.view_as_complex(self.first.values * self.first_unit)

    def _second(self) -> torch.Tensor:
        return torch.view_as_complex(self.second.values * self.second_unit)

    def set_densities(self, water: torch.Tensor, fat: torch.Tensor) -> None:
        """Set the parameters so that water() and fat() return ``water``, ``fat`` (ny, nx)
        at the current field map."""
        with torch.no_grad():
            water, fat = water.to(torch.complex64), fat.to(torch.complex64)
            if self.parametrization == "moment":
                total = water + fat
                water, fat = total, fat + self.field_map() * total / self.fat_mean_hz
            elif self.parametrization == "common_phase":
                total = water + fat
                # the share of the fat along the common phase, clamped to [0, 1]
                share = (fat * total.conj()).real / total.abs().square().clamp_min(1e-30)
                eta = share.clamp(0, 1) + self.field_map() / self.fat_mean_hz
                water, fat = total, eta.to(torch.complex64)
            self.first.values.copy_(torch.view_as_real(water) / self.first_unit)
            self.second.values.copy_(torch.view_as_real(fat) / self.second_unit)

    def densities(self, psi: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """rho_w, rho_f (ny, nx) complex at field map ``psi`` (default: the field's)."""
        psi = self.field_map() if psi is None else psi
        return self.densities_of(self._first(), self._second(), psi)

    def densities_of(
        self, first: torch.Tensor, second: torch.Tensor, psi: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """rho_w, rho_f (ny, nx) complex of the parameters ``first``, ``second`` (complex,
        in the parametrization's meaning) at field map ``psi`` (Hz), per pixel."""
        if self.parametrization == "densities":
            return first, second
        if self.parametrization == "common_phase":
            fat = (second.real - psi / self.fat_mean_hz) * first
        else:
            fat = second - psi * first / self.fat_mean_hz
        return first - fat, fat

    def fat_share(self, psi: torch.Tensor | None = None) -> torch.Tensor:
        """s = eta - psi / f_bar (ny, nx), the fat share of "common_phase"."""
        psi = self.field_map() if psi is None else psi
        return self._second().real - psi / self.fat_mean_hz

    def share_penalty(self) -> torch.Tensor:
        """sum |rho|^2 (min(s, 0)^2 + max(s - 1, 0)^2): keeps "common_phase"'s fat share in
        [0, 1] (0 for the other parametrizations)."""
        if self.parametrization != "common_phase":
            return torch.zeros((), device=self.psi_raw.device)
        s = self.fat_share()
        outside = torch.relu(-s).square() + torch.relu(s - 1).square()
        return (self._first().abs().square() * outside).sum()

    def water(self) -> torch.Tensor:
        """rho_w (ny, nx) complex."""
        return self.densities()[0]

    def fat(self) -> torch.Tensor:
        """rho_f (ny, nx) complex."""
        return self.densities()[1]

    def field_map(self) -> torch.Tensor:
        """psi (ny, nx) in Hz."""
        psi = self.max_abs_hz * torch.tanh(self.psi_raw * self.psi_unit)
        if tuple(psi.shape) == self.image_shape:
            return psi
        return torch.nn.functional.interpolate(
            psi[None, None], size=self.image_shape, mode="bicubic", align_corners=True
        )[0, 0]

    def coefficients(self, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """a(psi), b(psi): (L, *psi.shape) complex64 temporal coefficients of unit water
        and unit fat at field map ``psi`` (Hz, within +-max_abs_hz)."""
        pos = (psi - self.start_hz) / self.step_hz
        k = pos.detach().floor().long().clamp(0, self.table.shape[0] - 2)
        s = (pos - k)[..., None, None]
        s2, s3 = s * s, s * s * s
        lo, hi = self.table[k], self.table[k + 1]  # (..., 4, L)
        # cubic Hermite: values at rows 0 / 2, step-scaled derivatives at rows 1 / 3
        val = (2 * s3 - 3 * s2 + 1) * lo + (-2 * s3 + 3 * s2) * hi
        der = (s3 - 2 * s2 + s) * lo + (s3 - s2) * hi
        out = val[..., 0::2, :] + der[..., 1::2, :]  # (..., 2, L)
        out = out.movedim(-1, 0)  # (L, ..., 2)
        return out[..., 0], out[..., 1]

    def forward(self) -> torch.Tensor:
        """z (L, ny, nx)."""
        psi = self.field_map()
        a, b = self.coefficients(psi)
        water, fat = self.densities(psi)
        return a * water[None] + b * fat[None]
