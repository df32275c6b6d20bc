"""Rollouts through the tool router: a real MCP server over stdio, the emulator (with injected failures),
and failed episodes kept as trajectories with a status."""

from __future__ import annotations

import json

import pytest

from astra_synth.llm.client import LLMClient
from astra_synth.testing.scripted import ScriptedLLM, error_reply, json_reply, text_reply, tool_call_reply
from astra_synth.tools.emulator import EmulatorConfig, ToolEmulator
from astra_synth.tools.router import ToolRouter
from astra_synth.tools.spec import ServerRecord, StdioTransport, ToolSpec
from astra_synth.trajectories.records import Task
from astra_synth.trajectories.rollout import RolloutStage

from .conftest import ContextFactory

TIME_SERVER = ServerRecord(
    id="time",
    title="Time",
    description="Current time and time zone conversion.",
    tools=[
        ToolSpec(
            name="get_current_time",
            description="Current time in an IANA time zone.",
            parameters={
                "type": "object",
                "properties": {"timezone": {"type": "string"}},
                "required": ["timezone"],
            },
        ),
        ToolSpec(name="convert_time", description="Convert a time between zones."),
    ],
    transport=StdioTransport(command="python", args=["-m", "mcp_server_time"]),
)


def _task(server: ServerRecord, question: str, tools: list[str]) -> Task:
    return Task(
        server=server, mode="server", question=question, target_tools=tools, chain_origin="server_only"
    )


@pytest.mark.slow
async def test_rollout_against_a_live_mcp_server(scripted_llm: ScriptedLLM, make_ctx: ContextFactory) -> None:
    scripted_llm.on(
        "What time is it in Lisbon",
        tool_call_reply(("get_current_time", {"timezone": "Europe/Lisbon"})),
        where="last",
    )
    scripted_llm.on("Europe/Lisbon", text_reply("It is morning in Lisbon."), where="last")
    async with ToolRouter() as router:
        trajectory = await RolloutStage(router).process(
            _task(TIME_SERVER, "What time is it in Lisbon right now?", ["get_current_time"]),
            make_ctx("rollout"),
        )
    assert trajectory.status == "completed"
    assert trajectory.execution == {"real": 1}
    tool_message = trajectory.messages[3]
    assert tool_message["role"] == "tool"
    result = json.loads(tool_message["content"])
    assert result["timezone"] == "Europe/Lisbon" and "datetime" in result
    assert trajectory.tools == [t.openai() for t in TIME_SERVER.tools]
    assert trajectory.messages[0]["role"] == "system" and trajectory.messages[1]["content"].startswith(
        "What time"
    )


async def test_rollout_on_the_emulator_with_and_without_injected_failures(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, llm_client: LLMClient, notes_server: ServerRecord
) -> None:
    scripted_llm.on(
        "Find my Lisbon note", tool_call_reply(("search_notes", {"query": "Lisbon"})), where="last"
    )
    scripted_llm.on(
        "You simulate a real software service", json_reply({"status": "ok", "result": {"ids": ["n7"]}})
    )
    scripted_llm.on("n7|timed out", text_reply("Done."), where="last")
    task = _task(notes_server, "Find my Lisbon note.", ["search_notes"])
    always_fail = ToolEmulator(llm_client, EmulatorConfig(failure_rate=1.0, failure_kinds=["timeout"]))
    async with ToolRouter(emulator=always_fail) as router:
        failed = await RolloutStage(router).process(task, make_ctx("rollout"))
    assert failed.execution == {"injected": 1} and failed.tool_failures == 1
    assert "timed out" in failed.messages[3]["content"]
    async with ToolRouter(emulator=ToolEmulator(llm_client, EmulatorConfig(failure_rate=0.0))) as router:
        emulated = await RolloutStage(router).process(task, make_ctx("rollout"))
    assert emulated.status == "completed" and emulated.execution == {"emulated": 1}
    assert json.loads(emulated.messages[3]["content"]) == {"ids": ["n7"]}


async def test_a_failed_episode_is_still_a_trajectory(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, llm_client: LLMClient, notes_server: ServerRecord
) -> None:
    scripted_llm.on("", error_reply(400))
    async with ToolRouter(emulator=ToolEmulator(llm_client)) as router:
        trajectory = await RolloutStage(router).process(
            _task(notes_server, "Find my note.", ["search_notes"]), make_ctx("rollout")
        )
    assert trajectory.status == "llm_error" and trajectory.llm_calls == 0
    assert [m["role"] for m in trajectory.messages] == ["system", "user"]
