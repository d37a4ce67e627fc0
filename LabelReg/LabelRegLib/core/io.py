"""Reading and writing volumes: the one place where file conventions are converted.

NIfTI files are read and written with nibabel, whose affine is already the
IJK->RAS matrix of an ``[i, j, k]`` array (it resolves sform/qform the way the
NIfTI standard says, and keeps a sheared or oblique affine exactly). NRRD and
MetaImage files go through SimpleITK, whose geometry is LPS: RAS = diag(-1, -1, 1)
LPS. Arrays leave this module indexed ``[k, j, i]``.

Every write goes through :func:`.writes.atomic_output` (a temporary file beside the target, read back, then
renamed into place), so an interrupted or failed write never leaves a half-written file; the suffixes are
:mod:`.paths`'.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import InputError
from .paths import (
    NIFTI_SUFFIXES,
    OUTPUT_VOLUME_SUFFIXES,
    VOLUME_SUFFIXES,
    file_suffix,
    is_volume_file,
    missing_file_problem,
    name_problem,
    strip_suffix,
)
from .sitk_geometry import sitk_ijk_to_ras, to_sitk_image
from .volume import Volume, check_volume
from .writes import ShortWrite, atomic_output


def _check_readable(path: Path) -> None:
    problem = name_problem(path) or missing_file_problem(path)
    if problem:
        raise InputError(path, problem)
    if not is_volume_file(path):
        raise InputError(
            path, f"unsupported file type '{file_suffix(path)}'; expected one of {', '.join(VOLUME_SUFFIXES)}"
        )


def _read_nifti(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Array in nibabel's ``[i, j, k, ...]`` order and the IJK->RAS matrix where ITK, and so Slicer and the batch
    script, place the image: a NIfTI whose sform and qform disagree is placed by ITK's choice (the qform, unless
    only the sform is usable), with a warning naming the file; nibabel would take the sform."""
    import nibabel as nib
    import SimpleITK as sitk

    image = nib.load(str(path))
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()  # the header only
    nibabel_affine = np.asarray(image.affine, dtype=float)
    if reader.GetDimension() < 3:  # reported as "not 3D" by the caller
        return np.asanyarray(image.dataobj), nibabel_affine
    ijk_to_ras = sitk_ijk_to_ras(reader)
    if not np.allclose(ijk_to_ras, nibabel_affine, atol=1e-3):
        import warnings

        sform, qform = image.header.get_sform(), image.header.get_qform()
        taken = (
            "qform"
            if np.allclose(ijk_to_ras, qform, atol=1e-3)
            else "sform"
            if np.allclose(ijk_to_ras, sform, atol=1e-3)
            else "ITK's reading"
        )
        shift = np.linalg.norm((ijk_to_ras - nibabel_affine)[:3, 3])
        warnings.warn(
            f"{path}: its sform and qform disagree (origins {shift:.1f} mm apart); placed by its {taken}, as ITK and "
            "Slicer place it",
            stacklevel=2,
        )
    return np.asanyarray(image.dataobj), ijk_to_ras


def _read_itk(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Array in ``[i, j, k, ...]`` order (landmark axis or vector components last) and the IJK->RAS matrix."""
    import SimpleITK as sitk

    image = sitk.ReadImage(str(path))
    array = sitk.GetArrayFromImage(image)  # [k, j, i(, c)] for 3D; [t, k, j, i(, c)] for 4D
    if image.GetDimension() == 4:
        array = np.moveaxis(array, 0, 3)
    elif image.GetDimension() != 3:
        return np.transpose(array), np.eye(4)  # reported as "not 3D" by the caller
    array = np.swapaxes(array, 0, 2)  # [k, j, i, ...] -> [i, j, k, ...]
    return array, sitk_ijk_to_ras(image)


def _last_line(error: Exception) -> str:
    """The last non-empty line of a reader's message (ITK's run over many lines; the last says what failed)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__


def read_array(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read any supported file as ``(array [k, j, i, ...extra axes], ijk_to_ras)``.

    Extra axes (4D landmark axis, vector components) stay last.
    """
    path = Path(path)
    _check_readable(path)
    _check_size(path)
    try:
        if file_suffix(path) in NIFTI_SUFFIXES:
            array_ijk, ijk_to_ras = _read_nifti(path)
        else:
            array_ijk, ijk_to_ras = _read_itk(path)
    except InputError:
        raise
    except Exception as error:  # the readers raise many types; the user needs the file and the reason
        raise InputError(path, f"cannot be read as an image ({_last_line(error)})") from error
    if array_ijk.ndim < 3:
        raise InputError(path, f"is a {array_ijk.ndim}D image; a 3D volume is required")
    array_kji = np.transpose(array_ijk, (2, 1, 0) + tuple(range(3, array_ijk.ndim)))
    return np.ascontiguousarray(array_kji), ijk_to_ras


def _check_size(path: Path) -> None:
    """Refuse an image whose header promises more voxels than this machine can hold, before its data is read."""
    from .memory import GIB, available_ram_bytes

    try:
        import SimpleITK as sitk

        reader = sitk.ImageFileReader()
        reader.SetFileName(str(path))
        reader.ReadImageInformation()  # the header only
        size = list(reader.GetSize())
        voxels = int(np.prod(size, dtype=np.float64)) * reader.GetNumberOfComponents()
    except Exception:  # an unreadable header: the reader that follows names the problem
        return
    needed, available = voxels * 8, available_ram_bytes()  # its own type and float32, at most 8 bytes a voxel
    if available is not None and needed > available:
        raise InputError(
            path,
            f"is a {'x'.join(map(str, size))} image: reading it needs about {needed / GIB:.1f} GiB and "
            f"{available / GIB:.1f} GiB is available; crop or resample it first",
        )


def read_volume(path: str | Path, dtype=np.float32) -> Volume:
    """Read a 3D scalar image (a trailing axis of length 1 is dropped); colour images and values beyond
    ``dtype``'s range are refused naming what they are."""
    array, ijk_to_ras = read_array(path)
    while array.ndim > 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.dtype.names or array.ndim == 4 and array.shape[-1] in (3, 4):  # NIfTI RGB(A) records, ITK vectors
        components = len(array.dtype.names) if array.dtype.names else array.shape[-1]
        raise InputError(
            path, f"is a colour or vector image ({components} values a voxel); a grey-scale 3D volume is required"
        )
    if array.ndim != 3:
        raise InputError(path, f"is not a 3D scalar image: its array has shape {array.shape[::-1]} (i, j, k, ...)")
    if np.issubdtype(array.dtype, np.floating) and np.issubdtype(dtype, np.floating):
        largest = float(np.nanmax(np.abs(array), initial=0.0, where=np.isfinite(array)))
        if largest > np.finfo(dtype).max:
            raise InputError(
                path,
                f"holds values up to {largest:.3g}, beyond the {np.dtype(dtype).name} range LabelReg computes in "
                f"(at most {np.finfo(dtype).max:.3g}); rescale its intensities",
            )
    volume = Volume(array.astype(dtype, copy=False), ijk_to_ras, strip_suffix(path))
    check_volume(volume, str(path))
    return volume


def read_labels(path: str | Path) -> list[Volume]:
    """Read landmark labels as K float32 volumes: a 3D label, a 4D stack (last axis = landmark), or a
    Slicer ``.seg.nrrd`` segmentation (one volume per segment, named after it, in file order)."""
    if file_suffix(path) == ".seg.nrrd":
        labels = _read_segmentation(Path(path))
    else:
        array, ijk_to_ras = read_array(path)
        if array.ndim == 3:
            array = array[..., np.newaxis]
        if array.ndim != 4:
            raise InputError(path, f"is not a 3D or 4D label image: its array has shape {array.shape}")
        labels = [
            Volume(
                np.ascontiguousarray(array[..., index], dtype=np.float32), ijk_to_ras, f"{strip_suffix(path)}[{index}]"
            )
            for index in range(array.shape[-1])
        ]
    for index, label in enumerate(labels):
        check_volume(label, f"{path} (landmark {index})", is_label=True)
        low, high = float(label.array.min()), float(label.array.max())
        if low < -1e-3 or high > 1 + 1e-3:  # tolerate rounding of interpolated labels
            raise InputError(
                f"{path} (landmark {index})",
                f"is not a binary label: values range from {low:g} to {high:g}, expected 0..1",
            )
    return labels


def _read_segmentation(path: Path) -> list[Volume]:
    """Segments of a Slicer .seg.nrrd (labelmap layers with Segment<N>_Name/_LabelValue/_Layer fields)."""
    import SimpleITK as sitk

    _check_readable(path)
    try:
        image = sitk.ReadImage(str(path))
    except Exception as error:
        raise InputError(path, f"cannot be read as a segmentation ({_last_line(error)})") from error
    array = sitk.GetArrayFromImage(image)  # [k, j, i] or [k, j, i, layer]
    layers = array if array.ndim == 4 else array[..., np.newaxis]
    ijk_to_ras = sitk_ijk_to_ras(image)

    def segment_field(index: int, name: str, default: str) -> str:
        key = f"Segment{index}_{name}"
        return image.GetMetaData(key) if image.HasMetaDataKey(key) else default

    labels, index = [], 0
    while image.HasMetaDataKey(f"Segment{index}_Name"):
        layer = int(segment_field(index, "Layer", "0"))
        value = float(segment_field(index, "LabelValue", "1"))
        mask = (layers[..., layer] == value).astype(np.float32)
        labels.append(Volume(mask, ijk_to_ras, segment_field(index, "Name", f"Segment_{index}")))
        index += 1
    if not labels:
        raise InputError(path, "is a .seg.nrrd without any segment (no Segment0_Name field)")
    return labels


def write_volume(volume: Volume | list[Volume], path: str | Path) -> None:
    """Write a volume (or a list of same-geometry label volumes, as one 4D file) atomically.

    NIfTI is written with nibabel (sform and qform set to the IJK->RAS matrix,
    code 'scanner'), NRRD / MetaImage with SimpleITK in LPS.
    """
    volumes = volume if isinstance(volume, list) else [volume]
    array_kji = np.stack([v.array for v in volumes], axis=-1) if isinstance(volume, list) else volume.array
    ijk_to_ras = volumes[0].ijk_to_ras
    suffix = file_suffix(path)
    if suffix not in OUTPUT_VOLUME_SUFFIXES:
        raise InputError(
            path,
            f"unsupported output type '{suffix}'; write one of {', '.join(OUTPUT_VOLUME_SUFFIXES)} (one file each)",
        )
    with atomic_output(path, lambda temporary: verify_volume(temporary, array_kji)) as temporary:
        if suffix in NIFTI_SUFFIXES:
            import nibabel as nib

            array_ijk = np.transpose(array_kji, (2, 1, 0) + tuple(range(3, array_kji.ndim)))
            image = nib.Nifti1Image(array_ijk, ijk_to_ras)
            image.set_sform(ijk_to_ras, code=1)
            image.set_qform(ijk_to_ras, code=1)
            nib.save(image, str(temporary))
        else:
            import SimpleITK as sitk

            sitk.WriteImage(to_sitk_image(array_kji, ijk_to_ras, is_vector=array_kji.ndim == 4), str(temporary), True)


def verify_volume(path: Path, array_kji: np.ndarray) -> None:
    """Read a volume file just written (``array_kji``, ``[k, j, i]``) back and compare its voxels with what was meant, with the library that
    wrote it (nibabel for NIfTI: ITK's reader turns a NaN into 0; SimpleITK for the others, whose writers report a
    short write only on the console)."""
    try:
        if file_suffix(path) in NIFTI_SUFFIXES:
            import nibabel as nib

            written = np.asarray(nib.load(str(path)).dataobj)
            written = np.transpose(written, (2, 1, 0) + tuple(range(3, written.ndim)))
        else:
            import SimpleITK as sitk

            written = sitk.GetArrayFromImage(sitk.ReadImage(str(path)))
    except Exception as error:  # any reader's complaint: the file is not what was written
        raise ShortWrite(f"it cannot be read back ({str(error).strip().splitlines()[-1]})") from None
    if written.shape != array_kji.shape or not np.array_equal(written, array_kji, equal_nan=True):
        raise ShortWrite("what was read back differs from what was written")
