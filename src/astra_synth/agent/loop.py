"""A minimal OpenAI tool-calling agent loop, shared by trajectory rollouts and evaluation.

The model sees OpenAI ``tools``; each assistant turn may call several tools. The calls are parsed by
:mod:`astra_synth.agent.chat` (malformed ones kept, with their error) and every one of them goes to the
executor (an ``ArenaEnv``, or a per-call callback: live MCP, emulator, cassette; the loop does not care).
Arguments are passed on as data; model text is never evaluated. The loop ends when a turn
calls no tool, after ``max_llm_calls`` model calls, or at the episode's wall-clock budget, and it always
returns what happened so far with a status, so a failed episode is recorded like a good one. A turn cut off
while the model was still reasoning is asked again once with twice the token cap; cut off again, the
episode ends as ``truncated_by_reasoning`` (the empty turn is not kept).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field

from astra_synth.agent.chat import Message, ToolCall, parse_openai_calls, unique_call_ids
from astra_synth.config import StrictModel
from astra_synth.llm.client import LLMCallError, LLMClient

EpisodeStatus = Literal["completed", "max_llm_calls", "timeout", "llm_error", "truncated_by_reasoning"]


class AgentConfig(StrictModel):
    max_llm_calls: int = Field(default=20, ge=1, description="Model calls per episode (authors: 20).")
    episode_timeout_s: float = Field(default=240.0, gt=0, description="Wall-clock budget per episode.")
    temperature: float = Field(default=0.7, ge=0)
    max_tokens: int | None = Field(
        default=1024, ge=16, description="Cap of one turn (the endpoint's reasoning_tokens come on top)."
    )


class ToolReply(BaseModel):
    """What a tool call gave back: the ``tool`` message text, whether it worked, and how it was served."""

    content: str
    ok: bool
    route: str = Field(default="", description="e.g. real, replayed, emulated, injected.")


ToolCallback = Callable[[str, dict[str, Any]], Awaitable[ToolReply]]


class Episode(StrictModel):
    """What one run of the loop did, whatever its outcome (a trajectory is an episode with its task)."""

    messages: list[dict[str, Any]]
    status: EpisodeStatus
    llm_calls: int = 0
    tool_calls: int = 0
    tool_failures: int = 0
    execution: dict[str, int] = Field(
        default_factory=dict, description="Tool calls per execution route (live, emulated, cassette, …)."
    )
    error: str | None = None
    seconds: float = 0.0


def _error(kind: str, message: str) -> str:
    return json.dumps({"error": {"type": kind, "message": message}}, ensure_ascii=False)


@runtime_checkable
class CallExecutor(Protocol):
    """Whatever runs one assistant turn's calls; it gets every call the model emitted, malformed ones
    included, and answers each (one reply per call, in order)."""

    async def step(self, calls: list[ToolCall]) -> list[ToolReply]: ...


class PerCallExecutor:
    """A per-call ``(name, arguments)`` callback as a :class:`CallExecutor`: calls to a tool not offered and
    malformed calls are answered with an error here and never reach the callback."""

    def __init__(self, tools: list[dict[str, Any]], callback: ToolCallback) -> None:
        self.names = {t.get("function", {}).get("name") for t in tools}
        self.callback = callback

    async def step(self, calls: list[ToolCall]) -> list[ToolReply]:
        replies = []
        for call in calls:
            if call.name not in self.names:
                reply = ToolReply(content=_error("unknown_tool", f"no tool named {call.name!r}"), ok=False)
            elif call.error is not None:
                reply = ToolReply(content=_error("invalid_arguments", call.error), ok=False)
            else:
                reply = await self.callback(call.name, call.arguments)
            replies.append(reply)
        return replies


def _with_ids(message: dict[str, Any], calls: list[ToolCall]) -> dict[str, Any]:
    """``message`` as the model sent it, with the episode-unique call ids."""
    sent = message.get("tool_calls") or []
    fixed = [
        {**orig, "id": call.id} if isinstance(orig, dict) else call.to_openai()
        for orig, call in zip(sent, calls, strict=True)
    ]
    return {**message, "tool_calls": fixed}


async def run_agent(
    llm: LLMClient,
    messages: list[dict[str, Any]],
    tools: list[dict[str, Any]],
    execute: CallExecutor | ToolCallback,
    config: AgentConfig,
    *,
    stage: str,
    seed: int | None = None,
) -> Episode:
    """Run one episode from ``messages`` (system + user, usually). Only a bug in ``execute`` raises.

    Every call the model emits goes to ``execute`` (a per-call callback is wrapped in
    :class:`PerCallExecutor`); each call counts, and each reply becomes the call's tool message.
    """
    executor = execute if isinstance(execute, CallExecutor) else PerCallExecutor(tools, execute)
    transcript = list(messages)
    counts = Counter[str]()
    llm_calls = tool_calls = failures = 0
    seen_ids: set[str] = set()
    status: EpisodeStatus = "max_llm_calls"
    error: str | None = None
    started = time.monotonic()
    raised_cap: int | None = None  # the larger cap of a turn re-asked after reasoning filled the first
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
                    max_tokens=raised_cap or config.max_tokens,
                    seed=seed,
                )
                llm_calls += 1
                message = result.message
                if result.cut_while_reasoning and not message.get("tool_calls"):
                    if config.max_tokens is not None and raised_cap is None:
                        raised_cap = config.max_tokens * 2
                        continue
                    status = "truncated_by_reasoning"
                    error = f"the model's reasoning filled the token cap ({raised_cap or config.max_tokens})"
                    break
                raised_cap = None
                calls = unique_call_ids(parse_openai_calls(message.get("tool_calls")), seen_ids, llm_calls)
                if not calls:
                    transcript.append(message)
                    status = "completed"
                    break
                transcript.append(_with_ids(message, calls))
                tool_calls += len(calls)
                replies = await executor.step(calls)
                for call, reply in zip(calls, replies, strict=True):
                    failures += not reply.ok
                    counts[reply.route or "none"] += 1
                    transcript.append(
                        Message(role="tool", tool_call_id=call.id, content=reply.content).to_openai()
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
        execution=dict(counts),
        error=error,
        seconds=round(time.monotonic() - started, 3),
    )
