"""Probes of what we export: an SFT row or an arena reduced to its texts, tools and calls, and exported
files read back as probes (``astra check-contamination``)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from astra_synth.agent.chat import parse_openai_calls
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.errors import InputError
from astra_synth.firewall.benchmarks import Call, Probe, ToolDoc
from astra_synth.runs.jsonl import read_jsonl_whole


def chat_probe(item_id: str, messages: Iterable[dict[str, Any]], tools: Iterable[dict[str, Any]]) -> Probe:
    """An SFT row (OpenAI messages + tools): the user texts, the tools offered, the calls made in order."""
    texts: list[str] = []
    calls: list[Call] = []
    for message in messages:
        content = message.get("content")
        if (
            message.get("role") == "user"
            and isinstance(content, str)
            and content.strip()
            and content not in texts
        ):
            texts.append(content)
        # The shared parser: a malformed call keeps its name (if any) with no arguments.
        calls += [
            Call(name=c.name, arguments=c.arguments) for c in parse_openai_calls(message.get("tool_calls"))
        ]
    docs = [t.get("function", t) for t in tools]
    return Probe(
        id=item_id,
        texts=texts,
        tools=[ToolDoc(name=str(d.get("name", "")), parameters=d.get("parameters") or {}) for d in docs],
        calls=calls,
    )


def arena_probe(arena: Arena) -> Probe:
    """An arena: its user messages and sub-questions, its tools, its golden calls in sub-task order."""
    texts = [m.content for m in arena.messages if m.role == "user"]
    texts += [s.question for s in arena.subtasks if s.question not in texts]
    return Probe(
        id=arena.id,
        texts=texts,
        tools=[ToolDoc(name=t.function.name, parameters=t.function.parameters) for t in arena.tools],
        calls=[
            Call(name=s.golden_call.name, arguments=s.golden_call.arguments)
            for s in arena.subtasks
            if s.golden_call
        ],
    )


class _SftRow(BaseModel):
    id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = Field(default_factory=list)


InputFormat = Literal["auto", "sft", "arenas"]


def _detect_format(path: Path) -> Literal["sft", "arenas"]:
    try:
        with path.open("rb") as fh:
            first = next((line for line in fh if line.strip()), b"")
        head = json.loads(first) if first else None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}:1: expected a JSON line of an SFT set or an arena file ({exc})") from exc
    if isinstance(head, dict) and "subtasks" in head:
        return "arenas"
    if isinstance(head, dict) and "messages" in head:
        return "sft"
    raise InputError(
        f"{path}:1: expected an SFT row (id, messages, tools) or an arena (…, subtasks); see --format"
    )


def read_probes(path: Path, fmt: InputFormat = "auto") -> list[Probe]:
    """Probes of an exported file: ``sft.jsonl`` rows or ``arenas.jsonl`` arenas."""
    kind = _detect_format(path) if fmt == "auto" else fmt
    if kind == "arenas":
        return [arena_probe(a) for a in read_arenas(path)]
    return [chat_probe(row.id, row.messages, row.tools) for _, row in read_jsonl_whole(path, _SftRow)]
