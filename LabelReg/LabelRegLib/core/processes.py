"""LabelReg's own processes, on Windows, macOS and Linux alike: start one, know whether one runs, end a whole tree.

The registration worker, the Slicer panel's data check and training, and the output claims all need these; no
Qt, no MRML, no torch:

- :func:`library_command` runs a module of the ``LabelRegLib`` that is imported here (found through
  ``LabelRegLib.__file__``, wherever the extension is installed) with the Python that has Slicer's packages;
- :func:`launch_hidden` starts a process as Slicer's ``slicer.util.launchConsoleProcess`` does (output piped, no
  console window on Windows);
- :func:`process_alive` and :func:`end_process_tree` (psutil where installed, else ``taskkill /T`` on Windows and
  ``pgrep -P`` elsewhere);
- :func:`watch_parent`: the child's side of ``--exit-with-parent``, so that a process ends with the application
  that started it, even after a crash.
"""

from __future__ import annotations

import os
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
