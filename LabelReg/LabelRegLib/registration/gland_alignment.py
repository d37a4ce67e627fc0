"""The ``glands`` initial alignment: the predicted MR gland moved onto the predicted US gland.

``translation`` puts the MR gland's centroid on the US gland's; ``rigid`` and
``similarity`` start there and then fit a rotation (and one scale) by
minimising the mean squared difference of the two gland probability maps
(smoothed), with SimpleITK's registration framework and its Powell optimiser
(well kept, and the glands are small coarse images). The result, as
every initial alignment, is a 4x4 RAS matrix taking a fixed (US) point to the
moving (MR) point it starts on.
"""

from __future__ import annotations

import numpy as np

from ..core.config import GLAND_TRANSFORMS  # the allowed values are defined with the settings
from ..core.sitk_geometry import LPS_TO_RAS, to_sitk_image
from ..core.volume import Volume
from .glands import Gland

SMOOTHING_MM = 3.0  # Gaussian sigma applied to both gland probabilities before the rigid / similarity fit


def centroid_translation(moving: Gland, fixed: Gland) -> np.ndarray:
    """4x4 fixed RAS -> moving RAS translation putting the fixed gland's centroid on the moving one's."""
    matrix = np.eye(4)
    matrix[:3, 3] = moving.centroid_ras - fixed.centroid_ras
    return matrix


def align_glands(moving: Gland, fixed: Gland, transform: str = "rigid") -> np.ndarray:
    """4x4 fixed RAS -> moving RAS matrix aligning the two predicted glands (``transform``: one of
    :data:`GLAND_TRANSFORMS`). Both glands must have been found (:attr:`Gland.found`)."""
    import SimpleITK as sitk

    if transform not in GLAND_TRANSFORMS:
        raise ValueError(f"Unknown gland transform '{transform}'; choose one of {', '.join(GLAND_TRANSFORMS)}.")
    start = centroid_translation(moving, fixed)
    if transform == "translation":
        return start
    # smoothed probabilities: an overlap that changes smoothly with the pose, so the optimiser sees a slope; the
    # fixed one cropped around its gland (the metric is summed over the fixed image: fewer voxels, faster)
    fixed_image, moving_image = (
        sitk.SmoothingRecursiveGaussian(to_sitk_image(*_around_gland(g.probability)), SMOOTHING_MM)
        for g in (fixed, moving)
    )
    model = sitk.Similarity3DTransform() if transform == "similarity" else sitk.Euler3DTransform()
    model.SetCenter([float(v) for v in LPS_TO_RAS[:3, :3] @ fixed.centroid_ras])  # LPS_TO_RAS is its own inverse
    model.SetTranslation([float(v) for v in LPS_TO_RAS[:3, :3] @ start[:3, 3]])
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMeanSquares()
    method.SetInterpolator(sitk.sitkLinear)
    # Powell's derivative-free line searches: the overlap of two smooth blobs is nearly flat in rotation, where
    # gradient descent stalls (measured on phantom glands: 10 of 12 degrees left); two sweeps of the six
    # parameters recover a phantom's rotation to under a degree
    method.SetOptimizerAsPowell(
        numberOfIterations=2, maximumLineIterations=8, stepLength=2.0, stepTolerance=0.05, valueTolerance=1e-9
    )
    method.SetOptimizerScalesFromPhysicalShift()
    method.SetInitialTransform(model, inPlace=True)
    method.Execute(fixed_image, moving_image)
    return _ras_matrix(model)


def _around_gland(probability: Volume, margin_mm: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    """``(array, ijk_to_ras)`` of the probability cropped to the gland's bounding box plus ``margin_mm``."""
    inside = np.nonzero(probability.array > 0.5)
    margin = np.ceil(margin_mm / probability.spacing[::-1]).astype(int)  # voxels along k, j, i
    low = np.maximum(np.array([a.min() for a in inside]) - margin, 0)
    high = np.minimum(np.array([a.max() for a in inside]) + margin + 1, probability.array.shape)
    array = probability.array[tuple(slice(a, b) for a, b in zip(low, high))].astype(np.float32)
    matrix = probability.ijk_to_ras.copy()
    matrix[:3, 3] += matrix[:3, :3] @ low[::-1]
    return np.ascontiguousarray(array), matrix


def _ras_matrix(transform) -> np.ndarray:
    """The 4x4 RAS matrix of a SimpleITK matrix-offset transform (which maps LPS points)."""
    matrix_lps = np.array(transform.GetMatrix()).reshape(3, 3)
    center = np.array(transform.GetCenter())
    offset_lps = center + np.array(transform.GetTranslation()) - matrix_lps @ center
    flip = LPS_TO_RAS[:3, :3]
    matrix = np.eye(4)
    matrix[:3, :3] = flip @ matrix_lps @ flip
    matrix[:3, 3] = flip @ offset_lps
    return matrix


def glands_initial(
    moving: Volume, fixed: Volume, moving_gland: Gland, fixed_gland: Gland, transform: str
) -> tuple[np.ndarray, list[str]]:
    """The ``glands`` initial alignment of a pair from its predicted glands: ``(matrix, warnings)``. Where a gland
    is not found, the volume centres are aligned instead and a warning says so."""
    from ..core.spatial import initial_alignment

    missing = [
        f"{role} {v.name}".strip()
        for v, g, role in ((moving, moving_gland, "moving"), (fixed, fixed_gland, "fixed"))
        if not g.found
    ]
    if missing:
        message = f"{', '.join(missing)}: no gland found; the volume centres were aligned instead"
        return initial_alignment(moving, fixed, "centers"), [message]
    return align_glands(moving_gland, fixed_gland, transform), []
