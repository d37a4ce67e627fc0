"""Every file LabelReg writes goes through here: written beside its target under a temporary name, checked, then
renamed into place, so that a full disk, a file-size limit or a writer's error leaves the old file as it was.
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError
from .paths import file_suffix, strip_suffix


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
