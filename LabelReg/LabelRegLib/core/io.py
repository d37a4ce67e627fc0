"""Reading and writing volumes: the one place where file conventions are converted.

NIfTI files are read and written with nibabel, whose affine is already the
IJK->RAS matrix of an ``[i, j, k]`` array (it resolves sform/qform the way the
NIfTI standard says, and keeps a sheared or oblique affine exactly). NRRD and
MetaImage files go through SimpleITK, whose geometry is LPS: RAS = diag(-1, -1, 1)
LPS. Arrays leave this module indexed ``[k, j, i]``.

Every write goes to a temporary file beside the target and is renamed into
place, so an interrupted or failed write never leaves a half-written file.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .errors import InputError
from .volume import Volume, check_volume

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".nrrd", ".nhdr", ".mha", ".mhd")
VOLUME_SUFFIXES = NIFTI_SUFFIXES + ITK_SUFFIXES
# what LabelReg writes: one file each (a .mhd / .nhdr header names a second, data file, which a write through a
# temporary name and a rename would leave under the temporary name)
OUTPUT_VOLUME_SUFFIXES = NIFTI_SUFFIXES + (".nrrd", ".mha")


def file_suffix(path: str | Path) -> str:
    """The format suffix of a path, with double suffixes such as ``.nii.gz`` and ``.seg.nrrd`` kept whole."""
    name = Path(path).name.lower()
    for suffix in (".nii.gz", ".seg.nrrd", ".mrk.json") + VOLUME_SUFFIXES + (".h5", ".hdf5", ".tfm", ".txt"):
        if name.endswith(suffix):
            return suffix
    return Path(path).suffix.lower()


def strip_suffix(path: str | Path) -> str:
    """The file name without its (possibly double) format suffix: the case name."""
    name = Path(path).name
    return name[: len(name) - len(file_suffix(name))]


def is_volume_file(path: str | Path) -> bool:
    return file_suffix(path) in VOLUME_SUFFIXES + (".seg.nrrd",)


def missing_file_problem(path: str | Path, kind: str = "file") -> str:
    """Why ``path`` is not a ``kind`` that can be read, in the user's words ("" when it is a regular file): not
    found, a link that leads nowhere, a folder, or a FIFO, device or socket (whose read would block or never end)."""
    path = Path(path)
    try:
        if path.is_file():
            return ""
        if path.is_dir():
            return f"is a folder, not a {kind}"
        if path.exists():
            return f"is not a regular file (a FIFO, device or socket), not a {kind}"
        if os.path.islink(path):
            return "is a symbolic link that leads nowhere (a loop, or its target is gone)"
    except OSError as error:  # a name too long, a loop the platform reports as an error
        return f"cannot be opened ({error.strerror or error})"
    return f"{kind} not found"


NAME_ADDED_BYTES = 16  # what LabelReg adds to an output's name for its lock file (".<name>.labelreg-lock")


def name_problem(path: str | Path, output: bool = False) -> str:
    """Why ``path``'s name cannot be used ("" when it can): bytes that are not UTF-8 text (ITK's readers and writers
    abort the process on them), or, for an ``output``, a name too long for its file system once LabelReg adds its
    temporary and lock-file suffixes."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return "has a name that is not UTF-8 text, which ITK cannot open; rename it"
    if output:
        try:
            limit = os.pathconf(Path(path).parent if Path(path).parent.is_dir() else ".", "PC_NAME_MAX")
        except (AttributeError, OSError, ValueError):  # Windows: no pathconf; NTFS takes 255 characters
            limit = 255
        length = len(os.fsencode(Path(path).name))
        if length + NAME_ADDED_BYTES > limit:
            return (
                f"has a name of {length} bytes, too long for its file system once LabelReg adds its temporary "
                f"suffix (at most {limit - NAME_ADDED_BYTES}); choose a shorter name"
            )
    return ""


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
    ijk_to_ras = _sitk_ijk_to_ras(reader)
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


def _sitk_ijk_to_ras(image) -> np.ndarray:
    """IJK->RAS matrix of the first three axes of a SimpleITK image (LPS geometry)."""
    n = image.GetDimension()
    direction = np.asarray(image.GetDirection()).reshape(n, n)[:3, :3]
    lps = np.eye(4)
    lps[:3, :3] = direction @ np.diag(image.GetSpacing()[:3])
    lps[:3, 3] = image.GetOrigin()[:3]
    return LPS_TO_RAS @ lps


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
    return array, _sitk_ijk_to_ras(image)


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
    ijk_to_ras = _sitk_ijk_to_ras(image)

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


@contextmanager
def atomic_output(path: str | Path, verify=None):
    """Yield a temporary path beside ``path`` (same suffix); rename it onto ``path`` on success.

    ``verify(temporary)`` checks what was written before it replaces anything (raising when it is not what was
    meant: some writers, ITK's among them, report a short write only on their console). On any error the
    temporary file is removed and ``path`` is left as it was; an ``OSError`` (a full disk, a file-size limit, a
    short write) becomes one :class:`InputError` naming ``path`` and the reason.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(
        prefix=f".{strip_suffix(path)}.", suffix=file_suffix(path) or ".tmp", dir=path.parent
    )
    os.close(handle)
    umask = os.umask(0)
    os.umask(umask)
    # mkstemp makes 0600: a new output gets the usual permissions, a replaced one (--overwrite) keeps its own
    os.chmod(temporary, path.stat().st_mode & 0o7777 if path.is_file() else 0o666 & ~umask)
    try:
        yield Path(temporary)
        if verify is not None:
            verify(Path(temporary))
        os.replace(temporary, path)
    except BaseException as error:
        if os.path.exists(temporary):
            os.remove(temporary)
        if isinstance(error, (OSError, RuntimeError)):  # the writers' own failures: ITK and torch raise RuntimeError
            reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error).strip()
            raise InputError(
                path, f"could not be written ({reason.splitlines()[-1] if reason else type(error).__name__})"
            ) from None
        raise


class ShortWrite(OSError):
    """What was read back from a file just written is not what was written."""


def check_room(path: str | Path, nbytes: int) -> None:
    """Refuse, naming ``path``, a write of about ``nbytes`` that the disk or this process's file-size limit cannot
    take (for writers that cannot fail safely half-way: ITK's HDF5 crashes the process at its exit after one)."""
    import shutil

    path = Path(path)
    needed = int(nbytes * 1.1) + 65536  # the format's own overhead
    free = shutil.disk_usage(path.parent if path.parent.exists() else Path.cwd()).free
    if free < needed:
        raise InputError(path, f"could not be written (it needs about {needed / 1e6:.1f} MB; {free / 1e6:.1f} MB free)")
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    except (ImportError, AttributeError):  # Windows has no file-size limit
        return
    if limit != resource.RLIM_INFINITY and limit < needed:
        raise InputError(path, f"could not be written (it needs about {needed} bytes; the file-size limit is {limit})")


def verify_png(path: Path) -> None:
    """A PNG just written ends with its IEND chunk (a short write cuts it off)."""
    with open(path, "rb") as handle:
        handle.seek(max(0, path.stat().st_size - 12))
        if not handle.read().endswith(b"IEND\xaeB`\x82"):
            raise ShortWrite("the picture was cut short")


def write_text(path: str | Path, text: str) -> None:
    """Write ``text`` as UTF-8 bytes (no newline translation) atomically, read back before it replaces anything
    (CSV, JSON, .ini files)."""
    data = text.encode("utf-8")

    def verify(temporary: Path) -> None:
        if temporary.read_bytes() != data:
            raise ShortWrite(f"{temporary.stat().st_size} of {len(data)} bytes were written")

    with atomic_output(path, verify) as temporary:
        temporary.write_bytes(data)


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

    return Volume(sitk.GetArrayFromImage(image), _sitk_ijk_to_ras(image))
