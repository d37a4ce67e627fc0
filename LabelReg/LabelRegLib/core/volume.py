"""The volume type every part of LabelReg shares, and its geometry helpers.

A :class:`Volume` is an array indexed ``[k, j, i]`` (slowest axis first, as
``slicer.util.arrayFromVolume`` and SimpleITK return it) plus a 4x4 IJK->RAS
matrix in millimetres. A vector-valued volume (a displacement field) has the
components on a trailing axis: ``[k, j, i, c]``.

File formats (LPS, ``[i, j, k]`` orders) are converted in :mod:`LabelRegLib.core.io`
only; nothing else in the engine knows about them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .errors import InputError


def make_ijk_to_ras(spacing, origin=(0.0, 0.0, 0.0), direction=None) -> np.ndarray:
    """Build an IJK->RAS matrix from spacing (mm, i/j/k order), origin (RAS mm)
    and a 3x3 direction matrix whose columns are the RAS unit vectors of i, j, k."""
    direction = np.eye(3) if direction is None else np.asarray(direction, dtype=float)
    matrix = np.eye(4)
    matrix[:3, :3] = direction @ np.diag(np.asarray(spacing, dtype=float))
    matrix[:3, 3] = np.asarray(origin, dtype=float)
    return matrix


@dataclass
class Volume:
    """A scalar ``[k, j, i]`` or vector ``[k, j, i, c]`` array with its IJK->RAS matrix (mm)."""

    array: np.ndarray
    ijk_to_ras: np.ndarray = field(default_factory=lambda: np.eye(4))
    name: str = ""

    def __post_init__(self):
        self.array = np.asarray(self.array)
        self.ijk_to_ras = np.asarray(self.ijk_to_ras, dtype=float).reshape(4, 4)
        if self.array.ndim not in (3, 4):
            raise InputError(self.name or "volume", f"expected a 3D array [k, j, i], got shape {self.array.shape}")

    @property
    def shape(self) -> tuple[int, int, int]:
        """Grid size as ``(k, j, i)``."""
        return tuple(int(n) for n in self.array.shape[:3])

    @property
    def spacing(self) -> np.ndarray:
        """Voxel size in mm along i, j, k."""
        return np.linalg.norm(self.ijk_to_ras[:3, :3], axis=0)

    @property
    def origin(self) -> np.ndarray:
        """RAS position (mm) of the centre of voxel (0, 0, 0)."""
        return self.ijk_to_ras[:3, 3].copy()

    @property
    def direction(self) -> np.ndarray:
        """3x3 matrix whose columns are the RAS unit vectors of the i, j, k axes."""
        return self.ijk_to_ras[:3, :3] / self.spacing

    @property
    def center_ras(self) -> np.ndarray:
        """RAS position (mm) of the centre of the voxel grid."""
        return grid_center_ras(self.shape, self.ijk_to_ras)

    def with_array(self, array: np.ndarray, name: str | None = None) -> "Volume":
        """A new volume with the same geometry and another array."""
        return Volume(array, self.ijk_to_ras.copy(), self.name if name is None else name)

    def padded(self, voxels: int = 1, value=0) -> "Volume":
        """The volume with ``voxels`` of ``value`` added on every side (same physical positions).

        Resampling clamps at the border; a zero margin makes label volumes read as
        empty outside their extent instead of repeating their edge.
        """
        array = np.pad(self.array, [(voxels, voxels)] * 3 + [(0, 0)] * (self.array.ndim - 3), constant_values=value)
        matrix = self.ijk_to_ras.copy()
        matrix[:3, 3] -= matrix[:3, :3] @ np.full(3, float(voxels))
        return Volume(array, matrix, self.name)

    def same_geometry(self, other: "Volume", atol: float = 1e-4) -> bool:
        return self.shape == other.shape and np.allclose(self.ijk_to_ras, other.ijk_to_ras, atol=atol)


def grid_center_ras(shape_kji, ijk_to_ras: np.ndarray) -> np.ndarray:
    """RAS position (mm) of the centre of a grid of ``shape_kji`` voxels."""
    center_ijk = (np.asarray(shape_kji[::-1], dtype=float) - 1.0) / 2.0
    return ijk_to_ras[:3, :3] @ center_ijk + ijk_to_ras[:3, 3]


def resampled_geometry(shape_kji, ijk_to_ras: np.ndarray, spacing_mm) -> tuple[tuple[int, int, int], np.ndarray]:
    """A grid covering the same field of view with another voxel size.

    Keeps the direction and the centre of the field of view; the number of
    voxels per axis is the extent divided by the new spacing, rounded.
    Returns ``(shape_kji, ijk_to_ras)``.
    """
    old_spacing = np.linalg.norm(ijk_to_ras[:3, :3], axis=0)
    new_spacing = np.broadcast_to(np.asarray(spacing_mm, dtype=float), (3,))
    size_ijk = np.asarray(shape_kji[::-1], dtype=float)
    new_size_ijk = np.maximum(1, np.round(size_ijk * old_spacing / new_spacing)).astype(int)
    direction = ijk_to_ras[:3, :3] / old_spacing
    center = grid_center_ras(shape_kji, ijk_to_ras)
    matrix = make_ijk_to_ras(new_spacing, (0, 0, 0), direction)
    matrix[:3, 3] = center - matrix[:3, :3] @ ((new_size_ijk - 1.0) / 2.0)
    return tuple(int(n) for n in new_size_ijk[::-1]), matrix


def check_volume(volume: Volume, source: str | None = None, is_label: bool = False) -> None:
    """Raise :class:`InputError` naming ``source`` if the volume cannot be registered.

    Checks: three spatial dimensions of at least 2 voxels each, finite values,
    a non-singular geometry, and for labels at least one foreground voxel.
    """
    source = source or volume.name or "volume"
    shape = volume.array.shape
    if volume.array.ndim != 3:
        raise InputError(source, f"expected a 3D volume, got an array of shape {shape}")
    if min(shape) < 2:
        raise InputError(
            source, f"is not a 3D volume: its size is {shape[::-1]} (i, j, k); every axis needs at least 2 voxels"
        )
    if volume.array.size == 0:
        raise InputError(source, "is empty")
    if np.issubdtype(volume.array.dtype, np.floating) and not np.all(np.isfinite(volume.array)):
        raise InputError(source, f"contains {int(np.sum(~np.isfinite(volume.array)))} NaN or infinite values")
    if abs(np.linalg.det(volume.ijk_to_ras[:3, :3])) < 1e-12:
        raise InputError(source, "has a singular IJK-to-RAS matrix (zero spacing or degenerate direction)")
    if is_label and not np.any(volume.array > 0.5):
        raise InputError(source, "is an empty label: no voxel is above 0.5")
