"""Append-only JSONL files that survive ``kill -9``: batched fsync, torn-tail repair, located read errors.

Records are buffered and written with one ``write`` + ``fsync`` per batch (by size or age), not per line, so
durability costs a few syscalls per second rather than per record. A crash can only ever leave the *last*
line incomplete; :meth:`JsonlAppender.open` cuts it away and every complete line before it is kept.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from astra_synth.errors import InputError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)
_CHUNK = 1 << 16


class StoreCorrupted(RuntimeError):
    """A run file has a bad line that is not the last one: not a crash artefact, so it is not repaired."""


def repair_tail(path: Path) -> int:
    """Truncate an unterminated or unparseable last line; return the number of bytes dropped.

    Only the tail is read, so opening a large run file stays cheap.
    """
    if not path.exists():
        return 0
    with path.open("rb+") as fh:
        size = fh.seek(0, os.SEEK_END)
        if size == 0:
            return 0
        fh.seek(size - 1)
        terminated = fh.read(1) == b"\n"
        start = _line_start(fh, size - 1 if terminated else size)
        fh.seek(start)
        last = fh.read(size - start).strip()
        # A terminated last line can still be garbage (e.g. zeros after a power loss).
        if terminated and (not last or _parses(last)):
            return 0
        fh.truncate(start)
        fh.flush()
        os.fsync(fh.fileno())
    log.warning("%s: dropped a torn last line (%d bytes) left by an interrupted run", path, size - start)
    return size - start


def _line_start(fh: BinaryIO, end: int) -> int:
    """Offset just after the last newline before ``end`` (0 if none), scanning backwards in chunks."""
    pos = end
    while pos > 0:
        chunk_start = max(0, pos - _CHUNK)
        fh.seek(chunk_start)
        newline = fh.read(pos - chunk_start).rfind(b"\n")
        if newline >= 0:
            return chunk_start + newline + 1
        pos = chunk_start
    return 0


def _parses(line: bytes) -> bool:
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def load_records(path: Path, model: type[M]) -> list[M]:
    """Every record of a run file (after :func:`repair_tail`); a bad line raises :class:`StoreCorrupted`."""
    if not path.exists():
        return []
    records = []
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                records.append(model.model_validate_json(line))
            except ValidationError as exc:
                raise StoreCorrupted(f"{path}:{lineno}: not a {model.__name__} record: {exc}") from exc
    return records


class JsonlAppender:
    """Buffered appends to one file; ``flush`` writes the batch and fsyncs it. Not thread-safe (one loop)."""

    def __init__(self, path: Path, *, max_batch: int = 512, max_age_s: float = 0.5) -> None:
        self.path = path
        self.max_batch = max_batch
        self.max_age_s = max_age_s
        self._buffer: list[bytes] = []
        self._oldest = 0.0
        self._fd: int | None = None

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        repair_tail(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def append(self, record: BaseModel) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(record.model_dump_json().encode("utf-8") + b"\n")
        if len(self._buffer) >= self.max_batch:
            self.flush()

    def flush_if_due(self) -> None:
        if self._buffer and time.monotonic() - self._oldest >= self.max_age_s:
            self.flush()

    def flush(self) -> None:
        """One write for the whole batch, so a crash tears at most the batch's last line."""
        if not self._buffer:
            return
        if self._fd is None:
            raise RuntimeError(f"{self.path} is not open")
        data = b"".join(self._buffer)
        self._buffer.clear()
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
        os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            self.flush()
            os.close(self._fd)
            self._fd = None


@dataclass
class JsonlInput(Generic[M]):
    """The valid records of an input file (with their line numbers) and one error per bad line."""

    items: list[tuple[int, M]] = field(default_factory=list)
    errors: list[tuple[int, str, InputError]] = field(default_factory=list)  # (line, raw text, error)


def read_jsonl(path: Path, model: type[M]) -> JsonlInput[M]:
    """Read ``path`` as one ``model`` per line. A bad line does not stop the read: it becomes an
    :class:`InputError` whose message names the file, the line and the offending field(s)."""
    result: JsonlInput[M] = JsonlInput()
    for lineno, raw in _lines(path):
        text = raw.decode("utf-8", errors="replace")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError as exc:
            error = InputError(f"{path}:{lineno}: invalid JSON at column {exc.colno}: {exc.msg}")
            result.errors.append((lineno, text, error))
            continue
        except UnicodeDecodeError as exc:
            error = InputError(f"{path}:{lineno}: not UTF-8 at byte {exc.start}")
            result.errors.append((lineno, text, error))
            continue
        try:
            result.items.append((lineno, model.model_validate(value)))
        except ValidationError as exc:
            result.errors.append((lineno, text, InputError(f"{path}:{lineno}: {describe_errors(exc)}")))
    return result


def read_jsonl_whole(path: Path, model: type[M]) -> list[tuple[int, M]]:
    """:func:`read_jsonl` for an input that must be whole: an unreadable file, or any bad line, raises one
    :class:`InputError` naming every bad line. Returns (line number, record) pairs."""
    try:
        read = read_jsonl(path, model)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if read.errors:
        raise InputError("\n".join(str(error) for _, _, error in read.errors))
    return read.items


def describe_errors(exc: ValidationError) -> str:
    """``field 'a.b': message; …`` for every error of a pydantic validation failure."""
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "<record>"
        parts.append(f"field '{loc}': {err['msg']}")
    return f"invalid {exc.title}: " + "; ".join(parts)


def _lines(path: Path) -> Iterator[tuple[int, bytes]]:
    with path.open("rb") as fh:
        for lineno, line in enumerate(fh, start=1):
            if line.strip():
                yield lineno, line.rstrip(b"\r\n")


def write_json_atomic(path: Path, data: Any) -> None:
    """Write-to-temp, fsync, rename: readers see the old file or the new one, never a mix."""
    write_bytes_atomic(path, (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with tmp.open("wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
