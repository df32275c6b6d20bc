"""Normalise tool documents to the OpenAI function schema and filter them as the paper does (A.1).

Whatever the source (a live MCP server, an ASTRA ``mcp_servers.jsonl`` line, our own records), every tool
goes through the same checks: a valid name, a usable description, a schema that maps onto OpenAI's
``parameters`` object; and a server keeps at least ``min_tools`` tools. Nothing is dropped silently: each
drop is an :class:`ImportReject` with a reason a person can act on.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import Field

from astra_synth.config import StrictModel
from astra_synth.tools.spec import TOOL_NAME_PATTERN, ServerRecord, ToolSpec, Transport

RejectReason = Literal[
    "invalid_name",
    "missing_description",
    "vague_description",
    "unmappable_schema",
    "duplicate_tool",
    "too_few_tools",
    "invalid_record",
    "unreachable",
]

# Descriptions that say nothing about what a tool does, whatever the tool.
_PLACEHOLDERS = frozenset(
    {"todo", "tbd", "n/a", "na", "none", "null", "description", "no description", "tool", "function",
     "test", "placeholder", "...", "-", "?", "lorem ipsum"}
)  # fmt: skip
_JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
_NAME_RE = re.compile(TOOL_NAME_PATTERN)


class ImportReject(StrictModel):
    """A server or tool left out of the registry, and why."""

    schema_version: Literal[1] = 1
    source: str = Field(description="Where it came from: a command, a URL, or file:line.")
    server: str
    tool: str | None = None
    reason: RejectReason
    detail: str = ""


class FilterConfig(StrictModel):
    """The paper's filters, with its numbers as defaults."""

    min_tools: int = Field(default=3, ge=1, description="Servers with fewer usable tools are dropped.")
    min_description_words: int = Field(
        default=2, ge=1, description="Shorter descriptions are too vague to use."
    )


@dataclass
class ImportResult:
    """The servers kept and every drop, in input order."""

    servers: list[ServerRecord] = field(default_factory=list)
    rejects: list[ImportReject] = field(default_factory=list)

    def extend(self, other: ImportResult) -> None:
        self.servers.extend(other.servers)
        self.rejects.extend(other.rejects)


@dataclass(frozen=True)
class RawTool:
    """A tool as a source describes it, before any check."""

    name: Any
    description: Any
    parameters: Any


@dataclass(frozen=True)
class RawServer:
    """A server as a source describes it; ``transport`` says how to call it at rollout time."""

    id: str
    title: str
    description: str
    domain: str
    tools: list[RawTool]
    transport: Transport
    source: str
    license: str | None = None


class _Unmappable(ValueError):
    pass


def _words(text: str) -> list[str]:
    return re.findall(r"[^\W_]+", text.lower())


def description_problem(name: str, description: str, policy: FilterConfig) -> RejectReason | None:
    """``missing_description``/``vague_description`` when the text cannot tell a model what the tool does."""
    text = " ".join(description.split())
    if not text:
        return "missing_description"
    words = _words(text)
    if text.lower().strip(" .!") in _PLACEHOLDERS or len(words) < policy.min_description_words:
        return "vague_description"
    if set(words) <= set(_words(name)):  # only restates the name ("get_user" -> "Get user")
        return "vague_description"
    return None


def _check_node(node: Any, path: str, defs: set[str]) -> None:
    """Walk a JSON Schema; raise on what OpenAI's function format cannot take."""
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise _Unmappable(f"{path}: a schema must be an object, got {type(node).__name__}")
    ref = node.get("$ref")
    local = isinstance(ref, str) and ref.startswith("#/$defs/") and ref[len("#/$defs/") :] in defs
    if ref is not None and not local:
        raise _Unmappable(f"{path}: unresolvable $ref {ref!r}")
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in _JSON_TYPES:
            raise _Unmappable(f"{path}: unknown type {k!r}")
    props = node.get("properties")
    if props is not None:
        if not isinstance(props, dict):
            raise _Unmappable(f"{path}.properties: must be an object")
        for key, sub in props.items():
            _check_node(sub, f"{path}.properties.{key}", defs)
    items = node.get("items")
    if items is not None:
        _check_node(items, f"{path}.items", defs)
    for combinator in ("anyOf", "oneOf", "allOf"):
        options = node.get(combinator)
        if options is not None:
            if not isinstance(options, list):
                raise _Unmappable(f"{path}.{combinator}: must be a list")
            for i, sub in enumerate(options):
                _check_node(sub, f"{path}.{combinator}[{i}]", defs)


def normalize_parameters(parameters: Any) -> dict[str, Any]:
    """The ``parameters`` object OpenAI expects, or :class:`ValueError` saying why it cannot be one.

    Accepts a schema given as a JSON string (some registries store it so), fills a missing top-level
    ``type``/``properties``, and checks ``required``, every nested schema and every local ``$ref``.
    """
    if parameters is None:
        return {"type": "object", "properties": {}}
    if isinstance(parameters, str):
        try:
            parameters = json.loads(parameters)
        except json.JSONDecodeError as exc:
            raise _Unmappable(f"parameters: not JSON ({exc.msg})") from exc
    if not isinstance(parameters, dict):
        raise _Unmappable(f"parameters: must be an object schema, got {type(parameters).__name__}")
    schema = dict(parameters)
    if schema.setdefault("type", "object") != "object":
        raise _Unmappable(f"parameters: top-level type must be 'object', got {schema['type']!r}")
    schema.setdefault("properties", {})
    defs = schema.get("$defs", {})
    if not isinstance(defs, dict):
        raise _Unmappable("parameters.$defs: must be an object")
    names = set(defs)
    _check_node(schema, "parameters", names)
    for key, sub in defs.items():
        _check_node(sub, f"parameters.$defs.{key}", names)
    required = schema.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise _Unmappable("parameters.required: must be a list of property names")
    missing = [r for r in required if r not in schema["properties"]]
    if missing:
        raise _Unmappable(f"parameters.required: names undefined properties {missing}")
    try:
        json.dumps(schema)
    except (TypeError, ValueError) as exc:
        raise _Unmappable(f"parameters: not JSON-serialisable ({exc})") from exc
    return schema


def normalize_tool(raw: RawTool, policy: FilterConfig) -> ToolSpec | tuple[RejectReason, str]:
    """A checked :class:`ToolSpec`, or ``(reason, detail)`` saying why the tool is dropped."""
    if not isinstance(raw.name, str) or not _NAME_RE.match(raw.name):
        return "invalid_name", f"{raw.name!r} does not match {TOOL_NAME_PATTERN}"
    description = raw.description if isinstance(raw.description, str) else ""
    problem = description_problem(raw.name, description, policy)
    if problem is not None:
        return problem, repr(description[:120])
    try:
        parameters = normalize_parameters(raw.parameters)
    except _Unmappable as exc:
        return "unmappable_schema", str(exc)
    return ToolSpec(name=raw.name, description=" ".join(description.split()), parameters=parameters)


def filter_server(raw: RawServer, policy: FilterConfig) -> ImportResult:
    """Check every tool, then the server as a whole; the server is kept only with ``min_tools`` tools."""
    result = ImportResult()
    tools: list[ToolSpec] = []
    for tool in raw.tools:
        checked = normalize_tool(tool, policy)
        name = tool.name if isinstance(tool.name, str) else repr(tool.name)
        if isinstance(checked, tuple):
            reason, detail = checked
            result.rejects.append(
                ImportReject(source=raw.source, server=raw.id, tool=name, reason=reason, detail=detail)
            )
        elif any(t.name == checked.name for t in tools):
            result.rejects.append(
                ImportReject(
                    source=raw.source, server=raw.id, tool=name, reason="duplicate_tool",
                    detail="a tool of this name was already kept",
                )
            )  # fmt: skip
        else:
            tools.append(checked)
    if len(tools) < policy.min_tools:
        result.rejects.append(
            ImportReject(
                source=raw.source, server=raw.id, reason="too_few_tools",
                detail=f"{len(tools)} usable tool(s) < {policy.min_tools}",
            )
        )  # fmt: skip
        return result
    result.servers.append(
        ServerRecord(
            id=raw.id,
            title=raw.title or raw.id,
            description=raw.description,
            domain=raw.domain,
            tools=tools,
            transport=raw.transport,
            source=raw.source,
            license=raw.license,
        )
    )
    return result


def slug(text: str) -> str:
    """A server id from a display name: lower-case words joined by ``-``."""
    return "-".join(_words(text))[:80]
