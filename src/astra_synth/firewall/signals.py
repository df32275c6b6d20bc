"""The firewall's signals: canonical tool schemas and signatures, call keys, word n-grams.

Each signal reduces an item (or a benchmark item) to keys that match when one copies the other, whatever it
renamed, reordered or re-described; :mod:`astra_synth.firewall.contamination` says why each threshold is
where it is.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any, Literal

from astra_synth.firewall.benchmarks import Call, ToolDoc

Signal = Literal[
    "tool_signature", "tool_schema", "tool_overlap", "call_sequence", "text_ngram", "text_embedding"
]
SIGNALS: tuple[Signal, ...] = (
    "tool_signature",
    "tool_schema",
    "tool_overlap",
    "call_sequence",
    "text_ngram",
    "text_embedding",
)


_TYPE_ALIASES = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "int": "integer",
    "long": "integer",
    "list": "array",
    "tuple": "array",
    "str": "string",
    "bool": "boolean",
}
_PROSE_KEYS = {"description", "title", "default", "examples", "example", "response"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+")


def name_words(name: str) -> list[str]:
    """``GorillaFileSystem.find_files`` / ``findFiles`` → ``['find', 'files']``."""
    last = re.split(r"\.|__", name)[-1]
    return [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", last).lower()) if w]


def canonical_schema(schema: Any) -> Any:
    """The parts of a parameter schema that define the interface, in one spelling."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _PROSE_KEYS:
                continue
            if key == "type" and isinstance(value, str):
                out[key] = _TYPE_ALIASES.get(value.lower(), value.lower())
            elif key in ("required", "enum") and isinstance(value, list):
                out[key] = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
            elif key == "properties" and isinstance(value, dict):
                out[key] = {str(k).lower(): canonical_schema(v) for k, v in value.items()}
            else:
                out[key] = canonical_schema(value)
        return out
    if isinstance(schema, list):
        return [canonical_schema(v) for v in schema]
    return schema


def sha_digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def tool_signature(tool: ToolDoc) -> str:
    schema = json.dumps(canonical_schema(tool.parameters), sort_keys=True, ensure_ascii=False)
    return sha_digest("".join(name_words(tool.name)), schema)


def schema_signature(tool: ToolDoc, min_properties: int) -> str | None:
    """The name-free signature, only for schemas distinctive enough to identify a tool on their own."""
    properties = tool.parameters.get("properties")
    if not isinstance(properties, dict) or len(properties) < min_properties:
        return None
    return sha_digest(json.dumps(canonical_schema(tool.parameters), sort_keys=True, ensure_ascii=False))


def _value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return round(float(value), 6)
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    return str(value)


def call_key(call: Call) -> str:
    return json.dumps(["".join(name_words(call.name)), _value(call.arguments)], sort_keys=True)


def call_grams(calls: list[Call], n: int) -> list[tuple[str, str]]:
    """(hash, readable) of every run of ``n`` consecutive calls."""
    keys = [call_key(c) for c in calls]
    return [
        (sha_digest(*keys[i : i + n]), " → ".join(c.name for c in calls[i : i + n]))
        for i in range(len(keys) - n + 1)
    ]


def tokens(text: str) -> list[str]:
    return [t.casefold() for t in _TOKEN.findall(text)]


MIN_NGRAMS = 3
"""Texts with fewer n-grams (n + 2 words) are too short to call copied by overlap; embeddings judge them."""


def word_ngrams(text: str, n: int) -> set[str]:
    words = tokens(text)
    return {
        hashlib.blake2b(" ".join(words[i : i + n]).encode(), digest_size=8).hexdigest()
        for i in range(len(words) - n + 1)
    }
