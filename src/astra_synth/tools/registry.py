"""The tool registry file: one :class:`ServerRecord` per JSONL line, validated on read and write."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from astra_synth.errors import InputError
from astra_synth.runs.jsonl import read_jsonl_whole, write_bytes_atomic
from astra_synth.tools.spec import ServerRecord


def load_servers(path: Path) -> list[ServerRecord]:
    """Every record of a registry file; any bad line is an :class:`InputError` naming file, line and field."""
    if not path.exists():
        raise InputError(f"{path}: no such registry file")
    items = read_jsonl_whole(path, ServerRecord)
    servers = [record for _, record in items]
    seen: dict[str, int] = {}
    for lineno, record in items:
        if record.id in seen:
            raise InputError(
                f"{path}:{lineno}: server id {record.id!r} already used on line {seen[record.id]}"
            )
        seen[record.id] = lineno
    return servers


def write_servers(path: Path, servers: Iterable[ServerRecord]) -> None:
    """Replace ``path`` atomically: readers see the old registry or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    data = b"".join(s.model_dump_json().encode("utf-8") + b"\n" for s in servers)
    write_bytes_atomic(path, data)


def merge_servers(existing: list[ServerRecord], new: list[ServerRecord]) -> list[ServerRecord]:
    """``existing`` with same-id records replaced by ``new`` ones (in place) and other new ones appended."""
    fresh = {s.id: s for s in new}
    merged = [fresh.pop(s.id, s) for s in existing]
    return merged + [s for s in new if s.id in fresh]
