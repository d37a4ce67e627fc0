"""The registration worker: a process that keeps models loaded and registers the pairs it is sent.

Slicer's main thread holds Python's GIL while it waits in the Qt event loop,
so a Python thread in Slicer's process computes only in the gaps between the
main thread's Python calls (docs/design.md, "Slicer specifics"). LabelReg
therefore registers in another process, as Slicer's CLI modules do: this one,
started by :class:`~LabelRegLib.registration.worker_client.RegistrationWorker` with Slicer's
own Python. It loads a model once (the :class:`~LabelRegLib.registration.model_catalogue.ModelCatalogue`
cache), reads requests from its stdin and writes replies to its stdout
(:mod:`.worker_channel`), one request at a time, and ends when its stdin
closes or, with ``--parent PID``, when that process is gone, even if it was
killed. A bad input is a reply carrying the error; the worker goes on.

:func:`handle` is the whole work of one request. The worker calls it, and so
does a caller that registers in its own process (the batch script, the
command line): both paths give the same :class:`RegistrationReply`. This
module imports no torch until a request runs, so that Slicer's process can
unpickle the replies without it.
"""

from __future__ import annotations

import os
import pickle
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from ..core.volume import Volume

WORKER_MODULE = __name__.split(".", 1)[
    1
]  # "registration.worker": started as ``LabelRegLib.registration.worker.main()``


@dataclass
class RegistrationReply:
    """One registration, in plain types that need no torch to unpickle.

    ``displacement`` maps fixed world RAS ``x`` to the moving volume's own RAS
    (``world_to_moving`` of the request applied to ``x + u(x)``), on the fixed
    grid, mm. ``labels``: the request's labels, nearest-neighbour resampled onto
    that grid (None when none were sent).
    """

    displacement: Volume
    labels: Volume | None
    quality: object  # quality.Quality, or None without a gland model
    glands: tuple  # the predicted (MR, US) gland probabilities as Volumes, when a gland model ran
    warnings: list
    device: str
    runtime_s: float  # the engine's registration, seconds
    stage_s: dict = field(default_factory=dict)
    load_s: float = 0.0  # loading the model for this request (0 when it was loaded already)


def run(catalogue, request: dict) -> RegistrationReply | None:
    """Answer one request: ``op`` ``load`` loads the model of ``model`` and ``device`` (no reply value), any
    other op registers (:func:`handle`)."""
    if request.get("op") == "load":
        catalogue.registrar(request.get("model"), request.get("device", "auto"))
        return None
    return handle(catalogue, request)


def handle(catalogue, request: dict) -> RegistrationReply:
    """Register one request: ``moving`` and ``fixed`` (world RAS Volumes), ``model`` (path or None for the bundled
    one), ``device``, ``alignment``, ``world_to_moving`` (4x4: world RAS to the moving volume's own RAS) and
    ``labels`` (a Volume in the moving volume's own RAS, or None)."""
    from .registrar import warp_volume

    started = time.perf_counter()
    registrar = catalogue.registrar(request.get("model"), request.get("device", "auto"))
    load_s = time.perf_counter() - started
    result = registrar.register(request["moving"], request["fixed"], request.get("alignment"), warn=False)
    displacement = to_moving_frame(result.displacement, request.get("world_to_moving", np.eye(4)))
    labels = request.get("labels")
    if labels is not None:
        labels = warp_volume(labels, displacement, interpolation="nearest")
    return RegistrationReply(
        displacement,
        labels,
        result.quality,
        tuple(gland.probability for gland in result.glands),
        list(result.warnings),
        result.device,
        result.runtime_s,
        dict(result.stage_s),
        load_s if load_s > 0.05 else 0.0,  # a cached model is a dictionary look-up
    )


def to_moving_frame(displacement: Volume, world_to_moving: np.ndarray) -> Volume:
    """Re-express a world-to-world field ``x -> x + u(x)`` as world-to-moving-frame: ``x -> M (x + u(x))``."""
    from .network_field import compose_with_initial

    if np.allclose(world_to_moving, np.eye(4)):
        return displacement
    array = compose_with_initial(displacement.array.astype(np.float64), displacement, world_to_moving)
    return displacement.with_array(array.astype(np.float32))


def transportable(error: BaseException) -> BaseException:
    """``error`` itself when the other process can unpickle it without torch (LabelReg's and Python's own
    exceptions); otherwise a ``RuntimeError`` with its class name and message (e.g. torch's out-of-memory)."""
    if type(error).__module__ in ("builtins", "LabelRegLib.core.errors"):
        try:
            pickle.loads(pickle.dumps(error))
            return error
        except Exception:
            pass
    return RuntimeError(f"{type(error).__name__}: {error}")


def serve(requests, replies, catalogue) -> None:
    """Answer requests (:func:`run`) until ``requests`` closes. Each is a dict with an ``id`` that its reply
    carries; a ``moving`` of None is the previous request's moving volume (sent once for a stream of frames)."""
    from .worker_channel import ChannelClosed, receive, send

    moving = None
    while True:
        try:
            request = receive(requests)
        except ChannelClosed:
            return
        value, error = None, None
        moving = request["moving"] if request.get("moving") is not None else moving
        try:
            value = run(catalogue, dict(request, moving=moving))
        except Exception as caught:  # a bad input or model: told to the client, the worker goes on
            error = transportable(caught)
        send(replies, {"kind": "result", "id": request["id"], "value": value, "error": error})


def main(argv: list[str] | None = None) -> int:
    """``python -c BOOTSTRAP FOLDER registration.worker [--parent PID]``: serve on stdin / stdout."""
    import argparse

    parser = argparse.ArgumentParser(prog="LabelReg registration worker")
    parser.add_argument("--parent", type=int, help="end when this process ends")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    # the replies get the real stdout; anything printed (warnings, a library's messages) goes to stderr
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    requests = sys.stdin.buffer
    if args.parent:
        from ..core.processes import watch_parent

        watch_parent(args.parent, on_gone=lambda: os._exit(1), what="registration worker")
    from ..core.device import available_devices
    from .model_catalogue import ModelCatalogue
    from .worker_channel import send

    send(replies, {"kind": "hello", "pid": os.getpid(), "devices": available_devices()})  # torch is loaded now
    serve(requests, replies, ModelCatalogue())
    return 0
