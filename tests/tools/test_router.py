"""One router, three routes: live MCP, cassette, emulator; each outcome says which one served it."""

from __future__ import annotations

from typing import Any

import pytest

from astra_synth.llm.client import LLMClient
from astra_synth.testing.scripted import ScriptedLLM, json_reply
from astra_synth.tools.emulator import EmulatorConfig, ToolEmulator
from astra_synth.tools.router import ToolRouter
from astra_synth.tools.spec import EmulatedTransport, ServerRecord, StdioTransport, ToolSpec

ANY_ARGS = {"type": "object", "properties": {}}


def _helper(transport: StdioTransport) -> ServerRecord:
    docs = {
        "echo": "Return the given text unchanged",
        "add_to_counter": "Add an amount to the counter",
        "sleep_for": "Block for some seconds",
    }
    return ServerRecord(
        id="helper",
        title="Helper",
        transport=transport,
        tools=[ToolSpec(name=n, description=d, parameters=ANY_ARGS) for n, d in docs.items()],
    )


async def test_live_route_maps_answers_and_failures(helper_stdio: StdioTransport) -> None:
    server = _helper(helper_stdio)
    async with ToolRouter(call_timeout_s=0.5) as router:
        ok = await router.call(server, "echo", {"text": "hello"})
        counted = await router.call(server, "add_to_counter", {"amount": 5})
        again = await router.call(server, "add_to_counter", {"amount": 1})  # same live server, same state
        slow = await router.call(server, "sleep_for", {"seconds": 1.5})
        bad = await router.call(server, "add_to_counter", {"amount": "many"})
        unknown = await router.call(server, "process_id", {})  # on the server, but not in the record
    assert (ok.status, ok.content, ok.provenance) == ("ok", "hello", "real")
    assert counted.content == {"total": 5} and again.content == {"total": 6}
    assert slow.status == "timeout" and "0.5s" in (slow.error or "")
    assert bad.status == "tool_error" and bad.content is None and "amount" in (bad.error or "")
    assert unknown.status == "unknown_tool"


async def test_emulated_route_keeps_one_state_per_session(scripted_llm: ScriptedLLM) -> None:
    seen: list[str] = []

    def answer(body: dict[str, Any]) -> Any:
        seen.append(body["messages"][-1]["content"])
        return json_reply({"status": "ok", "result": {"n": len(seen)}})

    scripted_llm.on("simulate a real software service", answer)
    server = ServerRecord(
        id="desk",
        title="Desk",
        tools=[ToolSpec(name="ask", description="Ask the desk a question", parameters=ANY_ARGS)],
    )
    async with (
        LLMClient(scripted_llm.endpoint()) as llm,
        ToolRouter(emulator=ToolEmulator(llm, EmulatorConfig(failure_rate=0.0))) as router,
    ):
        a1 = await router.call(server, "ask", {"q": 1}, session="a")
        await router.call(server, "ask", {"q": 2}, session="b")
        await router.call(server, "ask", {"q": 3}, session="a")
        router.end_session("a")
        await router.call(server, "ask", {"q": 4}, session="a")
    assert a1.provenance == "emulated" and a1.content == {"n": 1}
    assert '"q": 1' in seen[2] and '"q": 2' not in seen[2]  # session a's history only
    assert "(0 call(s))" in seen[3]  # a forgotten session starts afresh


async def test_emulated_server_needs_an_emulator() -> None:
    server = ServerRecord(
        id="desk", title="Desk", transport=EmulatedTransport(),
        tools=[ToolSpec(name="ask", description="Ask the desk a question")],
    )  # fmt: skip
    async with ToolRouter() as router:
        with pytest.raises(ValueError, match="no emulator"):
            await router.call(server, "ask", {})


async def test_unreachable_live_server_is_an_outcome() -> None:
    server = _helper(StdioTransport(command="/nonexistent/server"))
    async with ToolRouter(connect_timeout_s=5) as router:
        outcome = await router.call(server, "echo", {"text": "x"})
    assert (outcome.status, outcome.provenance) == ("unreachable", "real")
    assert outcome.message_content().startswith('{"error": {"type": "unreachable"')
