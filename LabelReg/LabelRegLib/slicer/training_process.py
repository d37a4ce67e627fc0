"""Training in a background process: start it, follow its progress without blocking, stop its whole tree.

The LabelRegTraining module runs ``labelreg train --progress-json`` in a
separate process so that the GUI never waits on training. This file holds all
of it that needs no Qt and no MRML, on Windows, macOS and Linux alike:

- :func:`train_command` runs the ``labelreg train`` of the ``LabelRegLib``
  that is imported here (found through ``LabelRegLib.__file__``, wherever the
  extension is installed), with ``--exit-with-parent`` so the training ends
  when the application that started it is gone (even after a crash);
- :class:`TrainingProcess` launches it (by default as Slicer's
  ``slicer.util.launchConsoleProcess`` does: output piped, no console window on
  Windows), reads its JSON progress lines in a thread, and :meth:`stop` ends
  the process and every child it has (psutil where installed, else
  ``taskkill /T`` on Windows and ``pgrep -P`` elsewhere);
- :func:`watch_parent` is the training side of ``--exit-with-parent``.
"""

from __future__ import annotations

import atexit
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

# Started with ``python -u -c BOOTSTRAP <folder holding LabelRegLib> <module> ...``: the folder is put first on
# sys.path, so the process runs the LabelRegLib of the caller, not one that PYTHONPATH happens to find, and the
# module's ``main()`` parses the rest.
BOOTSTRAP = (
    "import sys, importlib; sys.path.insert(0, sys.argv.pop(1)); "
    "sys.exit(importlib.import_module('LabelRegLib.' + sys.argv.pop(1)).main())"
)
CREATE_NO_WINDOW = 0x08000000  # Windows process creation flag (subprocess.CREATE_NO_WINDOW, Windows-only attribute)


def library_folder() -> str:
    """The folder that holds the imported ``LabelRegLib`` package (a module folder of the installed extension)."""
    import LabelRegLib

    return str(Path(LabelRegLib.__file__).resolve().parent.parent)


def python_executable() -> str:
    """The Python to start LabelReg's processes with: Slicer's ``PythonSlicer`` inside Slicer (the same
    packages as Slicer's own Python), else this interpreter."""
    return shutil.which("PythonSlicer") or sys.executable


def library_command(python: str, module: str, arguments: list[str]) -> list[str]:
    """``python`` running ``LabelRegLib.<module>.main()`` from :func:`library_folder` with ``arguments``, unbuffered."""
    return [python, "-u", "-c", BOOTSTRAP, library_folder(), module, *arguments]


def train_command(python: str, arguments: list[str], parent_pid: int | None = None) -> list[str]:
    """``python`` running ``labelreg train ARGUMENTS --progress-json`` from :func:`library_folder`, unbuffered."""
    command = library_command(python, "cli", ["train", *arguments, "--progress-json"])
    if parent_pid is not None:
        command += ["--exit-with-parent", str(parent_pid)]
    return command


def hidden_window_options() -> dict:
    """``subprocess.Popen`` options that start a process without a console window on Windows (none elsewhere)."""
    if os.name != "nt":
        return {}
    info = subprocess.STARTUPINFO()
    info.dwFlags = subprocess.STARTF_USESHOWWINDOW
    info.wShowWindow = 0  # SW_HIDE
    return {"startupinfo": info}


def launch_hidden(arguments: list[str]) -> subprocess.Popen:
    """Start a process with stdout and stderr piped together as text, without a console window on Windows
    (what ``slicer.util.launchConsoleProcess`` does; this is its stand-in outside Slicer)."""
    return subprocess.Popen(
        arguments, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, universal_newlines=True, **hidden_window_options()
    )


# ---------------------------------------------------------------- process trees
def process_alive(pid: int) -> bool:
    """Whether process ``pid`` still runs (psutil where installed; never signals the process)."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        return psutil.pid_exists(pid)
    if os.name == "nt":  # os.kill would terminate the process on Windows: ask the kernel instead
        import ctypes

        kernel32 = ctypes.windll.kernel32
        handle = kernel32.OpenProcess(0x00100000, False, pid)  # SYNCHRONIZE
        if not handle:
            return False
        try:
            return kernel32.WaitForSingleObject(handle, 0) == 0x102  # WAIT_TIMEOUT: not signalled, still running
        finally:
            kernel32.CloseHandle(handle)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _children_posix(pid: int) -> list[int]:
    """Every descendant of ``pid``, found with ``pgrep -P`` (Linux and macOS)."""
    found, frontier = [], [pid]
    while frontier:
        result = subprocess.run(["pgrep", "-P", str(frontier.pop())], capture_output=True, text=True)
        children = [int(n) for n in result.stdout.split()]
        found += children
        frontier += children
    return found


def end_process_tree(process: subprocess.Popen, timeout: float = 10.0) -> None:
    """End ``process`` and all its descendants: ask politely first (SIGTERM; on Windows there is no
    polite way for a windowless process), then force whatever is left after ``timeout`` / 2 seconds."""
    try:
        import psutil
    except ImportError:
        psutil = None
    if psutil is not None:
        # the root is waited for through Popen alone: a psutil wait would reap it and leave Popen an exit code of 0
        try:
            descendants = psutil.Process(process.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            descendants = []
        process.terminate()
        for member in descendants:
            try:
                member.terminate()
            except psutil.NoSuchProcess:
                pass
        try:
            process.wait(timeout=timeout / 2)
        except subprocess.TimeoutExpired:
            process.kill()
        _gone, alive = psutil.wait_procs(descendants, timeout=timeout / 2)
        for member in alive:
            try:
                member.kill()
            except psutil.NoSuchProcess:
                pass
    elif os.name == "nt":
        subprocess.run(
            ["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True, creationflags=CREATE_NO_WINDOW
        )
    else:
        tree = _children_posix(process.pid) + [process.pid]
        for pid in tree:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout / 2
        while time.monotonic() < deadline and (process.poll() is None or any(process_alive(pid) for pid in tree[:-1])):
            time.sleep(0.05)
        for pid in tree:
            if process_alive(pid):
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
    try:
        process.wait(timeout=timeout / 2)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout / 2)


def interrupt_main() -> None:
    """Interrupt this process's main thread as the ``labelreg`` command's SIGTERM handler does (KeyboardInterrupt:
    temporary files removed, "interrupted"). Through SIGTERM on POSIX, not SIGINT: a process started from a
    background job inherits SIGINT ignored, and ``_thread.interrupt_main`` then does nothing."""
    import _thread

    if os.name == "nt" or signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, signal.SIG_IGN, None):
        _thread.interrupt_main()  # Windows has no catchable SIGTERM; without a handler SIGTERM would kill at once
    else:
        signal.raise_signal(signal.SIGTERM)


def watch_parent(
    pid: int, on_gone: Callable[[], None] | None = None, interval_s: float = 1.0, what: str = "labelreg train"
) -> threading.Thread:
    """Call ``on_gone`` (default: :func:`interrupt_main`, which the ``labelreg`` command reports as "interrupted")
    once process ``pid`` has ended; checks every ``interval_s`` in a daemon thread. ``what`` names this process in
    the message."""
    on_gone = on_gone or interrupt_main

    def watch():
        while process_alive(pid):
            time.sleep(interval_s)
        print(
            f"{what}: the process that started it ({pid}) has ended; stopping",
            file=sys.stderr,
            flush=True,
        )
        on_gone()

    thread = threading.Thread(target=watch, name="labelreg parent watch", daemon=True)
    thread.start()
    return thread


# ---------------------------------------------------------------- the training process
class TrainingProcess:
    """One ``labelreg train --progress-json`` process and what it reported.

    :meth:`poll` must be called regularly (the panel does it on a timer): it
    returns the progress records read since the last call, never blocks, and
    notices the end of the process. ``state`` is ``idle``, ``running``,
    ``stopping``, ``stopped`` (ended by :meth:`stop`), ``finished`` (exit 0)
    or ``crashed``.
    """

    def __init__(self, launch: Callable[[list[str]], subprocess.Popen] | None = None):
        self.launch = launch or launch_hidden
        self.process: subprocess.Popen | None = None
        self.state = "idle"
        self.progress: dict = {}  # the latest values of every progress field (step, total, loss, val_dice, ...)
        self.output_tail: list[str] = []  # the last lines that were not progress records (errors, warnings)
        self.context: dict = {}  # what the caller keeps with this run (the panel: its output model, its table)
        self._lines: queue.Queue = queue.Queue()
        self._registered_exit = False

    @property
    def is_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def start(self, command: list[str]) -> int:
        """Launch ``command`` (see :func:`train_command`); returns the process id at once."""
        if self.is_running:
            raise RuntimeError("a training is already running; stop it first")
        self.process = self.launch(command)
        self.state = "running"
        self.progress, self.output_tail, self._lines = {}, [], queue.Queue()
        threading.Thread(
            target=self._read, args=(self.process.stdout, self._lines), name="labelreg train output", daemon=True
        ).start()
        if not self._registered_exit:  # the application exits normally: the training ends with it
            atexit.register(self.stop)
            self._registered_exit = True
        return self.process.pid

    @staticmethod
    def _read(stream, lines: queue.Queue) -> None:
        for line in stream:
            lines.put(line.rstrip("\n"))

    def stop(self, timeout: float = 10.0) -> None:
        """End the training process tree; its last checkpoint (written atomically) stays usable for resuming."""
        if not self.is_running:
            return
        self.state = "stopping"
        end_process_tree(self.process, timeout)
        self.poll()

    def poll(self) -> list[dict]:
        """Progress records printed since the last call; updates ``progress``, ``output_tail`` and ``state``."""
        records = []
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                record = None
            if not isinstance(record, dict) or "event" not in record:
                self.output_tail = (self.output_tail + [line])[-20:]
                continue
            if record["event"] in ("start", "step", "validation"):
                self.progress.update({k: v for k, v in record.items() if k != "event"})
            records.append(record)
        if self.process is not None and self.state in ("running", "stopping") and self.process.poll() is not None:
            code = self.process.returncode
            self.state = "finished" if code == 0 else "stopped" if self.state == "stopping" else "crashed"
        return records

    def end_reason(self) -> str:
        """How the process ended: ``exit code N`` or ``killed by signal N`` (its last lines are in ``output_tail``)."""
        code = self.process.returncode if self.process is not None else None
        return f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"

    def latest_text(self) -> str:
        """One line: step, loss, validation metrics and the remaining time."""
        r = self.progress
        if "step" not in r:
            return ""
        text = f"step {r['step']}/{r.get('total', '?')}"
        if "loss" in r:
            text += f", loss {r['loss']:.4f}"
        if "val_dice" in r:
            text += f", validation Dice {r['val_dice']:.3f}, TRE {r['val_tre_mm']:.1f} mm"
        if "eta_s" in r:
            text += f", ETA {r['eta_s'] / 60:.1f} min"
        return text
