"""Spectral encoding: the multi-coil PROPELLER signal of a spectral volume x(r, f).

    y_cj = sum_f sum_r S_c(r) x_f(r) e^{i 2 pi f t_j} e^{-i 2 pi k_j . r / N}

(methods/propeller.md; the sign of the time phase is the simulator's). Three engines:

- :class:`SpectralEncoding` (default, exact to ``tol``): time segmentation by SVD. The
  samples' times take few distinct values (M per echo); with P[t, f] = e^{i 2 pi f t}
  = U S V^H truncated to the L singular values above ``tol * s_1``, every sample's time
  phase is sum_l U[t_j, l] (S V^H)[l, f]. The field is mapped to L temporal coefficient
  images z_l = sum_f (S V^H)[l, f] x_f and y_c = sum_l U[t_j, l] NUFFT(S_c z_l): L NUFFTs
  per coil over all blades at once. The rank follows ``tol`` or an a-priori bound on the
  model error (``max_error``). Its normal operator :class:`SpectralNormal` is L x L real
  Toeplitz kernels on the 2x grid (no NUFFT inside the iterations).
- :class:`ShearedSpectralModel` (comparison): per blade, FFT phase-ramp shift of each
  coil-weighted bin image by -f M dt pixels along the readout, a TE phase per bin, a sum
  over f, and one NUFFT per coil. Exact only for on-grid samples (0.1-2 % off on
  oblique blades), kept to measure that.
- :class:`ExplicitSpectralModel` (validation): explicit DFT times the per-sample phase.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.fft
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

    Every row is a unit phase times a real vector, U[t, l] = e^{i 2 pi c t} R[t, l]
    (c the centre of the frequency range), so that conj(U[t, l]) U[t, l'] is real.

    Attributes:
        times_s: (n_t,) float32 distinct sample times, sorted.
        u: (n_t, L) complex128 left singular vectors of P[t, f] = e^{i 2 pi f t}.
        frequencies_hz: (F,) float64 frequencies the basis was built from.
        singular_values: (min(n_t, 2F),) all singular values (for reports).
        max_error: a-priori bound on the model error, max |P - U U^H P| over the times
            and a 4x denser frequency grid on the same range: the relative error of
            every sample of a single-frequency image (module doc of ``temporal_basis``).
    """

    times_s: torch.Tensor
    u: torch.Tensor
    frequencies_hz: torch.Tensor
    singular_values: torch.Tensor
    max_error: float

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
        return _phases(self.times_s.double(), f)

    def coefficients(self, frequencies_hz: torch.Tensor) -> torch.Tensor:
        """B = U^H P(f) (L, F) complex64: the temporal coefficients of bin images."""
        return (self.u.conj().T @ self.phases(frequencies_hz)).to(torch.complex64)


def _phases(times: torch.Tensor, freqs: torch.Tensor) -> torch.Tensor:
    phase = 2 * math.pi * times[:, None] * freqs[None, :]
    return torch.polar(torch.ones_like(phase), phase)


def _truncation_errors(
    u: torch.Tensor, probe: torch.Tensor, max_rank: int, target: float = 0.0
) -> list[float]:
    """max |P - U_L U_L^H P| over ``probe`` (n_t, K) for L = 0, 1, ... up to ``max_rank``,
    stopping at the first L where it is at most ``target``."""
    coef = u[:, :max_rank].conj().T @ probe  # (max_rank, K)
    residual, out = probe.clone(), [float(probe.abs().max())]
    for rank in range(max_rank):
        if out[-1] <= target:
            break
        residual -= u[:, rank : rank + 1] * coef[rank : rank + 1]
        out.append(float(residual.abs().max()))
    return out


def temporal_basis(
    times: torch.Tensor,
    frequencies_hz: torch.Tensor,
    tol: float = 1e-6,
    max_error: float | None = None,
) -> TemporalBasis:
    """SVD basis of e^{i 2 pi f t} for the distinct values of ``times`` (s) and ``frequencies_hz``.

    The rank L is the number of singular values above ``tol * s_1`` or, when
    ``max_error`` is given, the smallest L whose a-priori model error
    max |e^{i 2 pi f t} - U U^H e^{i 2 pi f t}| (over the times and a 4x denser grid on
    the frequency range) is at most ``max_error``. That bounds the model's per-sample
    relative error for an image at one frequency, and for a volume the error of y by
    ``max_error * sum_f ||A_f x_f||``. Pass a dense frequency grid over a range to span
    every frequency in it.

    Built from the real matrix [cos, sin](2 pi (f - c) t), c the range's centre, whose
    left singular vectors R are real: U = diag(e^{i 2 pi c t}) R spans e^{i 2 pi f t}
    for f and its mirror 2c - f (the same singular values as P when the frequencies are
    symmetric about c, as on an even grid). Real R makes the normal operator's Toeplitz
    kernels real (:class:`SpectralNormal`).
    """
    check_positive("tol", tol)
    if max_error is not None:
        check_positive("max_error", max_error)
    check_finite("times", torch.as_tensor(times))
    uniq = torch.unique(torch.as_tensor(times).detach().float().reshape(-1).cpu())
    freqs = torch.as_tensor(frequencies_hz, dtype=torch.float64).reshape(-1).cpu()
    if freqs.numel() < 1:
        raise ValueError("frequencies_hz must hold at least one frequency, got none")
    lo, hi = float(freqs.min()), float(freqs.max())
    centre, t = (lo + hi) / 2, uniq.double()
    phase = 2 * math.pi * t[:, None] * (freqs - centre)[None, :]
    real, s, _ = torch.linalg.svd(torch.cat([phase.cos(), phase.sin()], 1), full_matrices=False)
    u = _phases(t, torch.tensor([centre], dtype=torch.float64)) * real  # (n_t, n_sv)
    probe = _phases(t, torch.linspace(lo, hi, 4 * freqs.numel() - 3, dtype=torch.float64))
    if max_error is None:
        keep = int((s > tol * s[0]).sum())
        error = _truncation_errors(u, probe, keep)[keep]
    else:
        errors = _truncation_errors(u, probe, u.shape[1], max_error)
        keep, error = len(errors) - 1, errors[-1]
    device = torch.as_tensor(times).device
    return TemporalBasis(uniq.to(device), u[:, :keep].to(device), freqs.to(device), s, error)


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
    operator NUFFT^H diag(v) NUFFT. The basis makes conj(U_l) U_l' real (see
    :func:`temporal_basis`), so the kernels are real and, at every point of the
    (2 ny, 2 nx) grid, one real symmetric (L x L) matrix. Per application: L C
    zero-padded FFTs, one (L x L) @ (L x 2C) real product per grid point, L C cropped
    inverse FFTs.

    The L^2 kernels are built from Q ~ 2 L point-spread functions: the products
    U_l(t) U_l'(t) span few functions of t, so an SVD of the (L^2, n_t) product matrix
    truncated at ``tol`` gives them with Q adjoint NUFFTs instead of L^2.

    The grid arrays (2 ny, 2 nx, L, C) live in a per-thread workspace reused across
    applications (and operators of the same size): allocating them anew costs as much
    as the FFTs on CPU (fresh pages for every large allocation).
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
        self.maps = enc.maps.permute(1, 2, 0).contiguous()  # (ny, nx, C)
        rank = enc.ishape[0]
        u = enc.basis_u.to(torch.complex128)  # (n_t, L)
        products = (u.conj()[:, :, None] * u[:, None, :]).reshape(u.shape[0], -1).T
        if float(products.imag.abs().max()) > 1e-9 * float(products.abs().max()):
            raise ValueError("basis rows must be a phase times a real vector (temporal_basis)")
        coef, sv, vh = torch.linalg.svd(products.real, full_matrices=False)  # (L^2, n_t)
        keep = int((sv > tol * sv[0]).sum())
        mix = (coef[:, :keep] * sv[:keep]).float()  # (L^2, Q)
        funcs = vh[:keep].float()[:, enc.time_index]  # (Q, *S)
        kernels = toeplitz_kernel(enc.nufft, weights.to(enc.device).float() * funcs)  # real
        self.grid = tuple(kernels.shape[-2:])
        mixed = mix @ kernels.reshape(keep, -1)  # (L^2, G)
        # grid-point-major (G, L, L): one batched small matmul per application
        self.kernels = mixed.T.reshape(-1, rank, rank).contiguous()
        self.n_psf = keep

    def _apply(self, z):
        return _SelfAdjoint.apply(z, self)

    def quadratic(self, z: torch.Tensor) -> float:
        """Re <z, N z> without the inverse FFTs: by Parseval, (1/G) sum over the grid of
        s^H K s with s the zero-padded spectra of S_c z (about half the cost of ``N z``)."""
        spec, mixed = self._kernel_product(z.detach())
        points = spec[..., 0, 0].numel()
        a = torch.view_as_real(spec).view(points, 1, -1)
        b = torch.view_as_real(mixed).view(points, -1, 1)
        # float32 dot products per grid point (2 L C terms), summed in float64: converting
        # the arrays to float64 cost more than the FFTs (fresh pages), and one float32 dot
        # over the whole grid lost ~5e-7 of a value that cancels to the held-out residual
        return float(torch.bmm(a, b).double().sum()) / points

    def _kernel_product(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Workspace arrays (gy, gx, L, C): s = FFT(pad(S_c z_l)) and K s at every grid point."""
        (ny, nx), (gy, gx) = z.shape[-2:], self.grid
        rank, coils = z.shape[0], self.maps.shape[-1]
        spec, mixed = _workspace((gy, gx, rank, coils), self.device)
        spec[:ny, nx:].zero_()
        spec[ny:].zero_()
        torch.mul(z.permute(1, 2, 0)[..., None], self.maps[:, :, None, :], out=spec[:ny, :nx])
        _fft_(spec[:ny], 1)  # rows beyond ny are zero: transform only the first ny
        _fft_(spec, 0)
        real = (gy * gx, rank, 2 * coils)
        spec_real, mixed_real = torch.view_as_real(spec).view(real), torch.view_as_real(mixed)
        torch.bmm(self.kernels, spec_real, out=mixed_real.view(real))
        return spec, mixed

    def _matvec(self, z: torch.Tensor) -> torch.Tensor:
        ny, nx = z.shape[-2:]
        _, mixed = self._kernel_product(z)
        _fft_(mixed, 0, inverse=True)
        _fft_(mixed[:ny], 1, inverse=True)  # only the first ny rows are kept
        out = (mixed[:ny, :nx] * self.maps.conj()[:, :, None, :]).sum(-1)  # (ny, nx, L)
        return out.permute(2, 0, 1).contiguous()

    def _adjoint(self):
        return self


class _SelfAdjoint(torch.autograd.Function):
    """N z for a self-adjoint N, differentiable: the gradient is N applied to the grad."""

    @staticmethod
    def forward(ctx, z, op):
        ctx.op = op
        return op._matvec(z.detach())

    @staticmethod
    def backward(ctx, grad):
        return ctx.op._matvec(grad), None


_WORKSPACE = threading.local()


def _workspace(shape: tuple[int, ...], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Two complex64 arrays of ``shape`` on ``device``, reused by later calls of this thread."""
    cached = getattr(_WORKSPACE, "arrays", None)
    if cached is None or cached[0].shape != shape or cached[0].device != device:
        cached = tuple(torch.empty(shape, dtype=torch.complex64, device=device) for _ in "ab")
        _WORKSPACE.arrays = cached
    return cached


def _fft_(x: torch.Tensor, dim: int, inverse: bool = False) -> None:
    """In-place (inverse) FFT of ``x`` along ``dim`` (default normalisation).

    On CPU through scipy.fft: along the leading axes of these (gy, gx, L, C) arrays it
    runs in place and about twice as fast as torch.fft here (benchmarks/spectral_speed.py).
    """
    if x.device.type != "cpu":
        x.copy_((torch.fft.ifft if inverse else torch.fft.fft)(x, dim=dim))
        return
    arr = x.numpy()
    fn = scipy.fft.ifft if inverse else scipy.fft.fft
    out = fn(arr, axis=dim, overwrite_x=True, workers=torch.get_num_threads())
    if not np.shares_memory(out, arr):
        arr[...] = out


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
        phase = 2 * math.pi * freqs.reshape(-1, *([1] * times.ndim)) * times.to(freqs)
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
