"""Content-addressed response cache: every LLM answer stored once, so a rerun or resume costs zero calls.

SQLite in WAL mode with one commit per put: a ``kill -9`` loses at most the answer being written, never a
committed one. The connection is shared across threads behind a lock; each operation is a single short
statement, so holding the lock inside an event loop does not stall it noticeably.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from array import array
from pathlib import Path
from typing import Any

from pydantic import BaseModel

_SCHEMA = """
CREATE TABLE IF NOT EXISTS chat (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS embedding (key TEXT PRIMARY KEY, vector BLOB NOT NULL);
"""


def content_key(payload: Any) -> str:
    """sha256 of the canonical JSON of ``payload`` (sorted keys, no whitespace): equal requests, equal key."""
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CacheStats(BaseModel):
    """Lookups answered from the file versus lookups that had to go to the endpoint."""

    hits: int = 0
    misses: int = 0


class ResponseCache:
    """Chat answers (JSON) and embedding vectors (float64 blobs) keyed by content hash.

    The location is the caller's choice; runs put it in their run directory (``runs.session.run_cache_path``).
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._hits = 0
        self._misses = 0
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        # WAL + NORMAL: a committed transaction survives a crash of this process (not of the OS).
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.executescript(_SCHEMA)

    def get_chat(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM chat WHERE key = ?", (key,)).fetchone()
            self._count(row is not None)
        return None if row is None else dict(json.loads(row[0]))

    def put_chat(self, key: str, value: dict[str, Any]) -> None:
        text = json.dumps(value, ensure_ascii=False)
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO chat (key, value) VALUES (?, ?)", (key, text))

    def get_embedding(self, key: str) -> list[float] | None:
        with self._lock:
            row = self._db.execute("SELECT vector FROM embedding WHERE key = ?", (key,)).fetchone()
            self._count(row is not None)
        return None if row is None else array("d", row[0]).tolist()

    def put_embedding(self, key: str, vector: list[float]) -> None:
        blob = array("d", vector).tobytes()
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO embedding (key, vector) VALUES (?, ?)", (key, blob))

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(hits=self._hits, misses=self._misses)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _count(self, hit: bool) -> None:
        if hit:
            self._hits += 1
        else:
            self._misses += 1
