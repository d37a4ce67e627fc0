"""What the network sees: both images on the working grid, intensity-normalised.

Used identically by training and registration (docs/design.md, "Data flow"):
the working grid is the fixed image's field of view and direction at the
model's working spacing; the moving image (and its labels) is resampled onto
it through the initial alignment; intensities are normalised per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.errors import InputError
from ..core.spatial import fields_of_view_overlap, initial_alignment, resample_volume
from ..core.volume import Volume, resampled_geometry

DEFAULT_NORMALISATION = {"method": "percentile", "low": 1.0, "high": 99.0}


@dataclass
class WorkingPair:
    """Arrays ``[K, J, I]`` on the working grid; ``initial`` maps fixed RAS -> moving RAS (4x4)."""

    moving_image: np.ndarray
    fixed_image: np.ndarray
    moving_labels: list[np.ndarray]
    fixed_labels: list[np.ndarray]
    shape: tuple[int, int, int]
    ijk_to_ras: np.ndarray
    initial: np.ndarray


def normalise_intensity(array: np.ndarray, normalisation: dict | None = None) -> np.ndarray:
    """Map the ``low``-th..``high``-th percentile of the image to 0..1 (values clipped to [0, 1])."""
    settings = {**DEFAULT_NORMALISATION, **(normalisation or {})}
    if settings["method"] != "percentile":
        raise ValueError(f"Unknown intensity normalisation '{settings['method']}'")
    low, high = np.percentile(array, [settings["low"], settings["high"]])
    scale = high - low if high > low else 1.0
    return np.clip((array - low) / scale, 0.0, 1.0).astype(np.float32)


def working_geometry(fixed: Volume, working_spacing_mm: float | None) -> tuple[tuple[int, int, int], np.ndarray]:
    """The working grid: the fixed grid itself, or its field of view at ``working_spacing_mm``."""
    if not working_spacing_mm:
        return fixed.shape, fixed.ijk_to_ras.copy()
    return resampled_geometry(fixed.shape, fixed.ijk_to_ras, working_spacing_mm)


def prepare_pair(
    moving: Volume,
    fixed: Volume,
    moving_labels: list[Volume] = (),
    fixed_labels: list[Volume] = (),
    working_spacing_mm: float | None = None,
    alignment: str = "centers",
    normalisation: dict | None = None,
    initial: np.ndarray | None = None,
) -> WorkingPair:
    """Resample and normalise one pair (and its labels) for the network. ``initial``: a fixed RAS -> moving RAS
    4x4 matrix computed elsewhere (the ``glands`` alignment), used instead of ``alignment``."""
    shape, matrix = working_geometry(fixed, working_spacing_mm)
    initial = initial_alignment(moving, fixed, alignment) if initial is None else initial
    if not fields_of_view_overlap(moving, fixed, initial):  # the network would see an empty moving image
        apart_mm = np.linalg.norm((initial @ [*fixed.center_ras, 1.0])[:3] - moving.center_ras)
        raise InputError(
            moving.name or "moving volume",
            f"does not overlap {fixed.name or 'the fixed volume'} in space under the '{alignment}' initial alignment "
            f"(their centres are {apart_mm:.0f} mm apart as their headers place them); use the 'centers' alignment "
            "(--init centers), or correct the image positions",
        )
    on_fixed_grid = shape == fixed.shape and np.allclose(matrix, fixed.ijk_to_ras)

    def moving_on_grid(volume: Volume) -> np.ndarray:
        return resample_volume(volume, shape, matrix, initial).array

    def fixed_on_grid(volume: Volume) -> np.ndarray:
        return volume.array.astype(np.float32) if on_fixed_grid else resample_volume(volume, shape, matrix).array

    return WorkingPair(
        moving_image=normalise_intensity(moving_on_grid(moving), normalisation),
        fixed_image=normalise_intensity(fixed_on_grid(fixed), normalisation),
        moving_labels=[moving_on_grid(label) for label in moving_labels],
        fixed_labels=[fixed_on_grid(label) for label in fixed_labels],
        shape=shape,
        ijk_to_ras=matrix,
        initial=initial,
    )
