"""Content-addressed item ids.

An item's id is a hash of its canonical input together with the stage name and version, so the same work is
recognised across runs and resumes, and bumping a stage's version recomputes everything it produced. The
outputs of a stage that fans out (returns a list) get child ids derived from the item id and their index, so
that the item id can always be recovered from any of its outputs.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

ID_HEX_CHARS = 32  # 128 bits: collisions are not a practical concern at any run size
CHILD_SEP = "."


def canonical_json(data: Any) -> str:
    """One spelling per value: sorted keys, no whitespace, UTF-8 kept as is."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def item_id(stage: str, version: str, data: Any) -> str:
    """The id of the work "``stage``@``version`` applied to ``data``" (``data`` is JSON-able)."""
    digest = hashlib.sha256()
    for part in (stage, version, canonical_json(data)):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:ID_HEX_CHARS]


def child_id(parent: str, index: int) -> str:
    """The id of output ``index`` of an item whose stage returned a list."""
    return f"{parent}{CHILD_SEP}{index}"


def item_of(record_id: str) -> str:
    """The item id behind an output id (itself for single outputs)."""
    return record_id.split(CHILD_SEP, 1)[0]
