"""Displacement-field transform files: what ITK, SimpleITK, ANTs and Slicer read.

A LabelReg registration is a RAS mm displacement ``u`` on the fixed grid with
``fixed x -> moving x + u(x)``. ITK's displacement-field transform uses the
same (resampling) direction in LPS: ``TransformPoint(x) = x + u_lps(x)``, so
writing it means flipping the first two components of every vector and of the
grid geometry (:func:`LabelRegLib.core.sitk_geometry.to_sitk_image`).

- ``.h5`` / ``.hdf5`` / ``.tfm``: an ITK transform file (``sitk.WriteTransform``);
- ``.nii.gz`` / ``.nii`` / ``.nrrd`` / ``.mha``: the displacement field as a
  vector image (ANTs' ``Warp.nii.gz`` convention; Slicer loads it as a grid
  transform).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .paths import OUTPUT_VOLUME_SUFFIXES, file_suffix
from .sitk_geometry import LPS_TO_RAS, from_sitk_image, to_sitk_image
from .volume import Volume
from .writes import ShortWrite, atomic_output, check_room

TRANSFORM_SUFFIXES = (".h5", ".hdf5", ".tfm")
FLIP = np.diag(LPS_TO_RAS)[:3]  # RAS <-> LPS for vectors: (-1, -1, 1)


def displacement_to_sitk_transform(displacement: Volume):
    """A ``sitk.DisplacementFieldTransform`` (LPS) from a RAS mm displacement Volume ``[K, J, I, 3]``."""
    import SimpleITK as sitk

    field = to_sitk_image((displacement.array * FLIP).astype(np.float64), displacement.ijk_to_ras, is_vector=True)
    return sitk.DisplacementFieldTransform(field)


def write_displacement(displacement: Volume, path: str | Path) -> None:
    """Write the registration as an ITK transform file or a displacement-field image (atomically)."""
    import SimpleITK as sitk

    suffix = file_suffix(path)
    if suffix not in TRANSFORM_SUFFIXES + OUTPUT_VOLUME_SUFFIXES:
        raise InputError(
            path, f"unsupported transform file type '{suffix}'; use .h5 or .nii.gz (also .tfm, .nrrd, .mha)"
        )

    def verify(temporary: Path) -> None:  # read back: ITK reports a short write only on its console
        try:
            written = read_displacement(temporary)
        except InputError as error:
            raise ShortWrite(f"it cannot be read back ({error.problem})") from None
        if not (written.same_geometry(displacement) and np.allclose(written.array, displacement.array, atol=1e-4)):
            raise ShortWrite("what was read back differs from what was written")

    if suffix in TRANSFORM_SUFFIXES:  # ITK's HDF5 crashes the process at exit after a failed write: never start one
        check_room(path, displacement.array.size * 8)
    with atomic_output(path, verify) as temporary:
        if suffix in TRANSFORM_SUFFIXES:
            sitk.WriteTransform(displacement_to_sitk_transform(displacement), str(temporary))
        else:
            field = to_sitk_image(
                (displacement.array * FLIP).astype(np.float32), displacement.ijk_to_ras, is_vector=True
            )
            sitk.WriteImage(field, str(temporary), True)


def read_displacement(path: str | Path) -> Volume:
    """Read a displacement-field transform file or image back as a RAS mm displacement Volume."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError(path, "file not found")
    try:
        if file_suffix(path) in TRANSFORM_SUFFIXES:
            transform = sitk.ReadTransform(str(path))
            if transform.GetName() == "CompositeTransform":
                transform = sitk.CompositeTransform(transform).GetNthTransform(0)
            field = sitk.DisplacementFieldTransform(transform).GetDisplacementField()
        else:
            field = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(
            path, f"is not a displacement-field transform ({str(error).strip().splitlines()[-1]})"
        ) from error
    volume = from_sitk_image(field)
    if volume.array.ndim != 4 or volume.array.shape[-1] != 3:
        raise InputError(path, "is not a 3D displacement field (expected 3 components per voxel)")
    return Volume(volume.array.astype(np.float64) * FLIP, volume.ijk_to_ras, path.name)
