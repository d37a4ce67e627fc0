"""SimpleITK images and LabelReg volumes: ITK's geometry is LPS, LabelReg's RAS (RAS = diag(-1, -1, 1) LPS), and
ITK's arrays come ``[k, j, i]`` as LabelReg's do.
"""

from __future__ import annotations

import numpy as np

from .volume import Volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])


def sitk_ijk_to_ras(image) -> np.ndarray:
    """IJK->RAS matrix of the first three axes of a SimpleITK image (LPS geometry)."""
    n = image.GetDimension()
    direction = np.asarray(image.GetDirection()).reshape(n, n)[:3, :3]
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing()[:3])
    lps[:3, 3] = image.GetOrigin()[:3]
    return LPS_TO_RAS @ lps


def to_sitk_image(array_kji: np.ndarray, ijk_to_ras: np.ndarray, is_vector: bool = False):
    """A SimpleITK image (LPS geometry) from a ``[k, j, i(, c)]`` array and an IJK->RAS matrix."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(np.ascontiguousarray(array_kji), isVector=is_vector)
    lps = LPS_TO_RAS @ ijk_to_ras
    spacing = np.linalg.norm(lps[:3, :3], axis=0)
    image.SetSpacing([float(s) for s in spacing])
    image.SetOrigin([float(o) for o in lps[:3, 3]])
    image.SetDirection([float(d) for d in (lps[:3, :3] / spacing).ravel()])
    return image


def from_sitk_image(image) -> Volume:
    """A :class:`Volume` from a 3D SimpleITK image (scalar or vector)."""
    import SimpleITK as sitk

    return Volume(sitk.GetArrayFromImage(image), sitk_ijk_to_ras(image))
