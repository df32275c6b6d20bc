"""Length-prefixed JSON frames over pipes: the wire format between an executor and its workers.

A 4-byte big-endian length before each JSON document lets either side read exactly one message and
bound its size, so a confused peer can never make the other read forever or without limit.
"""

from __future__ import annotations

import json
import os
import select
import struct
import time

TYPE_CHECKING = False  # the worker stays small without ``typing`` (see ``confine``)
if TYPE_CHECKING:
    from typing import Any

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 << 20


class FrameError(Exception):
    """The peer closed the pipe, sent a malformed frame or did not answer in time."""


def encode(message: Any) -> bytes:
    data = json.dumps(message, separators=(",", ":"), allow_nan=False).encode("utf-8")
    return _HEADER.pack(len(data)) + data


def write_frame(fd: int, message: Any) -> None:
    view = memoryview(encode(message))
    while view:
        view = view[os.write(fd, view) :]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks: list[bytes] = []
    while size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
                raise FrameError("no answer before the deadline")
        chunk = os.read(fd, min(size, 1 << 20))
        if not chunk:
            raise FrameError("pipe closed")
        chunks.append(chunk)
        size -= len(chunk)
    return b"".join(chunks)


def read_frame(fd: int, deadline: float | None = None) -> Any:
    """Read one message; ``deadline`` is a ``time.monotonic()`` value (None waits forever)."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    try:
        return json.loads(_read_exact(fd, size, deadline))
    except ValueError as exc:
        raise FrameError(f"malformed frame: {exc}") from exc


def read_answer(fd: int, deadline: float, max_bytes: int, done_fd: int | None = None) -> tuple[bytes, str]:
    """Read ``fd`` until EOF, the deadline, more than ``max_bytes``, or ``done_fd`` readable (child gone).

    Returns (data, how): how is "eof", "done", "timeout" or "too_large". Waiting on ``done_fd`` (a pidfd)
    matters when grandchildren inherited the pipe: its EOF would then never come.
    """
    chunks: list[bytes] = []
    size = 0
    fds = [fd] if done_fd is None else [fd, done_fd]
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return b"".join(chunks), "timeout"
        ready = select.select(fds, [], [], remaining)[0]
        if fd in ready:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return b"".join(chunks), "eof"
            chunks.append(chunk)
            size += len(chunk)
            if size > max_bytes:
                return b"", "too_large"
        elif done_fd is not None and done_fd in ready:
            os.set_blocking(fd, False)
            try:
                while chunk := os.read(fd, 1 << 16):
                    chunks.append(chunk)
            except BlockingIOError:
                pass
            return b"".join(chunks), "done"
