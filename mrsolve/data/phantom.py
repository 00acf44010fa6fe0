"""Water/fat phantoms with a field map, coil maps, rigid motion and dynamic frames.

Pixel coordinates follow ``mrsolve.propeller.dft``: x = column - nx // 2, y = row - ny // 2.
Shapes are normalized to u = x / (nx / 2), v = y / (ny / 2) in [-1, 1).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import torch

from mrsolve.propeller.coils import birdcage_maps
from mrsolve.solvers.validation import check_positive, resolve_device


@dataclass
class Phantom:
    """A water/fat object in the scanner frame.

    Attributes:
        water: (ny, nx) complex64 water density, or (T, ny, nx) for T dynamic frames.
        fat: fat density, same shape as ``water``.
        field_map_hz: (ny, nx) float32 off-resonance psi(r) in Hz (moves with the tissue).
        mask: (ny, nx) bool object support.
        coil_maps: (C, ny, nx) complex64 sensitivities (fixed in the scanner), or None.
        rotation_deg: (B,) per-blade rotation of the object about the image centre
            (counter-clockwise in (x, y)), or None for no motion.
        shift_px: (B, 2) per-blade translation (dx, dy) in pixels, applied after the
            rotation: r' = R(rotation) r + shift. None for no motion.
    """

    water: torch.Tensor
    fat: torch.Tensor
    field_map_hz: torch.Tensor
    mask: torch.Tensor
    coil_maps: torch.Tensor | None = None
    rotation_deg: torch.Tensor | None = None
    shift_px: torch.Tensor | None = None

    def __post_init__(self) -> None:
        if self.water.ndim not in (2, 3):
            raise ValueError(
                f"water must have shape (ny, nx) or (T, ny, nx), got {tuple(self.water.shape)}"
            )
        if self.fat.shape != self.water.shape:
            raise ValueError(
                f"fat must have the shape of water {tuple(self.water.shape)}, got {tuple(self.fat.shape)}"
            )
        shape = self.image_shape
        for name in ("field_map_hz", "mask"):
            value = getattr(self, name)
            if tuple(value.shape) != shape:
                raise ValueError(f"{name} must have shape {shape}, got {tuple(value.shape)}")
        if self.coil_maps is not None and (
            self.coil_maps.ndim != 3 or tuple(self.coil_maps.shape[1:]) != shape
        ):
            raise ValueError(
                f"coil_maps must have shape (C, {shape[0]}, {shape[1]}), got {tuple(self.coil_maps.shape)}"
            )
        if (self.rotation_deg is None) != (self.shift_px is None):
            raise ValueError("rotation_deg and shift_px must be given together (or both None)")
        if self.rotation_deg is not None:
            n = self.rotation_deg.shape[0]
            if self.rotation_deg.ndim != 1 or tuple(self.shift_px.shape) != (n, 2):
                raise ValueError(
                    f"rotation_deg must be (B,) and shift_px (B, 2), got "
                    f"{tuple(self.rotation_deg.shape)} and {tuple(self.shift_px.shape)}"
                )

    @property
    def image_shape(self) -> tuple[int, int]:
        return (int(self.water.shape[-2]), int(self.water.shape[-1]))

    @property
    def n_frames(self) -> int:
        return 1 if self.water.ndim == 2 else int(self.water.shape[0])

    @property
    def has_motion(self) -> bool:
        return self.rotation_deg is not None

    def frame(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(water, fat) of frame ``t`` (the static object for a static phantom)."""
        if self.water.ndim == 2:
            return self.water, self.fat
        return self.water[t], self.fat[t]

    def image(self) -> torch.Tensor:
        """Echo-time-0 combined object water + fat, (ny, nx) or (T, ny, nx)."""
        return self.water + self.fat

    def fat_fraction(self) -> torch.Tensor:
        """|F| / (|W| + |F|) inside the mask, 0 outside; float32, shape of ``water``."""
        w, f = self.water.abs(), self.fat.abs()
        total = w + f
        ff = torch.where(total > 0, f / total.clamp_min(1e-12), torch.zeros_like(total))
        return (ff * self.mask).float()


def _grid(image_shape: Sequence[int], device) -> tuple[torch.Tensor, torch.Tensor]:
    ny, nx = image_shape
    v = (torch.arange(ny, dtype=torch.float64, device=device) - ny // 2) / (ny / 2)
    u = (torch.arange(nx, dtype=torch.float64, device=device) - nx // 2) / (nx / 2)
    return torch.meshgrid(v, u, indexing="ij")[::-1]


def _ellipse(u, v, center, axes, angle_deg=0.0) -> torch.Tensor:
    a = math.radians(angle_deg)
    du, dv = u - center[0], v - center[1]
    ru = du * math.cos(a) + dv * math.sin(a)
    rv = -du * math.sin(a) + dv * math.cos(a)
    return (ru / axes[0]) ** 2 + (rv / axes[1]) ** 2 <= 1


def _uniform(gen: torch.Generator, low: float, high: float, n: int = 1) -> list[float]:
    return (low + (high - low) * torch.rand(n, generator=gen, dtype=torch.float64)).tolist()


def water_fat_object(
    image_shape: Sequence[int], seed: int = 0, device: str | torch.device = "cpu"
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """An abdomen-like water/fat object: (water, fat) complex64 and mask bool, (ny, nx).

    A body ellipse with a subcutaneous fat ring (fat fraction ~0.9), muscle (~0.05), a
    liver-like organ (0.02-0.25), a water-only organ, a marrow-like disc (~0.5) and four
    vials with fat fractions spread over [0, 1]. ``seed`` jitters sizes, positions and
    fractions.
    """
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    u, v = _grid(image_shape, dev)
    water = torch.zeros_like(u)
    fat = torch.zeros_like(u)

    def paint(region, density, fat_fraction):
        water[region] = density * (1 - fat_fraction)
        fat[region] = density * fat_fraction

    sx, sy = _uniform(gen, 0.95, 1.05, 2)
    body = _ellipse(u, v, (0, 0), (0.88 * sx, 0.68 * sy))
    inner = _ellipse(u, v, (0, 0), (0.76 * sx, 0.56 * sy))
    paint(body, 0.9, _uniform(gen, 0.85, 0.95)[0])
    paint(inner, 0.6, 0.05)
    ju, jv = _uniform(gen, -0.04, 0.04, 2)
    paint(
        _ellipse(u, v, (-0.3 + ju, -0.12 + jv), (0.3, 0.2), 20.0), 0.8, _uniform(gen, 0.02, 0.25)[0]
    )
    paint(_ellipse(u, v, (0.38 - ju, -0.15 + jv), (0.12, 0.18), -15.0), 0.95, 0.0)
    paint(_ellipse(u, v, (0.0, 0.36), (0.11, 0.09)), 0.8, _uniform(gen, 0.4, 0.6)[0])
    fractions = torch.tensor([0.0, 0.3, 0.6, 0.9], dtype=torch.float64)
    fractions = (fractions + torch.tensor(_uniform(gen, 0.0, 0.08, 4))).clamp(0, 1)
    fractions = fractions[torch.randperm(4, generator=gen)]
    for i, ff in enumerate(fractions.tolist()):
        paint(_ellipse(u, v, (-0.42 + 0.28 * i, 0.12), (0.075, 0.075)), 1.0, ff)
    return water.to(torch.complex64), fat.to(torch.complex64), body


def field_map(
    image_shape: Sequence[int],
    max_offres_hz: float,
    mask: torch.Tensor | None = None,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Smooth field map (ny, nx) float32 in Hz: quadratic background + a Gaussian bump.

    The map has zero mean over ``mask`` (as after shimming) and max |psi| over ``mask``
    (the whole image when None) equal to ``max_offres_hz``.
    """
    max_hz = check_positive("max_offres_hz", max_offres_hz, allow_zero=True)
    dev = resolve_device(device)
    gen = torch.Generator().manual_seed(int(seed))
    u, v = _grid(image_shape, dev)
    c = torch.randn(5, generator=gen, dtype=torch.float64).tolist()
    background = c[0] * u + c[1] * v + c[2] * u * u + c[3] * v * v + c[4] * u * v
    cu, cv = _uniform(gen, -0.4, 0.4, 2)
    width = _uniform(gen, 0.08, 0.15)[0]
    sign = 1.0 if torch.rand(1, generator=gen).item() < 0.5 else -1.0
    bump = 3.0 * sign * torch.exp(-((u - cu) ** 2 + (v - cv) ** 2) / (2 * width**2))
    psi = background + bump
    region = torch.ones_like(psi, dtype=torch.bool) if mask is None else mask.to(dev).bool()
    psi = psi - psi[region].mean()
    peak = psi[region].abs().max()
    psi = psi * (max_hz / peak) if peak > 0 else torch.zeros_like(psi)
    return psi.float()


def random_rigid_motion(
    n_blades: int, max_rotation_deg: float, max_shift_px: float, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-blade rotation (B,) in degrees and shift (B, 2) in pixels, uniform in +-max."""
    check_positive("max_rotation_deg", max_rotation_deg, allow_zero=True)
    check_positive("max_shift_px", max_shift_px, allow_zero=True)
    gen = torch.Generator().manual_seed(int(seed))
    rot = (2 * torch.rand(n_blades, generator=gen) - 1) * max_rotation_deg
    shift = (2 * torch.rand(n_blades, 2, generator=gen) - 1) * max_shift_px
    return rot.float(), shift.float()


def dynamic_frames(
    water: torch.Tensor, fat: torch.Tensor, n_frames: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(T, ny, nx) water and fat: a water disc moves across the body and brightens.

    Frame t places a disc (radius 8% of the FOV) at u = -0.4 + 0.8 t / (T - 1) and
    v = -0.38 (plus a seeded jitter) with water density rising from 0.5 to 1.0.
    """
    if not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"n_frames must be a positive integer, got {n_frames!r}")
    gen = torch.Generator().manual_seed(int(seed))
    u, v = _grid(water.shape[-2:], water.device)
    jitter = _uniform(gen, -0.03, 0.03)[0]
    waters, fats = [], []
    for t in range(n_frames):
        s = t / (n_frames - 1) if n_frames > 1 else 0.0
        disc = _ellipse(u, v, (-0.4 + 0.8 * s, -0.38 + jitter), (0.08, 0.08))
        w, f = water.clone(), fat.clone()
        w[disc], f[disc] = 0.5 + 0.5 * s, 0.0
        waters.append(w)
        fats.append(f)
    return torch.stack(waters), torch.stack(fats)


def make_phantom(
    size: int = 128,
    n_coils: int = 8,
    max_offres_hz: float = 100.0,
    fat: bool = True,
    n_frames: int = 1,
    seed: int = 0,
    coil_radius: float = 1.5,
    device: str | torch.device = "cpu",
) -> Phantom:
    """A seeded abdomen-like water/fat phantom of ``size`` x ``size`` pixels.

    With ``fat=False`` the fat density is added to the water (same anatomy, no fat).
    ``n_frames > 1`` adds the moving, brightening disc of :func:`dynamic_frames`.
    """
    if not isinstance(size, int) or size < 8:
        raise ValueError(f"size must be an integer >= 8, got {size!r}")
    water, fat_img, mask = water_fat_object((size, size), seed, device)
    if not fat:
        water, fat_img = water + fat_img, torch.zeros_like(fat_img)
    if n_frames > 1:
        water, fat_img = dynamic_frames(water, fat_img, n_frames, seed)
    psi = field_map((size, size), max_offres_hz, mask, seed, device)
    coils = birdcage_maps(n_coils, (size, size), coil_radius, device=device)
    return Phantom(water, fat_img, psi, mask, coils)


def with_motion(phantom: Phantom, rotation_deg: torch.Tensor, shift_px: torch.Tensor) -> Phantom:
    """The same phantom with per-blade rigid motion (see :class:`Phantom`)."""
    return replace(
        phantom,
        rotation_deg=torch.as_tensor(rotation_deg, dtype=torch.float32),
        shift_px=torch.as_tensor(shift_px, dtype=torch.float32),
    )
