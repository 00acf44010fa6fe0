"""Regularizers of spectral volumes: TV in r, TV and l1 along f or t, smooth penalties.

The convex one comes as an approximate proximal map for FISTA (:class:`TVProx`: TV in r,
weighted TV along f or t, optional l1); the smooth ones (:func:`smooth_tv`,
:func:`smoothness`) return differentiable scalars for the torch optimizers of the learned
encodings and the water / fat head. Arrays are complex (or real)
(..., ny, nx); extra axes (frequency -3, time -4) are named by their dim.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from mrsolve.solvers.prox import soft_threshold
from mrsolve.solvers.validation import check_positive


def forward_difference(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x[i + 1] - x[i] along ``dim`` with a zero last entry (Neumann boundary)."""
    return torch.diff(x, dim=dim, append=x.narrow(dim, x.shape[dim] - 1, 1))


def forward_difference_adjoint(p: torch.Tensor, dim: int) -> torch.Tensor:
    """Adjoint of :func:`forward_difference` (a negative divergence)."""
    n = p.shape[dim]
    p = p.narrow(dim, 0, n - 1)
    zero = torch.zeros_like(p.narrow(dim, 0, 1))
    return torch.cat([zero, p], dim) - torch.cat([p, zero], dim)


def _directions(extra: Sequence[tuple[int, float]]) -> list[tuple[int, float]]:
    out = [(-1, 1.0), (-2, 1.0)]
    for dim, weight in extra:
        if dim >= -2:
            raise ValueError(f"extra TV axes must be dims < -2 (e.g. -3 for f), got {dim}")
        if check_positive("extra TV weight", weight, allow_zero=True) > 0:
            out.append((dim, float(weight)))
    return out


class TVProx:
    """Approximate prox of lam * TV(x): isotropic spatial TV + weighted TV along ``extra``.

    TV(x) = sum |(D_x x, D_y x)| + sum_(dim, w) w |D_dim x|, solved on the dual with the
    fast gradient projection of Beck & Teboulle (2009) for ``n_iter`` steps, warm-started
    from the previous call's dual (``dual``: one real (2, ...) real/imaginary array per
    direction, or (1, ...) for real input; save it to resume exactly). Written here
    because no kept library offers a complex, multi-axis TV prox in torch.

    Calling it as ``prox(v, lam, l1)`` also soft-thresholds by ``l1`` afterwards: the prox
    of lam TV + l1 ||.||_1, exact for real signals with anisotropic TV (Friedman et al.
    2007), a close approximation otherwise.
    """

    def __init__(self, extra: Sequence[tuple[int, float]] = (), n_iter: int = 20) -> None:
        if not isinstance(n_iter, int) or n_iter < 1:
            raise ValueError(f"n_iter must be a positive integer, got {n_iter!r}")
        self.dirs = _directions(extra)
        self.n_iter = n_iter
        self.dual: list[torch.Tensor] | None = None

    def __call__(self, v: torch.Tensor, lam: float, l1: float = 0.0) -> torch.Tensor:
        check_positive("lam", lam, allow_zero=True)
        check_positive("l1", l1, allow_zero=True)
        x = v if lam == 0 else self._solve(v, lam)
        return soft_threshold(x, l1) if l1 > 0 else x

    def state_dict(self) -> dict:
        """The warm-start dual (CPU copies), to resume exactly."""
        return {"dual": None if self.dual is None else [q.cpu().clone() for q in self.dual]}

    def load_state_dict(self, state: dict) -> None:
        self.dual = state["dual"]

    def _solve(self, v: torch.Tensor, lam: float) -> torch.Tensor:
        # Planar real arrays (parts, ...) updated in place: complex abs() and the
        # temporaries of the textbook form made this prox cost more than a NUFFT per call.
        dirs = self.dirs
        step = 1.0 / (lam * 4.0 * sum(w * w for _, w in dirs))
        vr = _planar(v)
        if self.dual is None or self.dual[0].shape != vr.shape:
            self.dual = [torch.zeros_like(vr) for _ in dirs]
        elif self.dual[0].device != vr.device:  # restored from a checkpoint
            self.dual = [q.to(vr.device) for q in self.dual]
        p = self.dual  # kept planar between calls: no conversions per call
        r = [q.clone() for q in p]
        g = [torch.empty_like(vr) for _ in dirs]
        x, norm = torch.empty_like(vr), torch.empty_like(vr[0])
        t = 1.0
        for _ in range(self.n_iter):
            _primal(x, vr, lam, r, dirs)
            for gd, rd, (d, w) in zip(g, r, dirs, strict=True):
                n = x.shape[d]
                torch.sub(x.narrow(d, 1, n - 1), x.narrow(d, 0, n - 1), out=gd.narrow(d, 0, n - 1))
                gd.narrow(d, n - 1, 1).zero_()
                gd.mul_(step * w).add_(rd)
            for group in (g[:2], *([gd] for gd in g[2:])):  # isotropic in (x, y)
                parts = [part for gd in group for part in gd]
                torch.mul(parts[0], parts[0], out=norm)
                for part in parts[1:]:
                    norm.addcmul_(part, part)
                norm.sqrt_().clamp_min_(1.0)
                for gd in group:
                    gd.div_(norm)
            t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
            c = (t - 1) / t_next
            for gd, pd, rd in zip(g, p, r, strict=True):
                torch.mul(gd, 1 + c, out=rd)
                rd.sub_(pd, alpha=c)
            p, g, t = g, p, t_next
        _primal(x, vr, lam, p, dirs)
        self.dual = p
        return _unplanar(x, v)


def _planar(v: torch.Tensor) -> torch.Tensor:
    """(2, ...) real and imaginary parts of a complex tensor, (1, ...) copy of a real one."""
    return torch.stack([v.real, v.imag]) if v.is_complex() else v[None].clone()


def _unplanar(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return torch.complex(x[0], x[1]) if like.is_complex() else x[0]


def _primal(out, v, lam, duals, dirs) -> None:
    """out = v - lam sum_d w_d D_d^T q_d (D^T of :func:`forward_difference_adjoint`), in place."""
    out.copy_(v)
    for q, (d, w) in zip(duals, dirs, strict=True):
        n = q.shape[d]
        head = q.narrow(d, 0, n - 1)
        out.narrow(d, 0, n - 1).add_(head, alpha=lam * w)
        out.narrow(d, 1, n - 1).sub_(head, alpha=lam * w)


def smooth_tv(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """Differentiable isotropic TV over the last two axes: sum sqrt(|Dx|^2 + |Dy|^2 + eps^2) - eps."""
    check_positive("eps", eps)
    gx, gy = forward_difference(x, -1), forward_difference(x, -2)
    mag = gx.abs().square() + gy.abs().square()
    return ((mag + eps * eps).sqrt() - eps).sum()


def smoothness(x: torch.Tensor, dims: Sequence[int] = (-1, -2)) -> torch.Tensor:
    """Quadratic roughness sum |D_dim x|^2 over ``dims`` (e.g. a field map, or time)."""
    return sum(forward_difference(x, d).abs().square().sum() for d in dims)


#: the best TV weight on the development set's noise sweep grows as noise_std^1.5
#: (between the linear rule of TV denoising and the squared one of a MAP estimate with
#: a fixed prior; docs/spectral_design.md)
NOISE_POWER = 1.5


def noise_weight(weight: float, per_noise: float, noise_std: float) -> float:
    """hypot(weight, per_noise * noise_std ** NOISE_POWER): a regularization weight that
    keeps ``weight`` on clean data and grows with the measured noise (``noise_std`` in
    scaled image units, the gridding image's 99th-percentile level being 1)."""
    check_positive("noise_std", noise_std, allow_zero=True)
    return math.hypot(weight, per_noise * noise_std**NOISE_POWER)
