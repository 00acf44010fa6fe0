"""Where a slice sits in the scanner: its plane, centre and spacing in patient coordinates.

Patient coordinates are DICOM's (and ISMRMRD's / MRD's) LPS, in millimetres: +x towards
the patient's left, +y posterior, +z head. Images are stored (ny, nx): column index i
grows along ``x_dir``, row index j along ``y_dir``; the slice centre ``position_mm`` is
pixel (nx // 2, ny // 2) (methods/propeller.md: x = column - N/2), the convention of
centred FFT images and of ISMRMRD's ``position`` ("centre of the excited volume").

PROPELLER blades rotate the readout inside the plane: a blade at readout angle theta
(in (kx, ky), see ``Scan.angles``) has read direction ``cos(theta) x_dir + sin(theta)
y_dir`` and phase direction ``-sin(theta) x_dir + cos(theta) y_dir``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["SliceGeometry", "blade_directions", "slice_affine", "stack_affine"]

_UNIT_TOL = 1e-3


def _unit(name: str, value) -> np.ndarray:
    v = np.asarray(value, dtype=np.float64).reshape(-1)
    if v.shape != (3,) or not np.isfinite(v).all():
        raise ValueError(f"{name} must be 3 finite numbers, got {value!r}")
    if abs(np.linalg.norm(v) - 1) > _UNIT_TOL:
        raise ValueError(
            f"{name} must be a unit vector, got {v.tolist()} (norm {np.linalg.norm(v):.4g})"
        )
    return v / np.linalg.norm(v)


@dataclass(frozen=True)
class SliceGeometry:
    """The plane of one 2D slice in LPS patient coordinates (mm).

    Attributes:
        position_mm: (3,) centre of the slice (pixel (nx // 2, ny // 2)).
        x_dir: (3,) unit direction of increasing column index.
        y_dir: (3,) unit direction of increasing row index (orthogonal to ``x_dir``).
        slice_thickness_mm: excited slice thickness.
    """

    position_mm: tuple[float, float, float] = (0.0, 0.0, 0.0)
    x_dir: tuple[float, float, float] = (1.0, 0.0, 0.0)
    y_dir: tuple[float, float, float] = (0.0, 1.0, 0.0)
    slice_thickness_mm: float = 5.0

    def __post_init__(self) -> None:
        position = np.asarray(self.position_mm, dtype=np.float64).reshape(-1)
        if position.shape != (3,) or not np.isfinite(position).all():
            raise ValueError(f"position_mm must be 3 finite numbers, got {self.position_mm!r}")
        x, y = _unit("x_dir", self.x_dir), _unit("y_dir", self.y_dir)
        if abs(float(x @ y)) > _UNIT_TOL:
            raise ValueError(
                f"x_dir and y_dir must be orthogonal, got a dot product of {x @ y:.4g}"
            )
        if not (np.isfinite(self.slice_thickness_mm) and self.slice_thickness_mm > 0):
            raise ValueError(f"slice_thickness_mm must be > 0, got {self.slice_thickness_mm!r}")
        object.__setattr__(self, "position_mm", tuple(float(v) for v in position))
        object.__setattr__(self, "x_dir", tuple(float(v) for v in x))
        object.__setattr__(self, "y_dir", tuple(float(v) for v in y))
        object.__setattr__(self, "slice_thickness_mm", float(self.slice_thickness_mm))

    @property
    def normal(self) -> np.ndarray:
        """(3,) slice normal x_dir x y_dir (ISMRMRD's slice_dir = read_dir x phase_dir)."""
        return np.cross(self.x_dir, self.y_dir)


def slice_affine(
    geometry: SliceGeometry, image_shape: tuple[int, int], fov_mm: tuple[float, float]
) -> np.ndarray:
    """(4, 4) affine mapping voxel (column i, row j, k, 1) to LPS mm for an (ny, nx) image
    covering ``fov_mm`` = (fov_y, fov_x); the third column is the normal times the thickness."""
    ny, nx = image_shape
    dy, dx = fov_mm[0] / ny, fov_mm[1] / nx
    x, y = np.asarray(geometry.x_dir), np.asarray(geometry.y_dir)
    affine = np.eye(4)
    affine[:3, 0] = x * dx
    affine[:3, 1] = y * dy
    affine[:3, 2] = geometry.normal * geometry.slice_thickness_mm
    affine[:3, 3] = np.asarray(geometry.position_mm) - (nx // 2) * dx * x - (ny // 2) * dy * y
    return affine


def blade_directions(geometry: SliceGeometry, angles) -> tuple[np.ndarray, np.ndarray]:
    """Read and phase directions (B, 3) of blades at readout ``angles`` (B,) radians."""
    theta = np.asarray(angles, dtype=np.float64).reshape(-1, 1)
    x, y = np.asarray(geometry.x_dir), np.asarray(geometry.y_dir)
    return np.cos(theta) * x + np.sin(theta) * y, -np.sin(theta) * x + np.cos(theta) * y


def stack_affine(affines: np.ndarray, tol_mm: float = 1e-3) -> np.ndarray | None:
    """One (4, 4) affine for slices (S, 4, 4) stacked on the third voxel axis, or None when
    they are not parallel, equally spaced, in-plane aligned copies of one another.

    The third column becomes the step between consecutive slice origins (its sign follows
    the slice order); a single slice keeps its own (normal x thickness) column.
    """
    affines = np.asarray(affines, dtype=np.float64)
    if affines.ndim == 2 or affines.shape[0] == 1:
        return affines.reshape(4, 4).copy()
    first = affines[0]
    if not np.allclose(affines[:, :3, :2], first[:3, :2], atol=1e-6):
        return None
    steps = np.diff(affines[:, :3, 3], axis=0)
    step = steps.mean(axis=0)
    if np.linalg.norm(step) < tol_mm or np.abs(steps - step).max() > tol_mm:
        return None
    out = first.copy()
    out[:3, 2] = step
    return out
