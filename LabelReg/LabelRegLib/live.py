"""Work on a stream of frames in a background thread, where the latest frame wins.

Live ultrasound updates a volume many times a second, and one registration
takes longer than a frame. :class:`LatestFrameWorker` keeps at most one frame
waiting: a new frame replaces the waiting one (which is counted as dropped,
never processed), the worker thread runs ``work(frame)`` on the newest, and the
results wait in a queue until the owner collects them with :meth:`poll` on its
own thread (in Slicer, the main thread, polled by a ``QTimer``; only there may
MRML nodes change). torch releases the GIL while the network runs, so the
owner's thread stays responsive. No Qt, no Slicer: tested under plain pytest.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class FrameResult:
    """What became of one processed frame."""

    frame_id: int
    value: Any  # what ``work`` returned (None when it raised)
    error: BaseException | None
    submitted_s: float  # time.perf_counter() when the frame was submitted
    finished_s: float  # ... when ``work`` returned

    @property
    def latency_s(self) -> float:
        """From the frame's arrival to its result (not counting the wait for :meth:`LatestFrameWorker.poll`)."""
        return self.finished_s - self.submitted_s


class LatestFrameWorker:
    """A daemon thread that runs ``work(frame)`` on the newest submitted frame, one at a time.

    Counters: ``submitted``, ``processed`` (frames ``work`` ran on) and
    ``dropped`` (frames replaced before the worker took them); always
    ``submitted == processed + dropped + (1 if one is waiting)``.
    """

    def __init__(self, work: Callable[[Any], Any], name: str = "LabelReg live registration"):
        self.work = work
        self.submitted = 0
        self.processed = 0
        self.dropped = 0
        self._condition = threading.Condition()
        self._waiting: tuple | None = None  # (frame id, frame, submitted time)
        self._results: list[FrameResult] = []
        self._busy = False
        self._stopped = False
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, frame: Any) -> int:
        """Queue ``frame`` for the worker, replacing a frame still waiting; returns the frame's id."""
        with self._condition:
            if self._stopped:
                raise RuntimeError("the live worker was stopped")
            if self._waiting is not None:
                self.dropped += 1
            self.submitted += 1
            self._waiting = (self.submitted, frame, time.perf_counter())
            self._condition.notify()
            return self.submitted

    def poll(self) -> list[FrameResult]:
        """The results finished since the last call, oldest first (never blocks)."""
        with self._condition:
            results, self._results = self._results, []
        return results

    @property
    def idle(self) -> bool:
        """No frame waiting or being processed (results may still wait for :meth:`poll`)."""
        with self._condition:
            return self._waiting is None and not self._busy

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until :attr:`idle` (tests and batch use); False on time-out."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._condition:
            while self._waiting is not None or self._busy:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return False
                self._condition.wait(remaining)
        return True

    def stop(self, timeout: float = 10.0) -> None:
        """Drop any waiting frame and end the thread after the frame in progress (results are discarded)."""
        with self._condition:
            self._stopped = True
            if self._waiting is not None:
                self.dropped += 1
                self._waiting = None
            self._condition.notify_all()
        if self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            with self._condition:
                while self._waiting is None and not self._stopped:
                    self._condition.wait()
                if self._stopped:
                    return
                frame_id, frame, submitted_s = self._waiting
                self._waiting = None
                self._busy = True
            value, error = None, None
            try:
                value = self.work(frame)
            except Exception as caught:  # reported to the owner through poll(), never lost in this thread
                error = caught
            with self._condition:
                self.processed += 1
                self._busy = False
                if not self._stopped:
                    self._results.append(FrameResult(frame_id, value, error, submitted_s, time.perf_counter()))
                self._condition.notify_all()
