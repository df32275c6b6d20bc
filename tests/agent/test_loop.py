"""The shared agent loop against the scripted endpoint over HTTP: rounds, bad calls, limits, failures."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from astra_synth.agent.chat import ToolCall
from astra_synth.agent.loop import AgentConfig, ToolReply, run_agent
from astra_synth.config import EndpointConfig
from astra_synth.llm.client import LLMClient
from astra_synth.testing.scripted import (
    Reply,
    ScriptedLLM,
    error_reply,
    reasoning_overflow_reply,
    text_reply,
    tool_call_reply,
)

CAPITALS = {"France": "Paris", "Peru": "Lima"}
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "capital_of",
            "description": "The capital city of a country.",
            "parameters": {
                "type": "object",
                "properties": {"country": {"type": "string"}},
                "required": ["country"],
            },
        },
    }
]
START = [
    {"role": "system", "content": "Use tools."},
    {"role": "user", "content": "Capitals of France and Peru?"},
]


class Capitals:
    """A real tool behind the callback; it records what it was asked."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.asked: list[dict[str, Any]] = []
        self.delay_s = delay_s

    async def __call__(self, name: str, arguments: dict[str, Any]) -> ToolReply:
        self.asked.append(arguments)
        await asyncio.sleep(self.delay_s)
        city = CAPITALS.get(str(arguments.get("country")))
        if city is None:
            return ToolReply(content=json.dumps({"error": "unknown country"}), ok=False, route="real")
        return ToolReply(content=json.dumps({"capital": city}), ok=True, route="real")


class Recorder:
    """A turn-level executor: it sees every call the model emitted, as parsed."""

    def __init__(self) -> None:
        self.turns: list[list[ToolCall]] = []

    async def step(self, calls: list[ToolCall]) -> list[ToolReply]:
        self.turns.append(calls)
        return [ToolReply(content=f"seen {c.name}", ok=c.error is None, route="env") for c in calls]


async def test_parallel_calls_then_final_answer(
    scripted_llm: ScriptedLLM, scripted_endpoint: EndpointConfig
) -> None:
    scripted_llm.on(
        "Capitals of",
        tool_call_reply(("capital_of", {"country": "France"}), ("capital_of", {"country": "Atlantis"})),
        where="last",
    )
    scripted_llm.on(
        "Atlantis|unknown country",
        text_reply("Paris; Atlantis is unknown.", reasoning="checked"),
        where="last",
    )
    tool = Capitals()
    async with LLMClient(scripted_endpoint) as llm:
        episode = await run_agent(llm, START, TOOLS, tool, AgentConfig(), stage="test")
    assert episode.status == "completed"
    assert (episode.llm_calls, episode.tool_calls, episode.tool_failures) == (2, 2, 1)
    assert episode.execution == {"real": 2}
    assert tool.asked == [{"country": "France"}, {"country": "Atlantis"}]
    roles = [m["role"] for m in episode.messages]
    assert roles == ["system", "user", "assistant", "tool", "tool", "assistant"]
    assert json.loads(episode.messages[3]["content"]) == {"capital": "Paris"}
    assert episode.messages[3]["tool_call_id"] == episode.messages[2]["tool_calls"][0]["id"]
    assert episode.messages[-1]["reasoning_content"] == "checked"
    sent = scripted_llm.chat_requests()[0]
    assert sent["tools"] == TOOLS


async def test_unknown_tools_and_bad_arguments_are_answered_not_executed(
    scripted_llm: ScriptedLLM, scripted_endpoint: EndpointConfig
) -> None:
    scripted_llm.on(
        "Capitals of",
        Reply(
            tool_calls=(
                *tool_call_reply(("delete_everything", {})).tool_calls,
                *tool_call_reply(("capital_of", "{country: Peru")).tool_calls,
            ),
            finish_reason="tool_calls",
        ),
        where="last",
    )
    scripted_llm.on("error", text_reply("Sorry."), where="last")
    tool = Capitals()
    async with LLMClient(scripted_endpoint) as llm:
        episode = await run_agent(llm, START, TOOLS, tool, AgentConfig(), stage="test")
    assert tool.asked == []
    assert episode.status == "completed" and episode.tool_failures == 2
    errors = [json.loads(m["content"])["error"]["type"] for m in episode.messages if m["role"] == "tool"]
    assert errors == ["unknown_tool", "invalid_arguments"]


async def test_limits_end_the_episode_with_a_status(
    scripted_llm: ScriptedLLM, scripted_endpoint: EndpointConfig
) -> None:
    scripted_llm.on("", tool_call_reply(("capital_of", {"country": "Peru"})), where="last")
    async with LLMClient(scripted_endpoint) as llm:
        capped = await run_agent(llm, START, TOOLS, Capitals(), AgentConfig(max_llm_calls=3), stage="test")
        slow = await run_agent(
            llm, START, TOOLS, Capitals(delay_s=0.2), AgentConfig(episode_timeout_s=0.5), stage="test"
        )
    assert capped.status == "max_llm_calls" and capped.llm_calls == 3 and capped.tool_calls == 3
    # The server numbers calls per turn; ids are made unique so every result pairs with its call.
    ids = [c["id"] for m in capped.messages for c in m.get("tool_calls", [])]
    assert ids == ["call_0_capital_of", "call_2_0", "call_3_0"]
    assert [m["tool_call_id"] for m in capped.messages if m["role"] == "tool"] == ids
    assert "3 model calls" in (capped.error or "")
    assert slow.status == "timeout" and 1 <= slow.tool_calls <= 3
    assert slow.messages[:2] == START and len(slow.messages) > 2  # what happened so far is kept


async def test_endpoint_failure_is_a_status_not_an_exception(
    scripted_llm: ScriptedLLM, scripted_endpoint: EndpointConfig
) -> None:
    scripted_llm.on("", error_reply(400))
    async with LLMClient(scripted_endpoint) as llm:
        episode = await run_agent(llm, START, TOOLS, Capitals(), AgentConfig(), stage="test")
    assert episode.status == "llm_error" and "400" in (episode.error or "")
    assert episode.messages == START


async def test_a_turn_executor_sees_every_call_malformed_and_unknown_included(
    scripted_llm: ScriptedLLM, scripted_endpoint: EndpointConfig
) -> None:
    scripted_llm.on(
        "Capitals of",
        Reply(
            tool_calls=(
                *tool_call_reply(("delete_everything", {})).tool_calls,
                *tool_call_reply(("capital_of", "{country: Peru")).tool_calls,
                *tool_call_reply(("capital_of", {"country": "Peru"})).tool_calls,
            ),
            finish_reason="tool_calls",
        ),
        where="last",
    )
    scripted_llm.on("seen", text_reply("Lima."), where="last")
    env = Recorder()
    async with LLMClient(scripted_endpoint) as llm:
        episode = await run_agent(llm, START, TOOLS, env, AgentConfig(), stage="test")
    [turn] = env.turns
    assert [c.name for c in turn] == ["delete_everything", "capital_of", "capital_of"]
    assert [c.error is None for c in turn] == [True, False, True]
    assert (episode.tool_calls, episode.tool_failures, episode.execution) == (3, 1, {"env": 3})
    assert [m["tool_call_id"] for m in episode.messages if m["role"] == "tool"] == [c.id for c in turn]


async def test_turn_cut_off_while_reasoning_is_asked_again_with_a_larger_cap(
    scripted_llm: ScriptedLLM, scripted_endpoint: EndpointConfig
) -> None:
    scripted_llm.on("Capitals of", reasoning_overflow_reply(), text_reply("Paris and Lima."), where="last")
    async with LLMClient(scripted_endpoint) as llm:
        episode = await run_agent(llm, START, TOOLS, Capitals(), AgentConfig(max_tokens=256), stage="test")
    assert episode.status == "completed" and episode.llm_calls == 2
    assert [r["max_tokens"] for r in scripted_llm.chat_requests()] == [256, 512]
    assert [m["role"] for m in episode.messages] == ["system", "user", "assistant"]


async def test_turn_cut_off_twice_while_reasoning_ends_the_episode(
    scripted_llm: ScriptedLLM, scripted_endpoint: EndpointConfig
) -> None:
    scripted_llm.on("Capitals of", reasoning_overflow_reply(), where="last")
    async with LLMClient(scripted_endpoint) as llm:
        episode = await run_agent(llm, START, TOOLS, Capitals(), AgentConfig(max_tokens=256), stage="test")
    assert episode.status == "truncated_by_reasoning" and episode.llm_calls == 2
    assert episode.error is not None and "512" in episode.error
    assert [m["role"] for m in episode.messages] == ["system", "user"]  # the empty turn is not kept
