"""The run directory: per-stage outcome logs, resume state, the manifest and the final output.

Layout::

    <run_dir>/manifest.json            what the run is and how far it got (see manifest.py)
    <run_dir>/input/rejects.jsonl      input lines that are not valid JSON or do not fit the schema
    <run_dir>/<stage>/ok.jsonl         {id, parent_id, stage, version, data[, of]}
    <run_dir>/<stage>/rejects.jsonl    {id, stage, reason, detail, parent_id, llm_calls, llm_tokens}
    <run_dir>/<stage>/errors.jsonl     {id, stage, parent_id, error, message, traceback}
    <run_dir>/output.jsonl             the last stage's records in input order (written when finished)

An item's outcome is the strongest record it has: ok > rejected > error. Resume skips items that are ok or
rejected; errors are retried; ``retry_rejected`` also re-runs rejected items, and a later ok overrides the
old rejection. One process at a time owns a run directory (an ``flock`` that dies with the process).
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections import Counter, defaultdict
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from pydantic import Field

from astra_synth.config import StrictModel
from astra_synth.runs.ids import item_of
from astra_synth.runs.jsonl import JsonlAppender, load_records, write_bytes_atomic, write_json_atomic
from astra_synth.runs.manifest import Manifest

log = logging.getLogger(__name__)

INPUT_STAGE = "input"
Outcome = Literal["ok", "rejected", "error"]


OUTPUT_FILE = "output.jsonl"
"""A finished sub-run's outputs (the last stage's ok records for the session's inputs), in input order."""


class OkRecord(StrictModel):
    """One output record. ``of`` is the number of siblings when the stage fanned out, so a batch cut short
    by a crash is recognised as incomplete and redone."""

    id: str
    parent_id: str | None
    stage: str
    version: str
    data: Any
    of: int | None = None


class RejectRecord(StrictModel):
    id: str
    stage: str
    reason: str
    detail: str = ""
    parent_id: str | None = None
    llm_calls: int = Field(default=0, description="LLM calls the stage spent on the item (not cached).")
    llm_tokens: int = Field(default=0, description="Their prompt and completion tokens.")


def reject_reasons(stage_dir: Path) -> dict[str, int]:
    """Rejected items per reason in one stage folder, most frequent first (for funnels and dataset cards)."""
    reasons = Counter(r.reason for r in load_records(stage_dir / "rejects.jsonl", RejectRecord))
    return dict(reasons.most_common())


def rejected_spend(stage_dir: Path) -> tuple[int, int]:
    """LLM calls and tokens one stage spent on the items it rejected, over every session (a rejection
    that a later session retried was paid for all the same)."""
    records = load_records(stage_dir / "rejects.jsonl", RejectRecord)
    return sum(r.llm_calls for r in records), sum(r.llm_tokens for r in records)


class ErrorRecord(StrictModel):
    """An unexpected exception: kept for diagnosis, and the item is retried on the next resume."""

    id: str
    stage: str
    parent_id: str | None
    error: str
    message: str
    traceback: str


class RunLocked(RuntimeError):
    """Another live process is running or resuming this run directory."""


class StageStore:
    """The three outcome logs of one stage plus the in-memory state a resume needs."""

    def __init__(self, stage_dir: Path, *, max_batch: int = 512, max_age_s: float = 0.5) -> None:
        self.dir = stage_dir
        self._ok_log = JsonlAppender(stage_dir / "ok.jsonl", max_batch=max_batch, max_age_s=max_age_s)
        self._reject_log = JsonlAppender(
            stage_dir / "rejects.jsonl", max_batch=max_batch, max_age_s=max_age_s
        )
        self._error_log = JsonlAppender(stage_dir / "errors.jsonl", max_batch=max_batch, max_age_s=max_age_s)
        self.ok: dict[str, list[OkRecord]] = {}
        self.rejected: dict[str, RejectRecord] = {}
        self.errored: dict[str, ErrorRecord] = {}

    def open(self) -> None:
        """Repair torn tails, then load what earlier sessions recorded."""
        for appender in (self._ok_log, self._reject_log, self._error_log):
            appender.open()
        self.ok = _complete_groups(load_records(self._ok_log.path, OkRecord))
        self.rejected = {r.id: r for r in load_records(self._reject_log.path, RejectRecord)}  # last wins
        self.errored = {r.id: r for r in load_records(self._error_log.path, ErrorRecord)}

    def outcome(self, key: str) -> Outcome | None:
        if key in self.ok:
            return "ok"
        if key in self.rejected:
            return "rejected"
        if key in self.errored:
            return "error"
        return None

    def is_done(self, key: str, *, retry_rejected: bool = False) -> bool:
        return key in self.ok or (not retry_rejected and key in self.rejected)

    def record_ok(self, key: str, records: list[OkRecord]) -> None:
        self.ok[key] = records
        for record in records:
            self._ok_log.append(record)

    def record_reject(self, record: RejectRecord) -> None:
        self.rejected[record.id] = record
        self._reject_log.append(record)

    def record_error(self, record: ErrorRecord) -> None:
        self.errored[record.id] = record
        self._error_log.append(record)

    def flush_if_due(self) -> None:
        for appender in (self._ok_log, self._reject_log, self._error_log):
            appender.flush_if_due()

    def flush(self) -> None:
        for appender in (self._ok_log, self._reject_log, self._error_log):
            appender.flush()

    def close(self) -> None:
        for appender in (self._ok_log, self._reject_log, self._error_log):
            appender.close()


def _complete_groups(records: list[OkRecord]) -> dict[str, list[OkRecord]]:
    """Group outputs by item (first copy of an id wins), dropping fan-outs a crash cut short."""
    groups: dict[str, dict[str, OkRecord]] = defaultdict(dict)
    for record in records:
        groups[item_of(record.id)].setdefault(record.id, record)
    complete = {}
    for key, by_id in groups.items():
        outputs = list(by_id.values())
        expected = outputs[0].of
        if expected is not None and len(outputs) != expected:
            log.warning("item %s: %d of %d outputs on disk; it will be redone", key, len(outputs), expected)
            continue
        complete[key] = sorted(outputs, key=lambda r: int(r.id.rsplit(".", 1)[1])) if expected else outputs
    return complete


class RunStore:
    """A run directory opened by one process: ``with RunStore(path) as store: ...``."""

    def __init__(self, run_dir: Path, *, max_batch: int = 512, max_age_s: float = 0.5) -> None:
        self.dir = Path(run_dir)
        self.manifest_path = self.dir / "manifest.json"
        self.output_path = self.dir / OUTPUT_FILE
        self.max_batch = max_batch
        self.max_age_s = max_age_s
        self._lock_fd: int | None = None
        self._stages: dict[str, StageStore] = {}
        self._input_rejects = JsonlAppender(self.dir / INPUT_STAGE / "rejects.jsonl", max_batch=max_batch)
        self.input_rejected: set[str] = set()

    def __enter__(self) -> RunStore:
        self.dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as exc:
            os.close(fd)
            raise RunLocked(f"{self.dir} is in use by another process") from exc
        self._lock_fd = fd
        self._input_rejects.open()
        self.input_rejected = {r.id for r in load_records(self._input_rejects.path, RejectRecord)}
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        for stage in self._stages.values():
            stage.close()
        self._input_rejects.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = None

    def stage(self, name: str) -> StageStore:
        if name not in self._stages:
            store = StageStore(self.dir / name, max_batch=self.max_batch, max_age_s=self.max_age_s)
            store.open()
            self._stages[name] = store
        return self._stages[name]

    def record_input_reject(self, record: RejectRecord) -> None:
        """Bad input lines are recorded once, however often the run is resumed."""
        if record.id not in self.input_rejected:
            self.input_rejected.add(record.id)
            self._input_rejects.append(record)
            self._input_rejects.flush()

    def load_manifest(self) -> Manifest | None:
        if not self.manifest_path.exists():
            return None
        return Manifest.model_validate_json(self.manifest_path.read_bytes())

    def save_manifest(self, manifest: Manifest) -> None:
        write_json_atomic(self.manifest_path, manifest.model_dump(mode="json"))

    def write_output(self, records: list[OkRecord]) -> None:
        write_bytes_atomic(self.output_path, b"".join(r.model_dump_json().encode() + b"\n" for r in records))
