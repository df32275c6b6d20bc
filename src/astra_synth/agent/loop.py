"""A minimal OpenAI tool-calling agent loop, shared by trajectory rollouts and evaluation.

The model sees OpenAI ``tools``; each assistant turn may call several tools, which run in order through a
callback (live MCP, emulator, cassette, sandbox: the loop does not care). Arguments are parsed from the
JSON string the model wrote and passed on as data; model text is never evaluated. The loop ends when a turn
calls no tool, after ``max_llm_calls`` model calls, or at the episode's wall-clock budget, and it always
returns what happened so far with a status, so a failed episode is recorded like a good one.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

from astra_synth.config import StrictModel
from astra_synth.llm.client import LLMCallError, LLMClient

EpisodeStatus = Literal["completed", "max_llm_calls", "timeout", "llm_error"]


class AgentConfig(StrictModel):
    max_llm_calls: int = Field(default=20, ge=1, description="Model calls per episode (authors: 20).")
    episode_timeout_s: float = Field(default=240.0, gt=0, description="Wall-clock budget per episode.")
    temperature: float = Field(default=0.7, ge=0)
    max_tokens: int | None = Field(default=1024, ge=16)


class ToolReply(BaseModel):
    """What a tool call gave back: the ``tool`` message text, whether it worked, and how it was served."""

    content: str
    ok: bool
    route: str = Field(default="", description="e.g. real, replayed, emulated, injected.")


ToolCallback = Callable[[str, dict[str, Any]], Awaitable[ToolReply]]


class Episode(BaseModel):
    messages: list[dict[str, Any]]
    status: EpisodeStatus
    llm_calls: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    routes: dict[str, int] = Field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0


def _error(kind: str, message: str) -> str:
    return json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)


def parse_arguments(raw: Any) -> dict[str, Any] | str:
    """The call's arguments as a dict, or the reason they are unusable (told to the model as the result)."""
    if isinstance(raw, dict):
        return raw
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return {}
    try:
        value = json.loads(raw)
    except (TypeError, json.JSONDecodeError) as exc:
        return f"arguments are not valid JSON: {exc}"
    return (
        value if isinstance(value, dict) else f"arguments must be a JSON object, got {type(value).__name__}"
    )


def _unique_call_ids(message: dict[str, Any], seen: set[str], turn: int) -> dict[str, Any]:
    """Tool-call ids must pair each result with its call across the whole episode; servers that repeat
    ids (per turn counters) or omit them get fresh ones."""
    calls = message.get("tool_calls")
    if not calls:
        return message
    fixed = []
    for i, call in enumerate(calls):
        call_id = str(call.get("id") or "")
        if not call_id or call_id in seen:
            call_id = f"call_{turn}_{i}"
            while call_id in seen:
                call_id += "_"
            call = {**call, "id": call_id}
        seen.add(call_id)
        fixed.append(call)
    return {**message, "tool_calls": fixed}


async def run_agent(
    llm: LLMClient,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    execute: ToolCallback,
    config: AgentConfig,
    *,
    stage: str,
    seed: int | None = None,
) -> Episode:
    """Run one episode from ``messages`` (system + user, usually). Only a bug in ``execute`` raises."""
    names = {t.get("function", {}).get("name") for t in tools}
    transcript = list(messages)
    counts = Counter[str]()
    llm_calls = tool_calls = failures = 0
    seen_ids: set[str] = set()
    status: EpisodeStatus = "max_llm_calls"
    error: str | None = None
    started = time.monotonic()
    try:
        async with asyncio.timeout(config.episode_timeout_s):
            while llm_calls < config.max_llm_calls:
                result = await llm.chat(
                    transcript,
                    stage=stage,
                    tools=tools or None,
                    # llama-cpp-python's function-calling format reads a missing tool_choice as "none"
                    # and drops the tools; "auto" is every other server's default anyway.
                    tool_choice="auto" if tools else None,
                    temperature=config.temperature,
                    max_tokens=config.max_tokens,
                    seed=seed,
                )
                llm_calls += 1
                message = _unique_call_ids(result.message, seen_ids, llm_calls)
                transcript.append(message)
                calls = message.get("tool_calls") or []
                if not calls:
                    status = "completed"
                    break
                for call in calls:
                    tool_calls += 1
                    name = call.get("function", {}).get("name", "")
                    arguments = parse_arguments(call.get("function", {}).get("arguments"))
                    if name not in names:
                        reply = ToolReply(content=_error("unknown_tool", f"no tool named {name!r}"), ok=False)
                    elif isinstance(arguments, str):
                        reply = ToolReply(content=_error("invalid_arguments", arguments), ok=False)
                    else:
                        reply = await execute(name, arguments)
                    failures += not reply.ok
                    counts[reply.route or "none"] += 1
                    transcript.append(
                        {"role": "tool", "tool_call_id": call.get("id"), "content": reply.content}
                    )
    except TimeoutError:
        status, error = "timeout", f"episode exceeded {config.episode_timeout_s:g} s"
    except LLMCallError as exc:
        status, error = "llm_error", str(exc)[:1000]
    if status == "max_llm_calls":
        error = f"no final answer within {config.max_llm_calls} model calls"
    return Episode(
        messages=transcript,
        status=status,
        llm_calls=llm_calls,
        tool_calls=tool_calls,
        tool_failures=failures,
        routes=dict(counts),
        error=error,
        seconds=round(time.monotonic() - started, 3),
    )
