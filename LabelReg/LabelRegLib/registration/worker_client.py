"""Registering from Slicer's process without computing in it: the client of the registration worker.

:class:`RegistrationWorker` starts :mod:`.registration_worker` with Slicer's
Python (``PythonSlicer``; this interpreter outside Slicer), sends it requests
and takes its replies. Nothing here blocks unless asked to: :meth:`submit`
writes a request (the worker reads it at once when idle), :meth:`result`
takes a finished reply if one has arrived (Slicer's ``QTimer`` calls it every
20 ms in live mode), :meth:`wait` blocks for one (the Register button, which
the user waits for anyway). No thread is started: the main thread reads the
pipe itself, so Slicer's hold on the GIL cannot starve anything.

A worker that ends (killed, out of memory, a CUDA error) turns its unfinished
requests into a one-line :class:`WorkerError`; the next request starts a new
worker and says so in :meth:`take_notes`. The worker ends with its parent
(``--parent``: even a killed Slicer leaves no worker behind) and when
:meth:`stop` closes its stdin.

:class:`InProcessEngine` has the same methods and runs
:func:`~LabelRegLib.registration.worker.handle` in the caller's process, for
callers that hold no Qt event loop (the batch script).
"""

from __future__ import annotations

import atexit
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from typing import Any


class WorkerError(RuntimeError):
    """The registration worker process ended before it answered."""


@dataclass
class JobResult:
    """The reply to one request."""

    job_id: int
    value: Any  # a RegistrationReply, or None (an error, or a ``load`` request)
    error: BaseException | None
    submitted_s: float  # time.perf_counter() when the request was sent
    finished_s: float  # ... when the reply was taken in


class RegistrationWorker:
    """A registration worker process and the requests it has not answered yet.

    Args:
        python: the interpreter to start the worker with (default: ``PythonSlicer`` where it is on the path,
            else this one).
        parent_pid: the worker ends when this process ends (default: this process).
    """

    def __init__(self, python: str | None = None, parent_pid: int | None = None):
        from ..core.processes import python_executable

        self.python = python or python_executable()
        self.parent_pid = os.getpid() if parent_pid is None else parent_pid
        self.process: subprocess.Popen | None = None
        self.devices: list[str] | None = None  # the devices the worker's torch can use (after its hello)
        self._stderr = None
        self._launched_s = 0.0
        self._pending: dict[int, float] = {}  # job id -> submitted time
        self._finished: dict[int, JobResult] = {}
        self._forgotten: set[int] = set()  # jobs whose replies nobody will take (a stopped live session's frame)
        self._notes: list[str] = []
        self._last_job = 0
        self._moving_sent = None  # the moving Volume the worker holds (sent again only when it changes)
        self._exit_registered = False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def busy(self) -> bool:
        """Requests sent and not answered yet."""
        return bool(self._pending)

    def start(self) -> None:
        """Start the worker process (it loads torch, then says hello); returns at once."""
        from ..core.processes import hidden_window_options, library_command
        from .worker import WORKER_MODULE

        self.stop()
        if self._stderr is not None:
            self._stderr.close()
        self._stderr = tempfile.TemporaryFile()
        command = library_command(self.python, WORKER_MODULE, ["--parent", str(self.parent_pid)])
        self._launched_s = time.perf_counter()
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            bufsize=0,  # unbuffered: what the pipe holds is what select / PeekNamedPipe see
            **hidden_window_options(),
        )
        self._moving_sent, self.devices = None, None
        if not self._exit_registered:
            atexit.register(self.stop)
            self._exit_registered = True

    def submit(self, request: dict) -> int:
        """Send a request (see :func:`~LabelRegLib.registration.worker.serve`); returns its job id at once.
        A worker that has ended is replaced first (:meth:`take_notes` says why)."""
        from .worker_channel import send

        if not self.alive:
            if self.process is not None:  # it ended since the last request: say so, fail what it still had
                self._notes.append(f"restarted the registration worker, which had stopped ({self._end_reason()})")
                self._worker_ended()
            self.start()
        self._last_job += 1
        message = dict(request, id=self._last_job, op=request.get("op", "register"))
        if "moving" in message:
            if message["moving"] is self._moving_sent:
                message["moving"] = None  # the worker still holds it
            else:
                self._moving_sent = message["moving"]
        try:
            send(self.process.stdin, message)
        except OSError:  # the worker ended while the request was written
            self._pending[self._last_job] = time.perf_counter()
            self._worker_ended()
            return self._last_job
        self._pending[self._last_job] = time.perf_counter()
        return self._last_job

    def result(self, job_id: int) -> JobResult | None:
        """The reply to ``job_id`` if it has arrived (never blocks); None while the worker is on it."""
        self._read_available()
        return self._finished.pop(job_id, None)

    def wait(self, job_id: int, timeout: float | None = None) -> JobResult:
        """Block until the reply to ``job_id`` arrives (replies to other jobs are kept for :meth:`result`)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while job_id not in self._finished:
            if job_id not in self._pending:
                raise KeyError(f"no request {job_id} was sent to this worker")
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"the registration worker has not answered in {timeout:g} s")
            if not self._read_available():
                time.sleep(0.002)
        return self._finished.pop(job_id)

    def forget(self, job_id: int) -> None:
        """Nobody will take the reply to ``job_id``: drop it when it comes."""
        if self._finished.pop(job_id, None) is None and job_id in self._pending:
            self._forgotten.add(job_id)

    def take_notes(self) -> list[str]:
        """What happened to the worker since the last call (started, restarted), for the status line."""
        notes, self._notes = self._notes, []
        return notes

    def stop(self, timeout: float = 5.0) -> None:
        """End the worker: close its stdin (it exits at once when idle), then end it if it does not."""
        from ..core.processes import end_process_tree

        process, self.process = self.process, None
        if process is None:
            return
        try:
            process.stdin.close()
            process.wait(timeout=timeout)
        except (OSError, subprocess.TimeoutExpired):
            end_process_tree(process, timeout)
        process.stdout.close()
        self._fail_pending("the registration worker was stopped")

    # ------------------------------------------------------------ reading replies
    def _read_available(self) -> bool:
        """Take in every message that has arrived; True when at least one did."""
        from .worker_channel import ChannelClosed, readable, receive

        took = False
        while self.process is not None and readable(self.process.stdout):
            try:
                message = receive(self.process.stdout)
            except ChannelClosed:
                self._worker_ended()
                return True
            took = True
            if message["kind"] == "hello":
                self.devices = message["devices"]
                self._notes.append(f"started the registration worker in {time.perf_counter() - self._launched_s:.1f} s")
            elif message["id"] in self._forgotten:
                self._forgotten.discard(message["id"])
                self._pending.pop(message["id"], None)
            else:
                submitted = self._pending.pop(message["id"], time.perf_counter())
                self._finished[message["id"]] = JobResult(
                    message["id"], message["value"], message["error"], submitted, time.perf_counter()
                )
        return took

    def _worker_ended(self) -> None:
        """The worker's pipe closed: its unanswered requests fail with why it ended (reported once: the next
        request starts a new worker without a note)."""
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)
        self._fail_pending()
        self.process = None

    def _end_reason(self) -> str:
        """How the worker ended, and the last line it printed (e.g. a Python error)."""
        code = self.process.returncode if self.process is not None else None
        reason = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        if self._stderr is not None:
            self._stderr.seek(0)
            lines = [line.strip() for line in self._stderr.read().decode(errors="replace").splitlines() if line.strip()]
            if lines:
                reason += f": {lines[-1][:300]}"
        return reason

    def _fail_pending(self, why: str | None = None) -> None:
        why = why or f"the registration worker stopped ({self._end_reason()}); the next registration starts a new one"
        for job_id, submitted in self._pending.items():
            self._finished[job_id] = JobResult(job_id, None, WorkerError(why), submitted, time.perf_counter())
        self._pending.clear()


class InProcessEngine:
    """The :class:`RegistrationWorker` methods, run in this process (for callers without a Qt event loop)."""

    def __init__(self, catalogue):
        self.catalogue = catalogue
        self.devices: list[str] | None = None
        self._finished: dict[int, JobResult] = {}
        self._last_job = 0

    def submit(self, request: dict) -> int:
        from ..core.device import available_devices
        from .worker import run

        self._last_job += 1
        started, value, error = time.perf_counter(), None, None
        try:
            value = run(self.catalogue, request)
        except Exception as caught:  # raised to the caller by wait(), as the worker's errors are
            error = caught
        self.devices = self.devices or available_devices()
        self._finished[self._last_job] = JobResult(self._last_job, value, error, started, time.perf_counter())
        return self._last_job

    def result(self, job_id: int) -> JobResult | None:
        return self._finished.pop(job_id, None)

    def wait(self, job_id: int, timeout: float | None = None) -> JobResult:
        return self._finished.pop(job_id)

    def forget(self, job_id: int) -> None:
        self._finished.pop(job_id, None)

    def take_notes(self) -> list[str]:
        return []

    def stop(self) -> None:
        pass
