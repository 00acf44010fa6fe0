"""Spectral encoding: the multi-coil PROPELLER signal of a spectral volume x(r, f).

    y_cj = sum_f sum_r S_c(r) x_f(r) e^{i 2 pi f t_j} e^{-i 2 pi k_j . r / N}

(methods/propeller.md; the sign of the time phase is the simulator's). Three engines:

- :class:`SpectralEncoding` (default, exact to ``tol``): time segmentation by SVD. The
  samples' times take few distinct values (M per echo); with P[t, f] = e^{i 2 pi f t}
  = U S V^H truncated to the L singular values above ``tol * s_1``, every sample's time
  phase is sum_l U[t_j, l] (S V^H)[l, f]. The field is mapped to L temporal coefficient
  images z_l = sum_f (S V^H)[l, f] x_f and y_c = sum_l U[t_j, l] NUFFT(S_c z_l): L NUFFTs
  per coil over all blades at once. Its normal operator :class:`SpectralNormal` is
  L x L Toeplitz kernels on the 2x grid (no NUFFT inside the iterations).
- :class:`ShearedSpectralModel` (comparison): per blade, FFT phase-ramp shift of each
  coil-weighted bin image by -f M dt pixels along the readout, a TE phase per bin, a sum
  over f, and one NUFFT per coil. Exact only for on-grid samples (0.1-2 % off on
  oblique blades), kept to measure that.
- :class:`ExplicitSpectralModel` (validation): explicit DFT times the per-sample phase.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from mrsolve.propeller.dft import DFT
from mrsolve.propeller.nufft import NUFFT, toeplitz_kernel
from mrsolve.solvers.linop import Linop
from mrsolve.solvers.validation import check_finite, check_positive, check_shape


def _check_maps(coil_maps: torch.Tensor, image_shape: Sequence[int]) -> None:
    if not isinstance(coil_maps, torch.Tensor) or coil_maps.ndim != 3:
        raise ValueError(
            f"coil_maps must be a (C, ny, nx) tensor, got {getattr(coil_maps, 'shape', coil_maps)!r}"
        )
    check_shape("coil_maps", coil_maps, (coil_maps.shape[0], *image_shape))


def _check_samples(traj: torch.Tensor, times: torch.Tensor) -> None:
    if not isinstance(traj, torch.Tensor) or traj.ndim < 2 or traj.shape[-1] != 2:
        raise ValueError(f"traj must be a (..., 2) tensor, got {getattr(traj, 'shape', traj)!r}")
    check_shape("times", times, traj.shape[:-1])
    check_finite("times", times)


@dataclass(frozen=True)
class TemporalBasis:
    """Orthonormal temporal basis of e^{i 2 pi f t} over the scan's distinct times.

    Attributes:
        times_s: (n_t,) float32 distinct sample times, sorted.
        u: (n_t, L) complex128 left singular vectors of P[t, f] = e^{i 2 pi f t}.
        frequencies_hz: (F,) float64 frequencies the basis was built from.
        singular_values: (min(n_t, F),) all singular values of P (for reports).
    """

    times_s: torch.Tensor
    u: torch.Tensor
    frequencies_hz: torch.Tensor
    singular_values: torch.Tensor

    @property
    def rank(self) -> int:
        return self.u.shape[1]

    def index(self, times: torch.Tensor) -> torch.Tensor:
        """Row of ``times_s`` of each entry of ``times`` (any shape); raises if absent."""
        t = times.to(self.times_s.device, torch.float32).reshape(-1)
        idx = torch.searchsorted(self.times_s, t).clamp_max(len(self.times_s) - 1)
        if not torch.equal(self.times_s[idx], t):
            raise ValueError("times must be among the times the temporal basis was built from")
        return idx.reshape(times.shape)

    def rows(self, times: torch.Tensor) -> torch.Tensor:
        """U[t_j, :] for every sample: (*times.shape, L) complex64."""
        return self.u[self.index(times)].to(torch.complex64)

    def phases(self, frequencies_hz: torch.Tensor) -> torch.Tensor:
        """P(t, f) = e^{i 2 pi f t} (n_t, F) complex128 at the basis times."""
        f = torch.as_tensor(frequencies_hz, dtype=torch.float64, device=self.u.device)
        phase = 2 * math.pi * self.times_s.double()[:, None] * f[None, :]
        return torch.polar(torch.ones_like(phase), phase)

    def coefficients(self, frequencies_hz: torch.Tensor) -> torch.Tensor:
        """B = U^H P(f) (L, F) complex64: the temporal coefficients of bin images."""
        return (self.u.conj().T @ self.phases(frequencies_hz)).to(torch.complex64)


def temporal_basis(
    times: torch.Tensor, frequencies_hz: torch.Tensor, tol: float = 1e-6
) -> TemporalBasis:
    """SVD basis of e^{i 2 pi f t} for the distinct values of ``times`` (s) and ``frequencies_hz``.

    Keeps the singular vectors with s_l > tol * s_1: ||P - U U^H P||_2 <= tol * s_1.
    Pass a dense frequency grid over a range to span every frequency in it.
    """
    check_positive("tol", tol)
    check_finite("times", torch.as_tensor(times))
    uniq = torch.unique(torch.as_tensor(times).detach().float().reshape(-1).cpu())
    freqs = torch.as_tensor(frequencies_hz, dtype=torch.float64).reshape(-1).cpu()
    if freqs.numel() < 1:
        raise ValueError("frequencies_hz must hold at least one frequency, got none")
    phase = 2 * math.pi * uniq.double()[:, None] * freqs[None, :]
    u, s, _ = torch.linalg.svd(torch.polar(torch.ones_like(phase), phase), full_matrices=False)
    keep = int((s > tol * s[0]).sum())
    device = torch.as_tensor(times).device
    return TemporalBasis(uniq.to(device), u[:, :keep].to(device), freqs.to(device), s)


class SpectralEncoding(Linop):
    """Temporal coefficient images z (L, ny, nx) -> samples (C, *S) (module doc).

    Args:
        traj: (*S, 2) k-space positions in cycles/FOV.
        times: (*S) sample times in seconds (must be among ``basis.times_s``).
        basis: the temporal basis.
        coil_maps: (C, ny, nx) sensitivities.
        nufft_options: passed to :class:`~mrsolve.propeller.nufft.NUFFT`.
    """

    def __init__(
        self,
        traj: torch.Tensor,
        times: torch.Tensor,
        basis: TemporalBasis,
        coil_maps: torch.Tensor,
        **nufft_options,
    ) -> None:
        _check_samples(traj, times)
        image_shape = tuple(coil_maps.shape[-2:])
        _check_maps(coil_maps, image_shape)
        n_coils, rank = coil_maps.shape[0], basis.rank
        self.maps = coil_maps.to(traj.device, torch.complex64)
        self.nufft = NUFFT(traj, image_shape, batch_shape=(rank, n_coils), **nufft_options)
        self.time_index = basis.index(times).to(traj.device)  # (*S)
        self.basis_u = basis.u.to(traj.device)
        self.rows = basis.rows(times).to(traj.device).movedim(-1, 0)  # (L, *S)
        super().__init__((rank, *image_shape), (n_coils, *traj.shape[:-1]), device=traj.device)

    def _apply(self, z):
        k = self.nufft(z[:, None] * self.maps)  # (L, C, *S)
        return (k * self.rows[:, None]).sum(0)

    def _adjoint(self):
        return _SpectralEncodingAdjoint(self)

    def normal(self, weights: torch.Tensor | None = None) -> SpectralNormal:
        """A^H W A with real sample weights W (*S) by Toeplitz embedding."""
        return SpectralNormal(self, weights)

    def _normal(self):
        return SpectralNormal(self)


class _SpectralEncodingAdjoint(Linop):
    def __init__(self, fwd: SpectralEncoding) -> None:
        super().__init__(fwd.oshape, fwd.ishape, device=fwd.device)
        self.fwd = fwd

    def _apply(self, y):
        coil = self.fwd.nufft.H(self.fwd.rows.conj()[:, None] * y[None])  # (L, C, ny, nx)
        return (coil * self.fwd.maps.conj()).sum(1)

    def _adjoint(self):
        return self.fwd


class SpectralNormal(Linop):
    """A^H W A of a :class:`SpectralEncoding`: L x L Toeplitz kernels, no NUFFT.

    (A^H W A)_{l l'} = sum_c S_c^* T[w conj(U_l) U_l'] S_c, where T[v] is the Toeplitz
    operator NUFFT^H diag(v) NUFFT. Per application: L C FFTs, one (L x L) @ (L x C)
    product per grid point, L C inverse FFTs on the (2 ny, 2 nx) grid.

    The L^2 kernels are built from Q ~ 2 L point-spread functions: the products
    conj(U_l(t)) U_l'(t) span few functions of t (frequency differences), so an SVD of
    the (L^2, n_t) product matrix truncated at ``tol`` gives them with Q adjoint NUFFTs
    instead of L^2.
    """

    def __init__(
        self, enc: SpectralEncoding, weights: torch.Tensor | None = None, tol: float = 1e-7
    ) -> None:
        samples = tuple(enc.nufft.traj.shape[:-1])
        if weights is None:
            weights = torch.ones(samples, device=enc.device)
        elif not isinstance(weights, torch.Tensor) or weights.is_complex():
            raise TypeError(f"weights must be a real torch.Tensor, got {weights!r:.80}")
        check_shape("weights", weights, samples)
        super().__init__(enc.ishape, enc.ishape, device=enc.device)
        self.maps = enc.maps
        rank = enc.ishape[0]
        u = enc.basis_u.to(torch.complex128)  # (n_t, L)
        products = (u.conj()[:, :, None] * u[:, None, :]).reshape(u.shape[0], -1).T
        coef, sv, vh = torch.linalg.svd(products, full_matrices=False)  # (L^2, n_t)
        keep = int((sv > tol * sv[0]).sum())
        mix = (coef[:, :keep] * sv[:keep]).to(torch.complex64)  # (L^2, Q)
        funcs = vh[:keep].to(torch.complex64)[:, enc.time_index]  # (Q, *S)
        kernels = toeplitz_kernel(enc.nufft, weights.to(enc.device) * funcs)  # (Q, 2ny, 2nx)
        grid = kernels.shape[-2:]
        mixed = mix @ kernels.reshape(keep, -1)  # (L^2, G)
        # grid-point-major (2ny, 2nx, L, L): one batched small matmul per application
        self.kernels = mixed.T.reshape(*grid, rank, rank).contiguous()
        self.n_psf = keep

    def _apply(self, z):
        ny, nx = z.shape[-2:]
        # fft2 with s= zero-pads internally (much faster than padding, or than 1D FFTs
        # along a strided axis); the per-point matmul wants contiguous pixel-major input
        spec = torch.fft.fft2(z[:, None] * self.maps, s=(2 * ny, 2 * nx))  # (L, C, 2ny, 2nx)
        mixed = self.kernels @ spec.permute(2, 3, 0, 1).contiguous()  # (2ny, 2nx, L, C)
        out = torch.fft.ifft2(mixed.permute(2, 3, 0, 1))[..., :ny, :nx]
        return (out * self.maps.conj()).sum(1)

    def _adjoint(self):
        return self


class ExplicitSpectralModel(Linop):
    """Exact per-sample model from bin images x (F, ny, nx) to samples (C, *S), by DFT.

    y_c(k_j) = sum_f e^{i 2 pi f t_j} DFT(S_c x_f)(k_j); O(F C K N^2), for validation.
    """

    def __init__(
        self,
        traj: torch.Tensor,
        times: torch.Tensor,
        frequencies_hz: torch.Tensor,
        coil_maps: torch.Tensor,
    ) -> None:
        _check_samples(traj, times)
        image_shape = tuple(coil_maps.shape[-2:])
        _check_maps(coil_maps, image_shape)
        freqs = torch.as_tensor(frequencies_hz, dtype=torch.float64, device=traj.device)
        n_bins, n_coils = freqs.numel(), coil_maps.shape[0]
        self.maps = coil_maps.to(traj.device, torch.complex64)
        self.dft = DFT(traj, image_shape, batch_shape=(n_bins, n_coils))
        phase = 2 * math.pi * freqs.reshape(-1, *([1] * times.ndim)) * times.double()
        self.phase = torch.polar(torch.ones_like(phase), phase).to(torch.complex64)  # (F, *S)
        super().__init__((n_bins, *image_shape), (n_coils, *traj.shape[:-1]), device=traj.device)

    def _apply(self, x):
        return (self.dft(x[:, None] * self.maps) * self.phase[:, None]).sum(0)

    def _adjoint(self):
        return _ExplicitAdjoint(self)


class _ExplicitAdjoint(Linop):
    def __init__(self, fwd: ExplicitSpectralModel) -> None:
        super().__init__(fwd.oshape, fwd.ishape, device=fwd.device)
        self.fwd = fwd

    def _apply(self, y):
        coil = self.fwd.dft.H(self.fwd.phase.conj()[:, None] * y[None])
        return (coil * self.fwd.maps.conj()).sum(1)

    def _adjoint(self):
        return self.fwd


class ShearedSpectralModel(Linop):
    """Per-blade sheared projection: bin images x (F, ny, nx) -> samples (C, B, L, M).

    For blade b with readout direction e_b: sum_f e^{i 2 pi f TE} Shift(S_c x_f, -f M dt e_b)
    (an FFT phase ramp on the N x N grid), then one NUFFT per coil. ``te_s`` is 0 for
    spin echo. Approximate off the Cartesian grid (module doc).
    """

    def __init__(
        self,
        traj: torch.Tensor,
        frequencies_hz: torch.Tensor,
        coil_maps: torch.Tensor,
        dwell_s: float,
        te_s: float = 0.0,
    ) -> None:
        if traj.ndim != 4 or traj.shape[-1] != 2:
            raise ValueError(f"traj must have shape (B, L, M, 2), got {tuple(traj.shape)}")
        image_shape = tuple(coil_maps.shape[-2:])
        _check_maps(coil_maps, image_shape)
        check_positive("dwell_s", dwell_s)
        n_blades, _, n_read, _ = traj.shape
        freqs = torch.as_tensor(frequencies_hz, dtype=torch.float64, device=traj.device)
        self.maps = coil_maps.to(traj.device, torch.complex64)
        self.nuffts = [
            NUFFT(traj[b], image_shape, batch_shape=(coil_maps.shape[0],)) for b in range(n_blades)
        ]
        mid = traj.shape[1] // 2
        d = (traj[:, mid, -1] - traj[:, mid, 0]).double()
        e = d / d.norm(dim=-1, keepdim=True)  # (B, 2) readout direction (x, y)
        ny, nx = image_shape
        ky = torch.fft.fftfreq(ny, device=traj.device, dtype=torch.float64)[:, None]
        kx = torch.fft.fftfreq(nx, device=traj.device, dtype=torch.float64)[None, :]
        shift = -freqs[None, :] * n_read * dwell_s  # (1, F) pixels along e_b
        sx, sy = shift * e[:, :1], shift * e[:, 1:]  # (B, F)
        phase = -2 * math.pi * (kx * sx[..., None, None] + ky * sy[..., None, None])
        phase = phase + 2 * math.pi * freqs[:, None, None] * te_s
        self.ramps = torch.polar(torch.ones_like(phase), phase).to(torch.complex64)  # (B,F,ny,nx)
        super().__init__(
            (freqs.numel(), *image_shape),
            (coil_maps.shape[0], *traj.shape[:-1]),
            device=traj.device,
        )

    def _sheared(self, x: torch.Tensor, blade: int) -> torch.Tensor:
        spec = torch.fft.fft2(x[:, None] * self.maps)  # (F, C, ny, nx)
        return torch.fft.ifft2((spec * self.ramps[blade][:, None]).sum(0))  # (C, ny, nx)

    def _apply(self, x):
        out = [op(self._sheared(x, b)) for b, op in enumerate(self.nuffts)]
        return torch.stack(out, dim=1)

    def _adjoint(self):
        return _ShearedAdjoint(self)


class _ShearedAdjoint(Linop):
    def __init__(self, fwd: ShearedSpectralModel) -> None:
        super().__init__(fwd.oshape, fwd.ishape, device=fwd.device)
        self.fwd = fwd

    def _apply(self, y):
        fwd = self.fwd
        out = torch.zeros(fwd.ishape, dtype=torch.complex64, device=y.device)
        for b, op in enumerate(fwd.nuffts):
            spec = torch.fft.fft2(op.H(y[:, b]))  # (C, ny, nx)
            per_bin = torch.fft.ifft2(spec[None] * fwd.ramps[b].conj()[:, None])  # (F, C, ..)
            out += (per_bin * fwd.maps.conj()).sum(1)
        return out

    def _adjoint(self):
        return self.fwd
