"""Fields: what the reconstruction represents, mapped to the forward model's input.

The forward model (:mod:`mrsolve.recon.spectral_op`) takes temporal coefficient images
z (L, ny, nx) of a basis U (n_t, L) of e^{i 2 pi f t}. A field turns its parameters
into z:

- :class:`SpectralField`: free spectral volume x(r, f) over F frequency bins (from an
  encoding), z = B x with B = U^H P(bins); a leading time axis (T, F, ny, nx) gives a
  dynamic volume with one z per frame.
- :class:`WaterFatField`: parametric head, water rho_w, fat rho_f (multi-peak spectrum
  c(t) = sum_p a_p e^{i 2 pi f_p t}) and a smooth field map psi (Hz, on a coarse grid
  upsampled bicubically): m(r, t) = (rho_w + rho_f c(t)) e^{i 2 pi psi t},
  z = U^H m (exact when psi and psi + f_p lie in the basis' frequency range).
"""

from __future__ import annotations

import math

import torch

from mrsolve.propeller.fat import FatSpectrum
from mrsolve.recon.encodings import DenseGrid
from mrsolve.recon.spectral_op import TemporalBasis
from mrsolve.solvers.validation import check_positive


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

    def forward(self) -> torch.Tensor:
        """z (L, ny, nx) or (T, L, ny, nx)."""
        return torch.einsum("lf,...fyx->...lyx", self.coefficients, self.volume())


def dense_spectral_field(
    basis: TemporalBasis, bins_hz: torch.Tensor, init: torch.Tensor
) -> SpectralField:
    """A :class:`SpectralField` on a :class:`DenseGrid` started at ``init`` (..., F, ny, nx)."""
    coef = basis.coefficients(bins_hz).to(init.device)
    return SpectralField(DenseGrid(init.shape, init), coef)


class WaterFatField(torch.nn.Module):
    """Parametric water / fat / field-map head (module doc).

    Args:
        basis: temporal basis of the forward model.
        spectrum: fat peaks.
        water, fat: (ny, nx) complex initial densities.
        field_map_hz: (ny, nx) initial field map.
        downsample: field-map grid is (ny, nx) / downsample (1: per pixel).
        max_abs_hz: the field map is bounded to +-max_abs_hz (tanh), keeping it in range.
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
    ) -> None:
        super().__init__()
        if not isinstance(downsample, int) or downsample < 1:
            raise ValueError(f"downsample must be a positive integer, got {downsample!r}")
        self.max_abs_hz = check_positive("max_abs_hz", max_abs_hz)
        self.image_shape = tuple(water.shape[-2:])
        dev = water.device
        t = basis.times_s.to(dev).double()
        self.register_buffer("u_conj", basis.u.to(dev).conj().T.to(torch.complex64))  # (L, n_t)
        phase = 2 * math.pi * t[:, None] * spectrum.frequencies_hz.to(dev).double()
        fat_t = spectrum.amplitudes.to(dev).double() * torch.polar(torch.ones_like(phase), phase)
        self.register_buffer("fat_signal", fat_t.sum(-1).to(torch.complex64))  # (n_t,)
        self.register_buffer("times", t.float())
        self.water = DenseGrid(water.shape, water)
        self.fat = DenseGrid(fat.shape, fat)
        coarse = tuple(max(1, math.ceil(s / downsample)) for s in self.image_shape)
        psi = torch.nn.functional.interpolate(
            field_map_hz.float()[None, None], size=coarse, mode="area"
        )[0, 0]
        ratio = (psi / self.max_abs_hz).clamp(-0.999, 0.999)
        self.psi_raw = torch.nn.Parameter(torch.atanh(ratio))

    def field_map(self) -> torch.Tensor:
        """psi (ny, nx) in Hz."""
        psi = self.max_abs_hz * torch.tanh(self.psi_raw)
        if tuple(psi.shape) == self.image_shape:
            return psi
        return torch.nn.functional.interpolate(
            psi[None, None], size=self.image_shape, mode="bicubic", align_corners=True
        )[0, 0]

    def forward(self) -> torch.Tensor:
        """z (L, ny, nx)."""
        psi = self.field_map()
        phase = 2 * math.pi * self.times[:, None, None] * psi  # (n_t, ny, nx)
        rot = torch.polar(torch.ones_like(phase), phase)
        m = rot * (self.water()[None] + self.fat()[None] * self.fat_signal[:, None, None])
        return torch.einsum("lt,tyx->lyx", self.u_conj, m)
