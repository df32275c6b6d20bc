"""Length-prefixed frames over pipes: the wire format between an executor and its sandbox processes.

A 4-byte big-endian length before each message lets either side read exactly one message and bound its
size, so a confused peer can never make the other read forever or without limit. Messages to a sandbox
process are marshalled (``encode``, ``read_message``), messages from one are JSON (``write_frame``,
``read_frame``): only the trusted side writes marshal, and only the sandbox side reads it.
"""

from __future__ import annotations

import marshal
import os
import select
import struct
import time

TYPE_CHECKING = False  # the worker stays small without ``typing`` (see ``confine``)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_HEADER = struct.Struct(">I")
MAX_FRAME_BYTES = 64 << 20
# Calls travel as binary frames that ``native.c`` reads and writes without Python (see there):
CALL_HEADER = struct.Struct("=4sIQ")  # b"C\0\0\0", CPU seconds, timeout ns; the call follows
REPLY_HEADER = struct.Struct("=iid")  # how (an index into HOW), wait status, CPU ms; the answer follows
# How a call ended: the answer is complete, the child is gone, the wall clock ran out, the answer was too
# large, no child could be forked (the wait status is then the errno).
HOW = ("eof", "done", "timeout", "too_large", "fork_failed")


class FrameError(Exception):
    """The peer closed the pipe, sent a malformed frame or did not answer in time."""


def _not_json(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


def _json_encoder() -> Callable[[object], str]:
    """Compact, ASCII-only, NaN-refusing JSON from the C encoder of ``_json``, built once.

    Not ``json.dumps``: the ``json`` package (and ``re`` with it) would add a megabyte to every worker,
    which every fork copies page tables for, and ``JSONEncoder.encode`` builds a C encoder object per
    call, ~45 copy-on-write page faults in a forked child. There is no circular-reference check: a
    cycle ends in RecursionError instead of ValueError.
    """
    try:
        from _json import encode_basestring_ascii, make_encoder

        encode = make_encoder(None, _not_json, encode_basestring_ascii, None, ":", ",", False, False, False)
    except (ImportError, TypeError):  # an interpreter without the accelerator, or with another signature
        import json

        return json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
    return lambda value: "".join(encode(value, 0))


to_json = _json_encoder()


def _framed(data: bytes) -> bytes:
    return _HEADER.pack(len(data)) + data


def encode(message: Any) -> bytes:
    """A frame from the trusted side to a sandbox process: marshalled, since the receiver is the
    sandbox (marshal is not safe to read from an untrusted writer, and costs a child far less than JSON).
    """
    return _framed(marshal.dumps(message, 4))


def write_frame(fd: int, message: Any) -> None:
    """A frame from a sandbox process to the trusted side: JSON, safe to read from any writer."""
    write_bytes(fd, _framed(to_json(message).encode("utf-8")))


def write_bytes(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def call_frame(cpu_seconds: int, timeout_s: float, env_id: str, fn: str, args: Any, seed: int) -> bytes:
    """The whole frame of a call; ``args`` must be what JSON decoding gives (dicts, lists, str, ...).

    The call itself is marshalled, not JSON: ``marshal.loads`` in the child costs ~40 copy-on-write page
    faults where ``json.loads`` costs ~130 (0.3 ms a call). Marshal is no risk here: the trusted side
    writes it and the sandboxed child reads it; answers, which come from tool code, stay JSON.
    """
    head = CALL_HEADER.pack(b"C\0\0\0", cpu_seconds, max(int(timeout_s * 1e9), 0))
    return _framed(head + marshal.dumps((env_id, fn, args, seed), 4))


def read_reply(fd: int, deadline: float) -> tuple[str, int, float, bytes]:
    """A call's reply: (how, wait status, CPU ms, the child's answer)."""
    data = read_bytes(fd, deadline)
    if len(data) < REPLY_HEADER.size:
        raise FrameError(f"call reply of {len(data)} bytes")
    how, status, cpu_ms = REPLY_HEADER.unpack_from(data)
    if not 0 <= how < len(HOW):
        raise FrameError(f"call reply with how={how}")
    return HOW[how], status, cpu_ms, data[REPLY_HEADER.size :]


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


def read_bytes(fd: int, deadline: float | None = None) -> bytes:
    """Read one frame's bytes; ``deadline`` is a ``time.monotonic()`` value (None waits forever)."""
    (size,) = _HEADER.unpack(_read_exact(fd, _HEADER.size, deadline))
    if size > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {size} bytes exceeds {MAX_FRAME_BYTES}")
    return _read_exact(fd, size, deadline)


def read_message(fd: int) -> Any:
    """In a sandbox process: one frame the trusted side wrote with ``encode``."""
    try:
        return marshal.loads(read_bytes(fd))
    except (ValueError, EOFError, TypeError) as exc:
        raise FrameError(f"malformed frame: {exc}") from exc


def read_frame(fd: int, deadline: float | None = None) -> Any:
    """On the trusted side: one JSON frame a sandbox process wrote with ``write_frame``."""
    import json  # the trusted side has it anyway; the sandbox side never reads JSON

    try:
        return json.loads(read_bytes(fd, deadline))
    except ValueError as exc:
        raise FrameError(f"malformed frame: {exc}") from exc


def read_answer(fd: int, deadline: float, max_bytes: int) -> tuple[bytes, str]:
    """Read ``fd`` until EOF, the deadline or more than ``max_bytes``.

    Returns (data, how): how is "eof", "timeout" or "too_large".
    """
    chunks: list[bytes] = []
    size = 0
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            return b"".join(chunks), "timeout"
        chunk = os.read(fd, 1 << 16)
        if not chunk:
            return b"".join(chunks), "eof"
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            return b"", "too_large"
