"""Messages between Slicer's process and the registration worker, over the worker's stdin and stdout pipes.

A message is a pickled Python object (dicts of numbers, strings, numpy arrays
and :class:`~LabelRegLib.core.volume.Volume` objects), framed by its length as 8
bytes. Pickle is safe here because both ends are LabelReg's own processes,
joined by anonymous pipes no other process can write to; nothing read from a
file or a network goes through it.

Images travel through the pipe, not through temporary files: a frame of the
example US (1.6 MB) or its displacement field (5 MB) passes in milliseconds.
:func:`readable` tells without blocking whether a message has started to
arrive, so that Slicer's main thread can poll from a ``QTimer`` and never wait
for the worker; once a message has started, the rest follows at pipe speed.
"""

from __future__ import annotations

import os
import pickle
import struct

HEADER = struct.Struct("<Q")  # the payload's length in bytes


class ChannelClosed(EOFError):
    """The other end closed the pipe (the process ended) before or inside a message."""


def send(stream, message) -> None:
    """Write one message to a binary stream and flush it."""
    payload = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    for part in (HEADER.pack(len(payload)), payload):
        view = memoryview(part)
        while view:  # an unbuffered pipe may take part of a large write
            view = view[stream.write(view) :]
    stream.flush()


def receive(stream):
    """Read one whole message from a binary stream (blocks until it is complete)."""
    (length,) = struct.unpack("<Q", _read_exactly(stream, HEADER.size))
    return pickle.loads(_read_exactly(stream, length))


def _read_exactly(stream, size: int) -> bytes:
    buffer = bytearray(size)
    view, done = memoryview(buffer), 0
    while done < size:
        count = stream.readinto(view[done:])
        if not count:
            raise ChannelClosed(f"the pipe closed after {done} of {size} bytes")
        done += count
    return bytes(buffer)


def readable(stream) -> bool:
    """Whether reading ``stream`` (a pipe) would not block: data has arrived, or the writer has closed it."""
    if os.name == "nt":
        import _winapi
        import msvcrt

        try:
            available, _left = _winapi.PeekNamedPipe(msvcrt.get_osfhandle(stream.fileno()), 0)
        except OSError:  # ERROR_BROKEN_PIPE: the writer is gone; reading returns end of file at once
            return True
        return available > 0
    import select

    ready, _w, _x = select.select([stream.fileno()], [], [], 0)
    return bool(ready)
