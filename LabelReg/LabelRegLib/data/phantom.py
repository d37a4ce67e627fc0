"""Synthetic MR / TRUS prostate phantom with a known deformation: LabelReg's built-in data.

The anatomy is defined analytically in the moving (MR) world: a prostate-like
ellipsoidal gland with a lumpy surface, a rectum behind it, and 2-5 small
landmarks (cysts or calcifications) inside the gland. The fixed (US) world
sees the same anatomy through a known smooth map ``phi`` (a rotation and
offset plus a few Gaussian bumps, like probe pressure): the fixed-space point
``x`` shows the anatomy at the moving-space point ``phi(x)``. So the true
displacement ``u(x) = phi(x) - x`` is exactly the resampling-direction field
LabelReg estimates (docs/design.md, "Conventions").

MR and US have different fields of view, spacings and appearance (MR: smooth
contrast with mild Gaussian noise; US: speckle, bright gland boundary,
hypoechoic gland, shadowing calcifications). Everything is deterministic from
the seed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..core.volume import Volume, make_ijk_to_ras


@dataclass
class PhantomPair:
    """One synthetic case. Labels are gland first, then the landmarks (float 0/1)."""

    moving_image: Volume
    fixed_image: Volume
    moving_labels: list[Volume]
    fixed_labels: list[Volume]
    true_displacement: Volume  # RAS mm [K, J, I, 3] on the fixed grid: fixed x -> moving x + u(x)
    name: str
    # the known deformation itself: fixed RAS mm points [..., 3] -> moving RAS mm, exact anywhere (not only on the grid)
    true_mapping: Callable[[np.ndarray], np.ndarray] | None = None


def _rotation(angles_rad) -> np.ndarray:
    ax, ay, az = angles_rad
    rx = np.array([[1, 0, 0], [0, np.cos(ax), -np.sin(ax)], [0, np.sin(ax), np.cos(ax)]])
    ry = np.array([[np.cos(ay), 0, np.sin(ay)], [0, 1, 0], [-np.sin(ay), 0, np.cos(ay)]])
    rz = np.array([[np.cos(az), -np.sin(az), 0], [np.sin(az), np.cos(az), 0], [0, 0, 1]])
    return rz @ ry @ rx


class _Anatomy:
    """Analytic anatomy in moving (MR) RAS mm; every method takes points ``[..., 3]``."""

    def __init__(self, rng: np.random.Generator):
        self.gland_center = rng.uniform(-3, 3, 3)
        self.gland_radii = rng.uniform([19, 14, 15], [24, 18, 20])
        self.lumps = rng.normal(0, 0.05, (3, 3))  # low-order surface perturbation
        self.rectum_center = self.gland_center + np.array([0.0, -self.gland_radii[1] - 9.0, 0.0])
        self.rectum_radii = np.array([13.0, 7.0, 25.0])
        n_landmarks = int(rng.integers(2, 6))
        directions = rng.normal(size=(n_landmarks, 3))
        directions /= np.linalg.norm(directions, axis=1, keepdims=True)
        self.landmarks = self.gland_center + directions * rng.uniform(0.25, 0.6, (n_landmarks, 1)) * self.gland_radii
        self.landmark_radii = rng.uniform(2.5, 4.0, n_landmarks)
        self.landmark_is_cyst = rng.random(n_landmarks) < 0.5

    def gland_level(self, points: np.ndarray) -> np.ndarray:
        """< 1 inside the gland (a normalised ellipsoid radius with a lumpy surface)."""
        q = (points - self.gland_center) / self.gland_radii
        r = np.linalg.norm(q, axis=-1)
        unit = q / np.maximum(r[..., None], 1e-9)
        lumps = np.einsum("...i,ij,...j->...", unit, self.lumps, unit)
        return r * (1 + lumps)

    def rectum_level(self, points: np.ndarray) -> np.ndarray:
        return np.linalg.norm((points - self.rectum_center) / self.rectum_radii, axis=-1)

    def landmark_distance(self, points: np.ndarray, index: int) -> np.ndarray:
        """Distance (mm) to a landmark's centre divided by its radius (< 1 inside)."""
        return np.linalg.norm(points - self.landmarks[index], axis=-1) / self.landmark_radii[index]

    def labels(self, points: np.ndarray) -> list[np.ndarray]:
        masks = [self.gland_level(points) < 1]
        masks += [self.landmark_distance(points, n) < 1 for n in range(len(self.landmarks))]
        return [m.astype(np.float32) for m in masks]

    def soft(self, level: np.ndarray, width: float = 12.0) -> np.ndarray:
        """Soft inside-membership of a level function (1 inside, 0 outside, smooth edge)."""
        return 1.0 / (1.0 + np.exp(np.clip((level - 1.0) * width, -50, 50)))


class _KnownDeformation:
    """phi(x) = c_m + R (x - c_f) + sum of Gaussian bumps: fixed RAS mm -> moving RAS mm."""

    def __init__(self, rng: np.random.Generator, fixed_gland_center: np.ndarray, moving_gland_center: np.ndarray):
        self.rotation = _rotation(np.deg2rad(rng.uniform(-8, 8, 3)))
        self.fixed_center = fixed_gland_center
        self.moving_center = moving_gland_center
        n_bumps = 3
        self.bump_centers = fixed_gland_center + rng.uniform(-15, 15, (n_bumps, 3))
        self.bump_vectors = rng.uniform(-4, 4, (n_bumps, 3))
        self.bump_sigma = rng.uniform(14, 20, n_bumps)

    def __call__(self, points: np.ndarray) -> np.ndarray:
        moved = self.moving_center + (points - self.fixed_center) @ self.rotation.T
        for center, vector, sigma in zip(self.bump_centers, self.bump_vectors, self.bump_sigma):
            weight = np.exp(-0.5 * np.sum((points - center) ** 2, axis=-1) / sigma**2)
            moved = moved + weight[..., None] * vector
        return moved


def _grid_points(shape_kji, ijk_to_ras) -> np.ndarray:
    """RAS mm points ``[K, J, I, 3]`` of a grid."""
    import torch

    from ..core.spatial import grid_points_ras

    return np.moveaxis(grid_points_ras(shape_kji, ijk_to_ras, dtype=torch.float64).numpy(), 0, -1)


def _centered_geometry(shape_kji, spacing, center, direction) -> np.ndarray:
    matrix = make_ijk_to_ras(spacing, (0, 0, 0), direction)
    matrix[:3, 3] = center - matrix[:3, :3] @ ((np.asarray(shape_kji[::-1]) - 1) / 2)
    return matrix


def _mr_appearance(anatomy: _Anatomy, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    gland = anatomy.soft(anatomy.gland_level(points))
    inner = anatomy.soft(anatomy.gland_level(points) / 0.6)  # central zone
    rectum = anatomy.soft(anatomy.rectum_level(points))
    image = 70 + 25 * np.sin(points[..., 0] / 9.0) * np.cos(points[..., 2] / 11.0)  # smooth tissue variation
    image = image * (1 - gland) + (150 - 40 * inner) * gland
    image = image * (1 - rectum) + 25 * rectum
    for n, cyst in enumerate(anatomy.landmark_is_cyst):
        spot = anatomy.soft(anatomy.landmark_distance(points, n), width=4.0)
        image = image * (1 - spot) + (235 if cyst else 40) * spot
    return np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.float32)


def _us_appearance(anatomy: _Anatomy, points: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    level = anatomy.gland_level(points)
    gland = anatomy.soft(level)
    boundary = np.exp(-(((level - 1.0) / 0.08) ** 2))  # specular echo at the capsule
    rectum = anatomy.soft(anatomy.rectum_level(points))
    echo = 90 * (1 - gland) + 55 * gland + 110 * boundary
    echo = echo * (1 - rectum) + 15 * rectum
    for n, cyst in enumerate(anatomy.landmark_is_cyst):
        spot = anatomy.soft(anatomy.landmark_distance(points, n), width=4.0)
        echo = echo * (1 - spot) + (10 if cyst else 240) * spot
    speckle = rng.rayleigh(1.0, echo.shape) / np.sqrt(np.pi / 2)  # unit-mean multiplicative speckle
    return np.clip(echo * speckle, 0, 255).astype(np.float32)


def make_phantom_pair(seed: int = 0, oblique: bool = False, fov_offset_mm=(0.0, 0.0, 0.0)) -> PhantomPair:
    """A deterministic synthetic MR (moving) / US (fixed) pair with its known true displacement.

    MR: 56 x 56 x 44 voxels at 1.4 x 1.4 x 1.8 mm, axial. US: 50 x 55 x 46 voxels
    at 1.25 mm, centred near the gland with a random offset; with ``oblique``
    the US grid is also rotated (an oblique direction matrix, anisotropic
    spacing 1.2 x 1.3 x 1.25 mm). ``fov_offset_mm`` moves the MR field of view
    away from the gland (RAS mm): with centres alignment, every pair then starts
    with that systematic misalignment on top of its own.
    """
    rng = np.random.default_rng(seed)
    anatomy = _Anatomy(rng)
    moving_shape = (44, 56, 56)
    moving_center = anatomy.gland_center + rng.uniform(-4, 4, 3) - np.asarray(fov_offset_mm, dtype=float)
    moving_matrix = _centered_geometry(moving_shape, (1.4, 1.4, 1.8), moving_center, np.eye(3))

    fixed_gland_center = np.array([10.0, -20.0, 35.0]) + rng.uniform(-5, 5, 3)  # US world: unrelated coordinates
    deformation = _KnownDeformation(rng, fixed_gland_center, anatomy.gland_center)
    fixed_shape = (46, 55, 50)
    direction = _rotation(np.deg2rad([12.0, -9.0, 20.0])) if oblique else np.eye(3)
    spacing = (1.2, 1.3, 1.25) if oblique else (1.25, 1.25, 1.25)
    fixed_matrix = _centered_geometry(fixed_shape, spacing, fixed_gland_center + rng.uniform(-5, 5, 3), direction)

    moving_points = _grid_points(moving_shape, moving_matrix)
    fixed_points = _grid_points(fixed_shape, fixed_matrix)
    mapped = deformation(fixed_points)  # the anatomy each US voxel shows, in MR space

    name = f"phantom{seed:03d}"
    return PhantomPair(
        moving_image=Volume(_mr_appearance(anatomy, moving_points, rng), moving_matrix, f"{name}_mr"),
        fixed_image=Volume(_us_appearance(anatomy, mapped, rng), fixed_matrix, f"{name}_us"),
        moving_labels=[
            Volume(m, moving_matrix, f"{name}_mr_label{n}") for n, m in enumerate(anatomy.labels(moving_points))
        ],
        fixed_labels=[Volume(m, fixed_matrix, f"{name}_us_label{n}") for n, m in enumerate(anatomy.labels(mapped))],
        true_displacement=Volume((mapped - fixed_points).astype(np.float32), fixed_matrix, f"{name}_true_displacement"),
        name=name,
        true_mapping=deformation,
    )


def write_phantom_folder(
    folder, n_pairs: int = 4, first_seed: int = 0, oblique: bool = False, fov_offset_mm=(0.0, 0.0, 0.0)
) -> list[str]:
    """Write phantom pairs as a LabelReg data folder (moving_images/, fixed_images/, moving_labels/, fixed_labels/).

    Files are ``phantomNNN.nii.gz``; labels are 4D (gland first). Returns the case names.
    """
    from pathlib import Path

    from ..core.io import write_volume

    folder = Path(folder)
    names = []
    for seed in range(first_seed, first_seed + n_pairs):
        pair = make_phantom_pair(seed, oblique, fov_offset_mm)
        for sub, item in (
            ("moving_images", pair.moving_image),
            ("fixed_images", pair.fixed_image),
            ("moving_labels", pair.moving_labels),
            ("fixed_labels", pair.fixed_labels),
        ):
            write_volume(item, folder / sub / f"{pair.name}.nii.gz")
        names.append(pair.name)
    return names
