"""Live mode in Slicer: re-register whenever the ultrasound volume's voxels change.

Slicer's main thread holds Python's GIL in its event loop, so nothing here
computes off the main thread: the main thread copies each new US frame and
hands it to the registration worker (another process), and a ``QTimer``
(every :data:`POLL_MS`) takes the worker's reply and puts it into MRML. A
frame that arrives while the worker is busy replaces any frame still waiting
(:class:`~LabelRegLib.slicer.frame_queue.LatestFrameQueue`: the latest wins, none is
registered twice). ``statistics`` counts frames, drops, the frame-to-transform
latency and the main thread's own time per registered frame.
"""

from __future__ import annotations

import time
from typing import Callable

from .frame_queue import LatestFrameQueue
from .mrml_outputs import MovingFrame, fixed_volume

POLL_MS = 20  # how often the main thread takes the worker's replies


def new_statistics() -> dict:
    return {"frames": 0, "processed": 0, "dropped": 0, "latency_s": [], "main_thread_s": []}


def image_stamp(volume_node) -> int:
    """Changes whenever the voxels change (image data or its scalars array were modified)."""
    image = volume_node.GetImageData()
    if image is None:
        return -1
    scalars = image.GetPointData().GetScalars()
    return max(image.GetMTime(), scalars.GetMTime() if scalars is not None else 0)


class LiveSession:
    """Re-registers ``frame``'s MR to ``fixed_node`` on every new frame, on ``engine``.

    Args:
        engine: a :class:`~LabelRegLib.registration.worker_client.RegistrationWorker` (or its in-process stand-in).
        fixed_node: the US volume node that changes.
        frame: the MR of the registration (:func:`~LabelRegLib.slicer.mrml_outputs.moving_frame`).
        request: the engine request's options (``model``, ``device``, ``alignment``); the images are added here.
        apply: ``apply(reply, arrived_s)`` puts one registration into MRML (main thread).
        on_failure: ``on_failure(error)`` when a frame cannot be read or registered; the session stops first.
    """

    def __init__(
        self,
        engine,
        fixed_node,
        frame: MovingFrame,
        request: dict,
        apply: Callable,
        on_failure: Callable[[BaseException], None],
    ):
        import slicer
        import vtk

        base = dict(request, moving=frame.volume, world_to_moving=frame.world_to_moving)
        self.queue = LatestFrameQueue(engine, lambda fixed: dict(base, fixed=fixed))
        self.fixed_node = fixed_node
        self.apply = apply
        self.on_failure = on_failure
        self.statistics = new_statistics()
        self._stamp = image_stamp(fixed_node)
        self._main_thread_s: dict = {}  # frame id -> seconds the main thread spent copying it
        self._observers = [
            fixed_node.AddObserver(event, self.on_fixed_modified)
            for event in (slicer.vtkMRMLVolumeNode.ImageDataModifiedEvent, vtk.vtkCommand.ModifiedEvent)
        ]
        self._timer = _poll_timer(POLL_MS, self.process)

    @property
    def idle(self) -> bool:
        return self.queue.idle

    def on_fixed_modified(self, caller, event) -> None:
        """A new frame (main thread): copy the US voxels and hand them to the worker."""
        stamp = image_stamp(caller)
        if stamp == self._stamp:
            return  # a rename or display change: the voxels are the same
        started = time.perf_counter()
        self._stamp = stamp
        try:
            fixed = fixed_volume(caller)
            frame_id = self.queue.submit(fixed)
        except Exception as error:
            self._fail(error)
            return
        self._main_thread_s[frame_id] = time.perf_counter() - started
        self._count()

    def process(self) -> int:
        """Put the worker's finished registration into MRML (main thread; never waits); how many were applied."""
        applied = 0
        for frame in self.queue.poll():
            started = time.perf_counter()
            try:
                if frame.error is not None:
                    raise frame.error
                self.apply(frame.value, frame.submitted_s)
            except Exception as error:
                self._fail(error)
                return applied
            applied += 1
            # the copies of this frame and of the frames dropped before it, and this MRML update
            copies = self._main_thread_s
            copied = sum(copies.pop(n) for n in [n for n in copies if n <= frame.frame_id])
            self.statistics["latency_s"].append(time.perf_counter() - frame.submitted_s)
            self.statistics["main_thread_s"].append(copied + time.perf_counter() - started)
            self._count()
        return applied

    def wait(self, timeout_s: float) -> bool:
        """Process replies until no frame is waiting or at the worker (batch use, tests); False on time-out."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            idle = self.queue.idle
            self.process()
            if idle:
                return True
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        for tag in self._observers:
            self.fixed_node.RemoveObserver(tag)
        self._observers = []
        self.queue.stop()
        self._count()

    def _count(self) -> None:
        self.statistics.update(frames=self.queue.submitted, processed=self.queue.processed, dropped=self.queue.dropped)

    def _fail(self, error: BaseException) -> None:
        self.stop()
        self.on_failure(error)


def _poll_timer(interval_ms: int, callback):
    """A Qt timer calling ``callback`` on the main thread; None without a Qt event loop (tests call it)."""
    try:
        import qt

        timer = qt.QTimer()
    except (ImportError, AttributeError):
        return None
    timer.setInterval(interval_ms)
    timer.connect("timeout()", callback)
    timer.start()
    return timer
