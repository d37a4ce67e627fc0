"""Training in a background process: start it, follow its progress without blocking, stop its whole tree.

The LabelRegTraining module runs ``labelreg train --progress-json`` in a
separate process so that the GUI never waits on training. This file holds all
of it that needs no Qt and no MRML (the process helpers are :mod:`..core.processes`):

- :func:`train_command` runs the ``labelreg train`` of the ``LabelRegLib``
  that is imported here, with ``--exit-with-parent`` so the training ends
  when the application that started it is gone (even after a crash);
- :class:`TrainingProcess` launches it (by default as Slicer's
  ``slicer.util.launchConsoleProcess`` does), reads its JSON progress lines in a thread (reading a pipe, no
  compute), and :meth:`stop` ends the process and every child it has.
"""

from __future__ import annotations

import atexit
import json
import queue
import subprocess
import threading
from typing import Callable

from ..core.processes import end_process_tree, launch_hidden, library_command, python_executable


def train_command(python: str | None, arguments: list[str], parent_pid: int | None = None) -> list[str]:
    """``python`` (None: :func:`~..core.processes.python_executable`, Slicer's PythonSlicer inside Slicer) running
    ``labelreg train ARGUMENTS --progress-json`` from :func:`~..core.processes.library_folder`, unbuffered."""
    command = library_command(python or python_executable(), "cli", ["train", *arguments, "--progress-json"])
    if parent_pid is not None:
        command += ["--exit-with-parent", str(parent_pid)]
    return command


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
