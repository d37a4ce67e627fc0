"""File names: which format a path holds, the case name in it, and why a path cannot be read or written.

The suffixes LabelReg reads and writes are defined here once; :mod:`.io` reads and writes the volumes,
:mod:`.writes` makes every write atomic and verified.
"""

from __future__ import annotations

import os
from pathlib import Path

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
