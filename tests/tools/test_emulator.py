"""The stateful emulator against the scripted OpenAI-compatible server (real HTTP)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest
from llama_cpp.llama_grammar import json_schema_to_gbnf

from astra_synth.llm.cache import ResponseCache
from astra_synth.llm.client import LLMClient
from astra_synth.testing.scripted import (
    Reply,
    ScriptedLLM,
    invalid_json_reply,
    json_reply,
    server_error_reply,
)
from astra_synth.tools.emulator import (
    EmulatedResponse,
    EmulatorConfig,
    ToolEmulator,
    argument_problem,
    draw_failure,
    render_history,
)
from astra_synth.tools.outcome import ToolOutcome
from astra_synth.tools.spec import ServerRecord, ToolSpec

SYSTEM = "simulate a real software service"

SHOP = ServerRecord(
    id="shop",
    title="Shop",
    description="An online shop's order desk.",
    tools=[
        ToolSpec(
            name="create_order",
            description="Create an order for a product and return its id",
            parameters={
                "type": "object",
                "properties": {"product": {"type": "string"}, "quantity": {"type": "integer"}},
                "required": ["product"],
            },
        ),
        ToolSpec(
            name="get_order",
            description="Fetch an order by its id",
            parameters={
                "type": "object",
                "properties": {"order_id": {"type": "string"}},
                "required": ["order_id"],
            },
        ),
        ToolSpec(name="list_products", description="List the products on sale"),
    ],
)


def _shop_backend(body: dict[str, Any]) -> Reply:
    """A tiny 'model' that answers from the prompt: creates ORD-<n>, fetches what the history holds."""
    prompt = body["messages"][-1]["content"]
    call = prompt.rsplit("Now answer this call:", 1)[1].strip()
    if call.startswith("create_order"):
        return json_reply({"status": "ok", "result": {"order_id": f"ORD-{prompt.count('create_order(')}"}})
    if call.startswith("get_order"):
        wanted = json.loads(call[len("get_order(") : -1])["order_id"]
        if wanted in prompt.split("Now answer this call:")[0]:
            return json_reply({"status": "ok", "result": {"order_id": wanted, "state": "created"}})
        return json_reply({"status": "error", "error_message": f"order {wanted} not found"})
    return json_reply({"status": "ok", "result": ["tea", "coffee"]})


@pytest.fixture
async def client(scripted_llm: ScriptedLLM) -> Any:
    async with LLMClient(scripted_llm.endpoint(max_retries=0)) as llm:
        yield llm


async def test_history_reaches_the_prompt_so_created_things_can_be_fetched(
    scripted_llm: ScriptedLLM, client: LLMClient
) -> None:
    scripted_llm.on(SYSTEM, _shop_backend)
    session = ToolEmulator(client, EmulatorConfig(failure_rate=0.0)).session(
        SHOP, "ep-1", user_query="buy tea"
    )
    created = await session.call("create_order", {"product": "tea", "quantity": 2})
    fetched = await session.call("get_order", {"order_id": created.content["order_id"]})
    missing = await session.call("get_order", {"order_id": "ORD-999"})
    assert created.status == "ok" and created.provenance == "emulated" and not created.injected
    assert fetched.status == "ok" and fetched.content == {"order_id": "ORD-1", "state": "created"}
    assert missing.status == "tool_error" and missing.error == "order ORD-999 not found"
    second_prompt = scripted_llm.chat_requests()[1]["messages"][-1]["content"]
    assert 'create_order({"product": "tea", "quantity": 2}) -> {"order_id": "ORD-1"}' in second_prompt
    assert "buy tea" in second_prompt and "An online shop's order desk." in second_prompt
    third_prompt = scripted_llm.chat_requests()[2]["messages"][-1]["content"]
    assert "(2 call(s))" in third_prompt and "get_order" in third_prompt.split("Now answer")[0]
    assert session.history == [created, fetched, missing]


async def test_sessions_do_not_share_state(scripted_llm: ScriptedLLM, client: LLMClient) -> None:
    scripted_llm.on(SYSTEM, _shop_backend)
    emulator = ToolEmulator(client, EmulatorConfig(failure_rate=0.0))
    a, b = emulator.session(SHOP, "a"), emulator.session(SHOP, "b")
    await a.call("create_order", {"product": "tea"})
    assert (await b.call("get_order", {"order_id": "ORD-1"})).status == "tool_error"


async def test_failure_rate_over_1000_calls_and_same_seed_same_failures(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    scripted_llm.on(SYSTEM, json_reply({"status": "ok", "result": ["tea"]}))
    # A response cache keeps the test fast: the emulated answers repeat, the failure draws do not.
    cache = ResponseCache(tmp_path / "llm.sqlite")

    async def run(seed: int, episodes: int, **config: Any) -> list[list[str]]:
        async with LLMClient(scripted_llm.endpoint(max_retries=0), cache=cache) as llm:
            emulator = ToolEmulator(llm, EmulatorConfig(seed=seed, **config))

            async def episode(i: int) -> list[str]:
                session = emulator.session(SHOP, f"episode-{i}")
                return [(await session.call("list_products", {})).status for _ in range(4)]

            return list(await asyncio.gather(*(episode(i) for i in range(episodes))))

    first = await run(seed=7, episodes=250)
    statuses = [s for episode in first for s in episode]
    failed = [s for s in statuses if s != "ok"]
    assert len(statuses) == 1000
    assert 0.17 <= len(failed) / 1000 <= 0.23
    assert set(failed) == {"timeout", "rate_limited", "server_error"}  # transient only, by default
    assert {tuple(e) for e in first} > {("ok",) * 4}  # failures fall on every call index, not only the first
    assert any(e[3] != "ok" for e in first) and any(e[0] != "ok" for e in first)
    assert await run(seed=7, episodes=50) == first[:50]
    assert await run(seed=8, episodes=50) != first[:50]
    permanent = await run(seed=7, episodes=50, failure_kinds=["invalid_argument", "not_found"])
    assert {s for e in permanent for s in e} == {"ok", "invalid_argument", "not_found"}  # opt-in


def test_draw_failure_is_a_pure_function_of_seed_session_and_index() -> None:
    kinds: list[Any] = ["timeout", "not_found"]
    draws = [draw_failure(3, "s", i, 0.2, kinds) for i in range(20_000)]
    assert draws == [draw_failure(3, "s", i, 0.2, kinds) for i in range(20_000)]
    assert abs(sum(d is not None for d in draws) / 20_000 - 0.2) < 0.01
    assert {d for d in draws if d} == {"timeout", "not_found"}
    assert all(draw_failure(3, "s", i, 0.0, kinds) is None for i in range(1000))
    assert all(draw_failure(3, "s", i, 1.0, kinds) is not None for i in range(1000))


async def test_injected_failure_has_a_fixed_typed_payload(
    scripted_llm: ScriptedLLM, client: LLMClient
) -> None:
    session = ToolEmulator(client, EmulatorConfig(failure_rate=1.0, failure_kinds=["rate_limited"])).session(
        SHOP, "x"
    )
    outcome = await session.call("list_products", {})
    assert (outcome.status, outcome.injected, outcome.ok) == ("rate_limited", True, False)
    assert json.loads(outcome.message_content())["error"]["type"] == "rate_limited"
    assert "429" in (outcome.error or "")
    assert scripted_llm.chat_requests() == []


@pytest.mark.parametrize(
    "reply",
    [
        invalid_json_reply(),
        json_reply({"status": "ok"}),  # ok without a result
        Reply(content="I am sorry, as an AI I cannot run tools."),
        server_error_reply(),
    ],
)
async def test_llm_garbage_or_failure_is_a_typed_outcome(
    scripted_llm: ScriptedLLM, client: LLMClient, reply: Reply
) -> None:
    scripted_llm.on(SYSTEM, reply)
    session = ToolEmulator(client, EmulatorConfig(failure_rate=0.0)).session(SHOP, "x")
    outcome = await session.call("list_products", {})
    assert outcome.status == "emulator_error" and outcome.error
    assert outcome.provenance == "emulated" and not outcome.injected
    assert session.history == [outcome]


async def test_bad_arguments_and_unknown_tools_are_caught_by_code(
    scripted_llm: ScriptedLLM, client: LLMClient
) -> None:
    session = ToolEmulator(client, EmulatorConfig(failure_rate=0.0)).session(SHOP, "x")
    missing = await session.call("create_order", {"quantity": 1})
    wrong = await session.call("create_order", {"product": "tea", "quantity": "two"})
    unknown = await session.call("delete_everything", {})
    assert (missing.status, missing.error) == ("invalid_argument", "missing required argument(s): product")
    assert wrong.status == "invalid_argument" and "'quantity' must be of type integer" in (wrong.error or "")
    assert unknown.status == "unknown_tool"
    assert scripted_llm.chat_requests() == []


def test_argument_problem_types() -> None:
    spec = ToolSpec(
        name="t",
        description="A test tool with typed args",
        parameters={
            "type": "object",
            "properties": {"n": {"type": "number"}, "flag": {"type": "boolean"}, "any": {}},
            "additionalProperties": False,
        },
    )
    assert argument_problem(spec, {"n": 2, "flag": True, "any": [1]}) is None
    assert argument_problem(spec, {"n": True}) is not None  # a bool is not a number
    assert argument_problem(spec, {"extra": 1}) == "unknown argument(s): extra"


def test_long_history_shortens_the_oldest_results_but_keeps_every_call() -> None:
    history = [
        ToolOutcome(server_id="s", tool=f"t{i}", status="ok", content="x" * 2000, provenance="emulated")
        for i in range(20)
    ]
    text = render_history(history, max_chars=10_000)
    assert len(text) <= 10_000
    assert [int(m) for m in re.findall(r"^- t(\d+)\(", text, flags=re.M)] == list(range(20))
    assert text.splitlines()[-1] == "- t19({}) -> " + "x" * 2000  # the latest stays whole
    assert "(shortened)" in text.splitlines()[0]


def test_response_schema_is_grammar_convertible() -> None:
    """llama.cpp turns the schema into a grammar; an untyped field would make it decode unconstrained."""
    grammar = json_schema_to_gbnf(json.dumps(EmulatedResponse.model_json_schema()))
    assert 'status ::= "\\"ok\\"" | "\\"error\\""' in grammar
    assert "result ::=" in grammar
