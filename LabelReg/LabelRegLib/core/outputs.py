"""Output paths checked before any work: nothing the user had is replaced by accident.

Every command (and the batch script) names its inputs and outputs by the
option that gave them and calls :func:`check_outputs` first. An output is
refused when it is one of the inputs, when two outputs are the same file,
when it exists and the user did not ask to replace it (``--overwrite``), when
it cannot be written (read-only, a folder, under a file, in a read-only
folder), or when its file type is not one LabelReg writes for it.

Two runs given the same output would both pass that check before either
wrote it. So each approved output is also claimed, by creating a lock file
beside it exclusively (``.<name>.labelreg-lock``, with the claiming process's
id): the run that claims it second is refused in one line, whatever it was
given (``--overwrite`` replaces files, not another run's output). The claims
are released when the command ends (:func:`release_claims`, also at exit); a
lock left by a process that no longer runs (killed) is taken over.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import InputError
from .paths import OUTPUT_VOLUME_SUFFIXES, file_suffix, missing_file_problem, name_problem
from .transform_io import TRANSFORM_SUFFIXES

MODEL_SUFFIXES = (".pt",)
TRANSFORM_OUTPUT_SUFFIXES = (
    *TRANSFORM_SUFFIXES,
    *OUTPUT_VOLUME_SUFFIXES,
)  # ITK transforms, or a displacement-field image
CHECKPOINT_NAME = "checkpoint.pt"  # a run folder's checkpoint (checkpoint.py writes it)


def _file_key(path: Path) -> tuple:
    """What identifies a file: the device and inode of one that exists (a hard or symbolic link is the same
    file), else its absolute path with every link resolved. Keys are compared in dictionaries, so checking N
    outputs against M inputs takes N + M steps, not N x M."""
    try:
        status = os.stat(path)
        return ("inode", status.st_dev, status.st_ino)
    except (OSError, ValueError):  # not there (yet), a link loop, a name the system refuses
        return ("path", os.path.normcase(os.path.realpath(path)))


def _same_file(a: Path, b: Path) -> bool:
    return _file_key(a) == _file_key(b)


def _read_only(path: Path) -> bool:
    """No write permission for the user, by the mode bits too (root may write anything; LabelReg still won't)."""
    return not os.access(path, os.W_OK) or not path.stat().st_mode & stat.S_IWUSR


def _first_existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (which must be a writable folder for ``path`` to be written)."""
    while not path.exists():
        path = path.parent
    return path


def _writable_problem(path: Path) -> str:
    """Why ``path`` cannot be written as a file ("" when it can)."""
    if path.is_dir():
        return "is a folder, not a file"
    if path.exists() and _read_only(path):
        return "is read-only"
    parent = _first_existing(path.parent)
    if not parent.is_dir():
        return f"cannot be written: {parent} is a file, not a folder"
    if _read_only(parent):
        return f"cannot be written: the folder {parent} is read-only"
    return ""


def check_outputs(
    outputs: dict, inputs: dict | None = None, overwrite: bool = False, suffixes: dict | None = None
) -> None:
    """Raise :class:`InputError` naming the option and the file of the first output that must not be written.

    Args:
        outputs: option name (e.g. ``--warped-image``) -> output path, or None when not asked for.
        inputs: option name -> input path (or None); no output may be one of them.
        overwrite: whether existing outputs may be replaced (``--overwrite``).
        suffixes: option name -> the file types allowed for that output.
    """
    given_inputs = {_file_key(Path(path).expanduser()): name for name, path in (inputs or {}).items() if path}
    seen: dict[tuple, str] = {}
    for name, value in outputs.items():
        if not value:
            continue
        path = Path(value).expanduser()
        allowed = (suffixes or {}).get(name)
        if allowed and file_suffix(path) not in allowed:
            raise InputError(f"{name} {path}", f"unsupported file type '{file_suffix(path)}'; use {', '.join(allowed)}")
        key = _file_key(path)
        if key in given_inputs:
            raise InputError(
                f"{name} {path}", f"is also the {given_inputs[key]} input; it would be destroyed: choose another file"
            )
        if key in seen:
            raise InputError(f"{name} {path}", f"is also the {seen[key]} output: choose two files")
        problem = name_problem(path, output=True) or _writable_problem(path)
        if problem:
            raise InputError(f"{name} {path}", problem)
        _claim(path, name)
        if path.exists() and not overwrite:  # checked after the claim: another run may just have written it
            raise InputError(f"{name} {path}", "exists; pass --overwrite to replace it")
        seen[key] = name


_claims: dict[Path, Path] = {}  # output -> its lock file, held by this process


def _lock_file(path: Path) -> Path:
    return path.with_name(f".{path.name}.labelreg-lock")


def _claim(path: Path, name: str) -> None:
    """Create ``path``'s lock file exclusively (once per process); refused when another run holds it."""
    path = Path(os.path.abspath(path))
    if path in _claims or not path.parent.is_dir():  # a folder yet to be made has no other writer to race
        return
    lock = _lock_file(path)
    try:
        handle = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        owner = lock.read_text(errors="replace").strip() if lock.is_file() else "?"
        if owner.isdigit() and not _alive(int(owner)):  # left by a run that was killed: taken over
            lock.unlink(missing_ok=True)
            return _claim(path, name)
        raise InputError(
            f"{name} {path}",
            f"is being written by another LabelReg run (process {owner or '?'}); if none runs, delete {lock.name}",
        ) from None
    except OSError:  # a folder that takes no lock file (read-only: refused by the checks that follow)
        return
    with os.fdopen(handle, "w") as stream:
        stream.write(str(os.getpid()))
    if not _claims:
        import atexit

        atexit.register(release_claims)
    _claims[path] = lock


def _alive(pid: int) -> bool:
    from ..core.processes import process_alive

    return pid == os.getpid() or process_alive(pid)


def release_claims() -> None:
    """Remove the lock files this process created (the command has ended)."""
    while _claims:
        _path, lock = _claims.popitem()
        try:
            os.remove(lock)
        except OSError:
            pass


def check_rows(rows: list, inputs: dict, outputs: dict, overwrite: bool, source: str | None = None, model=None) -> None:
    """:func:`check_outputs` over a table of jobs, every output against every input of every row; every input
    there.

    Args:
        rows: ``(row number, {column: path})`` pairs (one row for a single job given by options).
        inputs: input column -> its option name.
        outputs: output column -> ``(option name, allowed file types)``.
        overwrite: whether existing outputs may be replaced.
        source: the CSV the rows come from: files are then named ``<source>: row N <column>``, else by option.
        model: the model file, an input too.
    """

    def name(n, column, option):
        return f"{source}: row {n} {column}" if source else option

    given, written, suffixes = {"--model": model}, {}, {}
    for n, row in rows:
        for column, option in inputs.items():
            problem = missing_file_problem(row[column]) if row.get(column) else ""
            if problem:  # found before the first pair is registered, not after hours of them
                raise InputError(f"{name(n, column, option)} {row[column]}", problem)
            given[name(n, column, option)] = row.get(column)
        for column, (option, allowed) in outputs.items():
            written[name(n, column, option)] = row.get(column)
            suffixes[name(n, column, option)] = allowed
    check_outputs(written, given, overwrite, suffixes)


def check_output_folder(name: str, folder: str | Path) -> Path:
    """A folder LabelReg writes its own files into (``--output``): it may exist, but must be a writable folder."""
    folder = Path(folder).expanduser()
    if folder.exists() and not folder.is_dir():
        raise InputError(f"{name} {folder}", "is a file, not a folder")
    probe = _first_existing(folder)
    if not probe.is_dir():
        raise InputError(f"{name} {folder}", f"cannot be created: {probe} is a file, not a folder")
    if _read_only(probe):
        raise InputError(f"{name} {folder}", f"cannot be written: {probe} is read-only")
    return folder


LOCK_NAME = ".labelreg-train.lock"


class RunFolder:
    """A training's output folder, claimed for one training at a time (a lock file holding the process id).

    Args:
        folder: the run folder (checkpoint, metrics, config.ini).
        model_path: the final model file it will write.
        resume: continuing the folder's training (its checkpoint must exist, its settings must match).
        overwrite: starting again over a folder that holds a training.
        config: the training settings, compared with the folder's ``config.ini`` when resuming.
        inputs: option name -> input path that the model must not replace (the initial model).
    """

    def __init__(self, folder, model_path, resume: bool, overwrite: bool, config, inputs: dict | None = None):
        self.folder = Path(folder).expanduser()
        self.lock = self.folder / LOCK_NAME
        check_output_folder("--output_dir", self.folder)
        check_outputs(
            {"--file_model_save": model_path}, inputs, overwrite=True, suffixes={"--file_model_save": MODEL_SUFFIXES}
        )
        checkpoint, model = self.folder / CHECKPOINT_NAME, Path(model_path).expanduser()
        if resume:
            if not checkpoint.is_file():
                raise InputError(
                    f"--output_dir {self.folder}", "has no checkpoint.pt to resume; start without --resume"
                )
            self._check_same_settings(config)
            return
        in_folder = os.path.abspath(model.parent) == os.path.abspath(self.folder)
        if not overwrite and (checkpoint.exists() or in_folder and model.exists()):
            held = checkpoint if checkpoint.exists() else model
            raise InputError(
                f"--output_dir {self.folder}",
                f"holds a training already ({held.name}); --resume continues it, --overwrite starts again",
            )
        if not overwrite and model.exists():  # a model file elsewhere: the folder itself may be new
            raise InputError(f"--file_model_save {model}", "exists; pass --overwrite to replace it")

    def _check_same_settings(self, config) -> None:
        """Resuming with other settings would silently change the result, and a model file this training did not
        write would be replaced: refuse, naming them."""
        from .config import train_config_from_ini, training_record

        where, written = f"--output_dir {self.folder}", self.folder / "config.ini"
        if not written.is_file():
            raise InputError(where, "has no config.ini to check the settings against; start a new run instead")
        earlier = train_config_from_ini(written)
        before, now = training_record(earlier), training_record(config)
        changed = [key for key in now if key != "total_iterations" and before.get(key) != now[key]]
        if changed:
            listed = ", ".join(f"{key} {before.get(key)!r} -> {now[key]!r}" for key in changed)
            raise InputError(
                where,
                f"was trained with other settings ({listed}); resume with the same ones "
                "(only total_iterations may change), or start a new run",
            )
        model = config.model_path()
        own = Path(earlier.file_model_save).expanduser() if earlier.file_model_save else self.folder / "model.pt"
        if model.exists() and not _same_file(model, own):
            raise InputError(
                f"--file_model_save {model}",
                f"exists and was not written by the training in {self.folder} (it writes {own}); choose a new file",
            )

    def __enter__(self) -> RunFolder:
        from ..core.processes import process_alive

        self.folder.mkdir(parents=True, exist_ok=True)
        while True:
            try:
                handle = os.open(self.lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
                break
            except FileExistsError:
                text = self.lock.read_text().strip() if self.lock.is_file() else ""
                if text.isdigit() and process_alive(int(text)) and int(text) != os.getpid():
                    raise InputError(
                        f"--output_dir {self.folder}", f"another training (process {text}) is writing to it"
                    ) from None
                self.lock.unlink(missing_ok=True)  # left by a training that ended without cleaning up
        with os.fdopen(handle, "w") as lock:
            lock.write(str(os.getpid()))
        return self

    def __exit__(self, *exc) -> None:
        self.lock.unlink(missing_ok=True)


def run_folder(config, resume: bool, overwrite: bool) -> RunFolder:
    """The run folder of a training's settings, checked for a new training (``overwrite``) or a ``resume``; enter it
    to hold it."""
    inputs = {"--initial_model": config.initial_model or None}
    return RunFolder(Path(config.output_dir).expanduser(), config.model_path(), resume, overwrite, config, inputs)
