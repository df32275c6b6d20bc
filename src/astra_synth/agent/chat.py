"""Typed chat records and the one tool-call parser, for OpenAI ``tool_calls`` and hermes ``<tool_call>`` text.

The rule for malformed calls, everywhere: a call with no name, JSON that does not parse, or arguments that
are not a JSON object is KEPT as a :class:`ToolCall` whose ``error`` says what is wrong (a broken hermes
block that opens with ``{"name": "…"`` keeps that name, e.g. one cut off by the token limit). Whoever executes
calls answers it with an error tool message and counts it as a call (the reward's precision pays for it);
it is never dropped and never repaired. Missing, null or empty arguments mean ``{}``. Everything here is
parsed as data; model text is never evaluated.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

_NAME_HEAD = re.compile(r'^\{\s*"name"\s*:\s*"([^"\\]+)"\s*(?:,\s*"arguments"\s*:\s*)?(.*)$', re.S)
"""A hermes block that opens with its name; group 2 is the rest (the arguments as written)."""
_BLOCK = re.compile(r"<tool_call>\s*(.*?)\s*(?:</tool_call>|$)", re.S)
_MALFORMED = "malformed tool call: expected {'function': {'name': ..., 'arguments': ...}}"
_MALFORMED_BLOCK = 'malformed tool call: expected <tool_call>{"name": ..., "arguments": {...}}</tool_call>'


class ToolCall(BaseModel):
    """One call as the model emitted it; ``error`` is set when it cannot be executed as written."""

    id: str = ""
    name: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)
    raw: str = Field(
        default="", description="The arguments (or the unreadable block) as the model wrote them."
    )
    error: str | None = None

    @property
    def arguments_json(self) -> str:
        """The arguments string of the OpenAI form: as written when malformed, so any parser sees the same."""
        return self.raw if self.error else json.dumps(self.arguments, ensure_ascii=False)

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments_json},
        }


class Message(BaseModel):
    """One chat message; transcripts stay OpenAI dicts on disk, this is their typed view."""

    role: str
    content: str | None = None
    tool_calls: list[ToolCall] = Field(default_factory=list)
    tool_call_id: str | None = None
    reasoning_content: str | None = None

    @classmethod
    def from_openai(cls, message: dict[str, Any]) -> Message:
        content = message.get("content")
        return cls(
            role=str(message.get("role", "")),
            content=content if isinstance(content, str) else None,
            tool_calls=parse_openai_calls(message.get("tool_calls")),
            tool_call_id=message.get("tool_call_id"),
            reasoning_content=message.get("reasoning_content"),
        )

    def to_openai(self) -> dict[str, Any]:
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        if self.reasoning_content is not None:
            out["reasoning_content"] = self.reasoning_content
        return out


def arguments_string(value: Any) -> str:
    """A call's arguments in the OpenAI form (a JSON string): a string is kept exactly as written, anything
    else is serialised (None as ``{}``). Writers of training data use it; readers parse by the rule above."""
    return (
        value
        if isinstance(value, str)
        else json.dumps(value if value is not None else {}, ensure_ascii=False)
    )


def _with_arguments(call: ToolCall, value: Any) -> ToolCall:
    """``call`` with ``value`` (as found in the call) read as its arguments, under the module's rule."""
    if isinstance(value, dict):
        return call.model_copy(update={"arguments": value, "raw": json.dumps(value, ensure_ascii=False)})
    if value is None or (isinstance(value, str) and not value.strip()):
        return call.model_copy(update={"raw": "" if value is None else value})
    raw = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    call = call.model_copy(update={"raw": raw})
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            error = f"arguments of {call.name!r} are not valid JSON: {exc.msg} at column {exc.colno}"
            return call.model_copy(update={"error": error})
    if not isinstance(value, dict):
        error = f"arguments of {call.name!r} must be a JSON object, got {type(value).__name__}"
        return call.model_copy(update={"error": error})
    return call.model_copy(update={"arguments": value})


def parse_openai_call(call: Any) -> ToolCall:
    """One entry of an OpenAI ``tool_calls`` list (arguments a JSON string or already a dict)."""
    if not isinstance(call, dict):
        return ToolCall(raw=str(call), error=_MALFORMED)
    call_id = str(call.get("id") or "")
    function = call.get("function")
    if not isinstance(function, dict) or not isinstance(function.get("name"), str) or not function["name"]:
        raw = json.dumps(function, ensure_ascii=False) if function is not None else ""
        return ToolCall(id=call_id, raw=raw, error=_MALFORMED)
    return _with_arguments(ToolCall(id=call_id, name=function["name"]), function.get("arguments"))


def parse_openai_calls(calls: Any) -> list[ToolCall]:
    """A message's ``tool_calls`` (None or empty: no calls)."""
    return [parse_openai_call(c) for c in calls] if isinstance(calls, list) else []


def parse_hermes_calls(text: str) -> list[ToolCall]:
    """Every ``<tool_call>{json}</tool_call>`` block of ``text``, ids ``call_0``, ``call_1``, …; a block cut
    off by the end of the text still counts (it was emitted)."""
    calls = []
    for i, body in enumerate(_BLOCK.findall(text)):
        call_id = f"call_{i}"
        try:
            obj = json.loads(body)
        except json.JSONDecodeError as exc:
            head = _NAME_HEAD.match(body)
            if head:  # the name is readable: keep it, so the error can say which tool's arguments broke
                name, raw = head.group(1), head.group(2)
                error = f"arguments of {name!r} are not valid JSON (broken <tool_call> block): {exc.msg}"
                calls.append(ToolCall(id=call_id, name=name, raw=raw, error=error))
            else:
                error = f"malformed tool call: the <tool_call> block is not valid JSON: {exc.msg}"
                calls.append(ToolCall(id=call_id, raw=body, error=error))
            continue
        if not isinstance(obj, dict) or not isinstance(obj.get("name"), str) or not obj["name"]:
            calls.append(ToolCall(id=call_id, raw=body, error=_MALFORMED_BLOCK))
            continue
        calls.append(_with_arguments(ToolCall(id=call_id, name=obj["name"]), obj.get("arguments")))
    return calls


def content_without_calls(text: str) -> str:
    """The visible text of a hermes turn: the turn with its tool-call blocks removed."""
    return _BLOCK.sub("", text).strip()


def unique_call_ids(calls: Iterable[ToolCall], seen: set[str], turn: int) -> list[ToolCall]:
    """Tool-call ids must pair each result with its call across the whole episode; servers that repeat
    ids (per turn counters) or omit them get fresh ones (``call_<turn>_<index>``). ``seen`` is updated."""
    fixed = []
    for i, call in enumerate(calls):
        call_id = call.id
        if not call_id or call_id in seen:
            call_id = f"call_{turn}_{i}"
            while call_id in seen:
                call_id += "_"
            call = call.model_copy(update={"id": call_id})
        seen.add(call_id)
        fixed.append(call)
    return fixed
