"""A stream of frames registered one at a time, where the latest frame wins.

Live ultrasound updates a volume many times a second, and one registration
takes longer than a frame. :class:`LatestFrameQueue` keeps at most one frame
at the engine (the registration worker, :mod:`.worker_client`) and at most one
waiting: a new frame replaces the waiting one (counted as dropped, never
registered), and the waiting frame goes to the engine as soon as the previous
one is done. Everything happens on the caller's thread, in calls that return at
once: :meth:`submit` when a frame arrives, :meth:`poll` from a timer (in
Slicer, a ``QTimer`` on the main thread, the only thread that may change MRML
nodes). No thread, no Qt, no Slicer: tested under plain pytest.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable


@dataclass
class FrameResult:
    """What became of one registered frame."""

    frame_id: int
    value: Any  # the engine's reply (None when it failed)
    error: BaseException | None
    submitted_s: float  # time.perf_counter() when the frame arrived
    finished_s: float  # ... when its reply was taken in

    @property
    def latency_s(self) -> float:
        """From the frame's arrival to its result."""
        return self.finished_s - self.submitted_s


class LatestFrameQueue:
    """Frames to an engine (``submit(request) -> job id``, ``result(job id) -> JobResult or None``, ``forget(job
    id)``), one at a time.

    ``request(frame)`` makes the engine's request for a frame. Counters:
    ``submitted``, ``processed`` (frames the engine finished) and ``dropped``
    (frames replaced before they were sent); always ``submitted == processed +
    dropped + (1 if one is at the engine) + (1 if one is waiting)``.
    """

    def __init__(self, engine, request: Callable[[Any], dict]):
        self.engine = engine
        self.request = request
        self.submitted = 0
        self.processed = 0
        self.dropped = 0
        self._running: tuple | None = None  # (frame id, job id, arrival time)
        self._waiting: tuple | None = None  # (frame id, frame, arrival time)

    @property
    def idle(self) -> bool:
        """No frame at the engine or waiting (call :meth:`poll` to take a finished one)."""
        return self._running is None and self._waiting is None

    def submit(self, frame: Any) -> int:
        """A new frame: sent now if the engine is free, else it replaces any frame still waiting; its id."""
        if self._waiting is not None:
            self.dropped += 1
        self.submitted += 1
        self._waiting = (self.submitted, frame, time.perf_counter())
        if self._running is None:
            self._send_waiting()
        return self.submitted

    def poll(self) -> list[FrameResult]:
        """The frame the engine finished since the last call (at most one; never blocks); sends the waiting one."""
        if self._running is None:
            return []
        frame_id, job_id, arrived_s = self._running
        reply = self.engine.result(job_id)
        if reply is None:
            return []
        self._running = None
        self.processed += 1
        if self._waiting is not None:
            self._send_waiting()
        return [FrameResult(frame_id, reply.value, reply.error, arrived_s, reply.finished_s)]

    def stop(self) -> None:
        """Forget the waiting frame (dropped) and any frame at the engine (the engine drops its reply)."""
        if self._waiting is not None:
            self.dropped += 1
        if self._running is not None:
            self.engine.forget(self._running[1])
        self._waiting = self._running = None

    def _send_waiting(self) -> None:
        frame_id, frame, arrived_s = self._waiting
        self._waiting = None
        self._running = (frame_id, self.engine.submit(self.request(frame)), arrived_s)
