"""Record real tool responses to a JSONL cassette and replay them deterministically.

A cassette makes a rollout that used live servers reproducible (and runnable where the servers are not):
``record`` calls live and appends every outcome; ``replay`` only ever reads, and a call that was not
recorded is a :class:`CassetteMiss`, never a live call; ``auto`` replays what it has and records the rest.
The key is the server id, the tool name and the canonical JSON of the arguments (key order and spacing do
not matter). A key recorded twice replays its latest outcome.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from types import TracebackType
from typing import Any, Literal, Self

from astra_synth.config import StrictModel
from astra_synth.errors import InputError, Rejection
from astra_synth.runs.jsonl import JsonlAppender, read_jsonl, repair_tail
from astra_synth.tools.outcome import ToolOutcome

CassetteMode = Literal["record", "replay", "auto"]


class CassetteMiss(Rejection):
    """Replay asked for a call the cassette does not hold (the rollout left the recorded path)."""

    REASON = "cassette_miss"

    def __init__(self, server_id: str, tool: str, arguments: dict[str, Any], path: Path) -> None:
        super().__init__(
            self.REASON, f"{path}: no recording of {server_id}.{tool}({canonical_json(arguments)})"
        )
        self.server_id = server_id
        self.tool = tool
        self.arguments = arguments


class CassetteEntry(StrictModel):
    schema_version: Literal[1] = 1
    key: str
    outcome: ToolOutcome


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cassette_key(server_id: str, tool: str, arguments: dict[str, Any]) -> str:
    payload = canonical_json({"server": server_id, "tool": tool, "arguments": arguments})
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


class Cassette:
    """``with Cassette(path, "replay") as c: c.lookup(...)``; recordings are fsynced in batches on close."""

    def __init__(self, path: Path, mode: CassetteMode) -> None:
        self.path = path
        self.mode: CassetteMode = mode
        self._entries: dict[str, ToolOutcome] = {}
        self._appender: JsonlAppender | None = None
        if mode != "replay":
            repair_tail(path)  # a recording cut by kill -9 keeps every complete line
        if path.exists():
            read = read_jsonl(path, CassetteEntry)
            if read.errors:
                raise InputError("\n".join(str(error) for _, _, error in read.errors))
            for _, entry in read.items:
                self._entries[entry.key] = entry.outcome
        elif mode == "replay":
            raise InputError(f"{path}: no such cassette to replay")

    def __len__(self) -> int:
        return len(self._entries)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def lookup(self, server_id: str, tool: str, arguments: dict[str, Any]) -> ToolOutcome | None:
        """The recorded outcome, marked ``replayed``; ``None`` when it should be called live and recorded.

        Raises :class:`CassetteMiss` in ``replay`` mode when nothing was recorded for the call.
        """
        if self.mode == "record":
            return None
        found = self._entries.get(cassette_key(server_id, tool, arguments))
        if found is None:
            if self.mode == "replay":
                raise CassetteMiss(server_id, tool, arguments, self.path)
            return None
        return found.model_copy(update={"provenance": "replayed", "latency_s": 0.0})

    def record(self, outcome: ToolOutcome) -> None:
        """Append a live outcome (replay mode never records)."""
        if self.mode == "replay":
            raise RuntimeError("a replay cassette is read-only")
        key = cassette_key(outcome.server_id, outcome.tool, outcome.arguments)
        if self._appender is None:
            self._appender = JsonlAppender(self.path)
            self._appender.open()
        self._appender.append(CassetteEntry(key=key, outcome=outcome))
        self._appender.flush_if_due()
        self._entries[key] = outcome

    def close(self) -> None:
        if self._appender is not None:
            self._appender.close()
            self._appender = None
