"""Read tool-server files: ASTRA's ``mcp_servers.jsonl`` shape, or our own :class:`ServerRecord` lines.

ASTRA's shape (spec A.1) is ``{"base_info": {"group_info": {...}, "tool_list": [...]}, "call_info": {...},
"features": {...}}``, or the same wrapped as ``{"mcp_info": {...}, "graph": {...}}``. Either way each line
becomes a :class:`RawServer` and goes through the same filters as a live import. A bad line does not stop
the file: it becomes an ``invalid_record`` reject whose detail names the file, the line and the field.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, RootModel, ValidationError, model_validator

from astra_synth.runs.jsonl import describe_errors, read_jsonl
from astra_synth.tools.normalize import (
    FilterConfig,
    ImportReject,
    ImportResult,
    RawServer,
    RawTool,
    filter_server,
    slug,
)
from astra_synth.tools.spec import EmulatedTransport, HttpTransport, ServerRecord, Transport


class AstraGroupInfo(BaseModel):
    """Server metadata; every field optional, the legacy ``group_id``/``tool_name`` serve as fallbacks."""

    model_config = ConfigDict(extra="allow")

    server_title: str | None = None
    server_name: str | None = None
    server_description: str | None = None
    domain: str | None = None
    group_id: str | None = None
    tool_name: str | None = None


class AstraTool(BaseModel):
    """One ``tool_list`` entry; the OpenAI wrapper ``{"type": "function", "function": {...}}`` is accepted."""

    model_config = ConfigDict(extra="allow")

    name: Any
    description: Any = None
    parameters: Any = None

    @model_validator(mode="before")
    @classmethod
    def _unwrap_openai(cls, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("function"), dict):
            return value["function"]
        return value


class AstraBaseInfo(BaseModel):
    model_config = ConfigDict(extra="allow")

    group_info: AstraGroupInfo = Field(default_factory=AstraGroupInfo)
    tool_list: list[AstraTool]


class AstraServerLine(BaseModel):
    """One line of ``mcp_servers.jsonl`` (either variant; the ``mcp_info`` wrapper is unwrapped)."""

    model_config = ConfigDict(extra="allow")

    base_info: AstraBaseInfo
    call_info: dict[str, Any] = Field(default_factory=dict)
    features: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _unwrap_mcp_info(cls, value: Any) -> Any:
        if isinstance(value, dict) and "mcp_info" in value and "base_info" not in value:
            return value["mcp_info"]
        return value


class _JsonObject(RootModel[dict[str, Any]]):
    """Any JSON object: the shape is chosen per line from its keys."""


def astra_transport(call_info: dict[str, Any]) -> tuple[Transport, str]:
    """How ASTRA's ``call_info`` is reached by us, and a note for the record's source.

    ``mock_tool`` means doc-only (emulated). A hosted ``url`` becomes an HTTP transport, but its ``headers``
    are not carried: they hold credentials, which we take from the environment only. Smithery templates
    need an API key in the URL, so those servers are emulated too.
    """
    if "mock_tool" in call_info:
        return EmulatedTransport(), "emulated (mock_tool)"
    url = call_info.get("url")
    if isinstance(url, str) and url.startswith(("http://", "https://")):
        note = "http (headers not carried)" if call_info.get("headers") else "http"
        return HttpTransport(url=url), note
    if "python_sdk_url" in call_info:
        return EmulatedTransport(), "emulated (smithery endpoint needs a key)"
    return EmulatedTransport(), "emulated (no call_info)"


def astra_raw_server(line: AstraServerLine, source: str, lineno: int) -> RawServer:
    info = line.base_info.group_info
    name = info.server_name or info.server_title or info.group_id or info.tool_name or ""
    server_id = slug(name) or f"line-{lineno}"
    transport, note = astra_transport(line.call_info)
    tools = [RawTool(t.name, t.description, t.parameters) for t in line.base_info.tool_list]
    return RawServer(
        id=server_id,
        title=info.server_title or info.server_name or info.tool_name or server_id,
        description=info.server_description or "",
        domain=slug(info.domain or "") or "general",
        tools=tools,
        transport=transport,
        source=f"{source}:{lineno} [astra, {note}]",
    )


def _own_raw_server(record: ServerRecord, source: str, lineno: int) -> RawServer:
    tools = [RawTool(t.name, t.description, t.parameters) for t in record.tools]
    return RawServer(
        id=record.id,
        title=record.title,
        description=record.description,
        domain=record.domain,
        tools=tools,
        transport=record.transport,
        source=record.source or f"{source}:{lineno}",
        license=record.license,
    )


def import_server_file(path: Path, policy: FilterConfig) -> ImportResult:
    """Read ``path`` (ASTRA shape or ours, per line), normalise and filter every server.

    Duplicate server ids keep the first and reject the later ones, so ids stay unique in a registry.
    """
    result = ImportResult()
    read = read_jsonl(path, _JsonObject)
    for lineno, _raw, error in read.errors:
        result.rejects.append(
            ImportReject(source=f"{path}:{lineno}", server="?", reason="invalid_record", detail=str(error))
        )
    for lineno, obj in read.items:
        value = obj.root
        try:
            if "base_info" in value or "mcp_info" in value:
                raw = astra_raw_server(AstraServerLine.model_validate(value), str(path), lineno)
            else:
                raw = _own_raw_server(ServerRecord.model_validate(value), str(path), lineno)
        except ValidationError as exc:
            shape = "ASTRA server" if "base_info" in value or "mcp_info" in value else "ServerRecord"
            result.rejects.append(
                ImportReject(
                    source=f"{path}:{lineno}", server=_guess_name(value), reason="invalid_record",
                    detail=f"{path}:{lineno}: not a valid {shape}: {describe_errors(exc)}",
                )
            )  # fmt: skip
            continue
        if any(s.id == raw.id for s in result.servers):
            result.rejects.append(
                ImportReject(
                    source=f"{path}:{lineno}", server=raw.id, reason="invalid_record",
                    detail=f"{path}:{lineno}: server id {raw.id!r} already imported from an earlier line",
                )
            )  # fmt: skip
            continue
        result.extend(filter_server(raw, policy))
    return result


def _guess_name(value: dict[str, Any]) -> str:
    """A best-effort server name for the reject of an unreadable line ("?" when there is none)."""
    inner = value.get("mcp_info", value)
    base = inner.get("base_info") if isinstance(inner, dict) else None
    group = base.get("group_info") if isinstance(base, dict) else None
    for candidate in (
        (group or {}).get("server_name") if isinstance(group, dict) else None,
        inner.get("id") if isinstance(inner, dict) else None,
    ):
        if isinstance(candidate, str) and candidate:
            return candidate
    return "?"
