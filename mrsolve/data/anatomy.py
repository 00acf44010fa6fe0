"""Random water/fat anatomies, field maps and loop-coil sensitivities on a fine grid.

Independent of ``mrsolve.data.phantom`` (whose phantoms the reconstruction was tuned
on): used by :mod:`mrsolve.data.scan_space` to draw benchmark scans. Every map is an
(n, n) numpy array over the field of view; position is the FOV fraction
u = (column - n/2) / n, v = (row - n/2) / n in [-0.5, 0.5), so the same draw at two
grid sizes describes the same object.

Two families:

- "ellipses": a body with a subcutaneous fat layer, organs of partial fat fraction
  0.05-0.6, marrow-like regions (fat fraction 0.6-0.9 in a signal-free cortical rim)
  and air cavities.
- "brain": a slice of the real MR volume bundled with nibabel's test data
  (``example4d.nii.gz``, an EPI brain), with skull (signal-free), diploic marrow,
  subcutaneous scalp fat and skin around it, and one lesion of partial fat fraction.

Densities are textured (smooth and fine random modulation), not flat. The field map
sums a smooth polynomial, localized susceptibility bumps and sharp steps at
tissue/air boundaries, scaled to a maximum |psi| inside the object.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from mrsolve.solvers.validation import check_choice, check_int, check_positive

ANATOMIES = ("ellipses", "brain")
BRAIN_FILE = "example4d.nii.gz"  # in nibabel/tests/data, shipped in the wheel


@dataclass
class Anatomy:
    """Water / fat densities (real, >= 0), field map (Hz) and object mask on an (n, n) grid.

    ``air`` marks air cavities inside the body (zero density, sources of susceptibility).
    """

    water: np.ndarray
    fat: np.ndarray
    field_map_hz: np.ndarray
    mask: np.ndarray
    air: np.ndarray
    kind: str


def grid(n: int) -> tuple[np.ndarray, np.ndarray]:
    """FOV-fraction coordinates (u, v), each (n, n): u along columns, v along rows."""
    c = (np.arange(n) - n // 2) / n
    v, u = np.meshgrid(c, c, indexing="ij")
    return u, v


def ellipse(u, v, centre, axes, angle) -> np.ndarray:
    """Boolean mask of an ellipse (centre (u, v), semi-axes (a, b), rotation in radians)."""
    cu, cv = np.cos(angle), np.sin(angle)
    du, dv = u - centre[0], v - centre[1]
    x, y = du * cu + dv * cv, -du * cv + dv * cu
    return (x / axes[0]) ** 2 + (y / axes[1]) ** 2 <= 1.0


def texture(n: int, rng: np.random.Generator, amplitude: float = 0.15) -> np.ndarray:
    """Multiplicative texture 1 + smooth (~FOV/10) + fine (~FOV/60) random modulation, >= 0.2."""
    out = np.ones((n, n))
    for scale, share in ((n / 10, 0.7), (n / 60, 0.3)):
        field = ndimage.gaussian_filter(rng.standard_normal((n, n)), max(scale, 0.5), mode="wrap")
        out += amplitude * share * field / max(field.std(), 1e-12)
    return np.clip(out, 0.2, None)


def _body_layers(
    n: int, inside: np.ndarray, rng: np.random.Generator, layers: list[tuple[float, float, float]]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rings outside ``inside``: layers (thickness as FOV fraction, density, fat fraction).

    Returns water, fat and the mask of everything (inside plus rings)."""
    distance = ndimage.distance_transform_edt(~inside) / n
    water, fat = np.zeros((n, n)), np.zeros((n, n))
    start = 0.0
    for thickness, density, ff in layers:
        ring = (distance > start) & (distance <= start + thickness)
        water[ring], fat[ring] = density * (1 - ff), density * ff
        start += thickness
    return water, fat, inside | (distance <= start)


def ellipse_anatomy(n: int, rng: np.random.Generator) -> tuple:
    """Water, fat, mask, air of a body of ellipses (see the module docstring)."""
    u, v = grid(n)
    centre = rng.uniform(-0.03, 0.03, 2)
    axes = rng.uniform(0.27, 0.4, 2)
    angle = rng.uniform(0, np.pi)
    fat_layer = rng.uniform(0.012, 0.045)
    skin = 0.006
    inner_axes = axes - fat_layer - skin
    inner = ellipse(u, v, centre, inner_axes, angle)
    base = rng.uniform(0.5, 0.9)
    water, fat = np.where(inner, base, 0.0), np.zeros((n, n))
    for _ in range(rng.integers(2, 6)):  # organs of partial fat fraction
        pos = centre + rng.uniform(-0.6, 0.6, 2) * inner_axes
        organ = ellipse(u, v, pos, rng.uniform(0.04, 0.14, 2), rng.uniform(0, np.pi)) & inner
        density, ff = rng.uniform(0.4, 1.0), rng.uniform(0.05, 0.6)
        water[organ], fat[organ] = density * (1 - ff), density * ff
    for _ in range(rng.integers(1, 3)):  # marrow inside a signal-free cortical rim
        pos = centre + rng.uniform(-0.55, 0.55, 2) * inner_axes
        ax, rot = rng.uniform(0.025, 0.06, 2), rng.uniform(0, np.pi)
        bone = ellipse(u, v, pos, ax + 0.008, rot) & inner
        marrow = ellipse(u, v, pos, ax, rot) & inner
        ff = rng.uniform(0.6, 0.9)
        water[bone], fat[bone] = 0.0, 0.0
        water[marrow], fat[marrow] = 0.8 * (1 - ff), 0.8 * ff
    air = np.zeros((n, n), bool)
    for _ in range(rng.integers(0, 3)):  # gas / sinus
        pos = centre + rng.uniform(-0.5, 0.5, 2) * inner_axes
        air |= ellipse(u, v, pos, rng.uniform(0.015, 0.05, 2), rng.uniform(0, np.pi)) & inner
    water[air], fat[air] = 0.0, 0.0
    layers = [(fat_layer, rng.uniform(0.7, 1.0), rng.uniform(0.85, 0.95)), (skin, 0.6, 0.0)]
    w_out, f_out, mask = _body_layers(n, inner, rng, layers)
    return water + w_out, fat + f_out, mask & ~air, air


def _brain_slice(rng: np.random.Generator) -> np.ndarray:
    """One axial slice (normalized magnitude) of nibabel's bundled EPI brain volume."""
    import nibabel  # a benchmark/test dependency only; the library itself does not need it

    path = os.path.join(os.path.dirname(nibabel.__file__), "tests", "data", BRAIN_FILE)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"nibabel's bundled test image {path!r} is missing")
    volume = np.asanyarray(nibabel.load(path).dataobj)[..., 0].astype(np.float64)
    z = int(rng.integers(6, volume.shape[2] - 5))
    image = volume[:, :, z].T[::-1]  # rows = anterior-posterior, head up
    return image / np.percentile(image[image > 0], 99)


def brain_anatomy(n: int, rng: np.random.Generator) -> tuple:
    """Water, fat, mask, air of a real brain slice wrapped in skull, marrow, scalp fat, skin."""
    image = _brain_slice(rng)
    u, v = grid(n)
    scale = rng.uniform(0.85, 1.0) / max(image.shape)  # FOV fraction per source pixel
    angle = rng.uniform(-0.4, 0.4)
    cu, cv = np.cos(angle), np.sin(angle)
    # source pixel coordinates of every target position (rotation about the centre)
    x = (u * cu + v * cv) / scale + image.shape[1] / 2
    y = (-u * cv + v * cu) / scale + image.shape[0] / 2
    brain = np.clip(ndimage.map_coordinates(image, [y, x], order=3, cval=0.0), 0, None)
    inside = ndimage.binary_fill_holes(ndimage.gaussian_filter(brain, 1.0) > 0.12)
    labels, count = ndimage.label(inside)
    if count > 1:  # keep the largest piece
        inside = labels == 1 + np.argmax(ndimage.sum(inside, labels, range(1, count + 1)))
    water, fat = np.where(inside, brain, 0.0), np.zeros((n, n))
    lesion = ellipse(u, v, rng.uniform(-0.1, 0.1, 2), rng.uniform(0.03, 0.07, 2), 0.0) & inside
    ff = rng.uniform(0.05, 0.6)
    water[lesion], fat[lesion] = water[lesion] * (1 - ff), water[lesion] * ff
    layers = [
        (rng.uniform(0.005, 0.01), 0.0, 0.0),  # inner table of the skull
        (rng.uniform(0.008, 0.02), 0.6, rng.uniform(0.6, 0.85)),  # diploic marrow
        (0.006, 0.0, 0.0),  # outer table
        (rng.uniform(0.01, 0.03), rng.uniform(0.7, 1.0), rng.uniform(0.85, 0.95)),  # scalp fat
        (0.006, 0.7, 0.0),  # skin
    ]
    w_out, f_out, mask = _body_layers(n, inside, rng, layers)
    water, fat = water + w_out, fat + f_out
    mask &= (water + fat) > 0  # the skull's signal-free tables are not object
    return water, fat, mask | inside, np.zeros((n, n), bool)


def field_map(
    mask: np.ndarray, air: np.ndarray, max_offres_hz: float, rng: np.random.Generator
) -> np.ndarray:
    """Field map (n, n) in Hz: polynomial + susceptibility bumps + steps, max |psi| in mask.

    Bumps sit at air cavities and on the object's edge (where susceptibility differs);
    steps are constant offsets over random regions, sharp at tissue/air-like boundaries.
    """
    check_positive("max_offres_hz", max_offres_hz, allow_zero=True)
    n = mask.shape[0]
    u, v = grid(n)
    degree = int(rng.integers(1, 4))
    psi = sum(
        rng.standard_normal() * (2 * u) ** i * (2 * v) ** j
        for i in range(degree + 1)
        for j in range(degree + 1 - i)
    )
    edge = mask & ~ndimage.binary_erosion(mask, iterations=2)
    sources = [np.argwhere(air)] if air.any() else []
    sources.append(np.argwhere(edge) if edge.any() else np.argwhere(mask))
    weight = rng.uniform(0.3, 1.0)
    for _ in range(rng.integers(1, 4)):
        points = sources[int(rng.integers(len(sources)))]
        row, col = points[rng.integers(len(points))]
        width = rng.uniform(0.02, 0.08)
        bump = np.exp(-((u - u[row, col]) ** 2 + (v - v[row, col]) ** 2) / (2 * width**2))
        psi = psi + weight * rng.choice([-1.0, 1.0]) * rng.uniform(1.0, 2.5) * bump
    for _ in range(rng.integers(0, 3)):
        region = ellipse(u, v, rng.uniform(-0.25, 0.25, 2), rng.uniform(0.05, 0.2, 2), 0.3)
        psi = psi + rng.choice([-1.0, 1.0]) * rng.uniform(0.3, 0.8) * region
    peak = np.abs(psi[mask]).max() if mask.any() else 0.0
    return psi * (max_offres_hz / peak) if peak > 0 else np.zeros((n, n))


def loop_coils(n: int, n_coils: int, rng: np.random.Generator) -> np.ndarray:
    """Sensitivities (C, n, n) complex128 of surface loops at random positions around the object.

    Each loop sits at a random angle and distance (0.45-0.6 FOV from the centre, at a
    height 0.2-0.4 FOV above the slice (loop radius)): magnitude ~ (d^2 + h^2)^-1.5, phase a random
    offset plus a smooth random linear and quadratic term. Normalized to RSS 1 at every
    pixel, as after a scanner's prescan normalization (a body-coil reference): the truth
    then carries no receive shading, which no coil-map estimate could remove.
    """
    check_int("n_coils", n_coils)
    u, v = grid(n)
    angles = 2 * np.pi * (np.arange(n_coils) + rng.uniform(-0.35, 0.35, n_coils)) / n_coils
    angles += rng.uniform(0, 2 * np.pi)
    maps = np.empty((n_coils, n, n), np.complex128)
    for c, a in enumerate(angles):
        r, h = rng.uniform(0.45, 0.6), rng.uniform(0.2, 0.4)
        pu, pv = r * np.cos(a), r * np.sin(a)
        d2 = (u - pu) ** 2 + (v - pv) ** 2
        g = rng.uniform(-0.5, 0.5, 2)
        phase = (
            rng.uniform(0, 2 * np.pi) + 2 * np.pi * (g[0] * u + g[1] * v) + rng.uniform(-2, 2) * d2
        )
        maps[c] = h**3 / (d2 + h**2) ** 1.5 * np.exp(1j * phase)
    return maps / np.sqrt((np.abs(maps) ** 2).sum(0))


def draw_anatomy(kind: str, n: int, max_offres_hz: float, rng: np.random.Generator) -> Anatomy:
    """A textured anatomy of ``kind`` ("ellipses" or "brain") on an (n, n) grid with its field map."""
    check_choice("kind", kind, ANATOMIES)
    check_int("n", n, minimum=16)
    water, fat, mask, air = (ellipse_anatomy if kind == "ellipses" else brain_anatomy)(n, rng)
    water = water * texture(n, rng) * mask
    fat = fat * texture(n, rng) * mask
    psi = field_map(mask, air, max_offres_hz, rng)
    return Anatomy(water, fat, psi, mask, air, kind)
