"""Stages 6 (merge) and 5/7 (arena build: battery, replay, probes), scripted LLM and real sandbox."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from astra_synth.arenas.arena_check import ArenaCheckStage
from astra_synth.arenas.instance import SubQuestion
from astra_synth.arenas.merge import ArenaTool, MergedInstance, MergeStage, rename_function, unique_names
from astra_synth.arenas.records import FunctionSpec, GoldenCall
from astra_synth.arenas.tool_synthesis import SynthesizedTool, ToolDocDraft, ToolInstance
from astra_synth.errors import Rejection
from astra_synth.llm.cache import ResponseCache
from astra_synth.llm.client import LLMClient
from astra_synth.runs.stage import StageContext
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.testing.scripted import ScriptedLLM, json_reply

SPEC = ToolDocDraft.model_validate(
    {
        "name": "get_hotel_rate",
        "description": "Nightly rate of a hotel on a date, in EUR.",
        "parameters": [
            {"name": "hotel", "type": "string", "description": "Hotel name"},
            {"name": "date", "type": "string", "description": "Date, YYYY-MM-DD"},
        ],
    }
).spec()


def code(table: dict[str, int]) -> str:
    return (
        "def get_hotel_rate(hotel, date):\n"
        f"    rates = {table!r}\n"
        "    if hotel not in rates or date != '2026-05-12':\n"
        "        raise ValueError(f'no rate for {hotel} on {date}')\n"
        "    return {'hotel': hotel, 'rate': f'{rates[hotel]} EUR'}\n"
    )


def tool(sid: str, hotel: str, rate: int) -> SynthesizedTool:
    return SynthesizedTool(
        sub_id=sid,
        spec=SPEC,
        source=code({hotel: rate, "Other Inn": 60}),
        golden_call=GoldenCall(name="get_hotel_rate", arguments={"hotel": hotel, "date": "2026-05-12"}),
        scaled=False,
        checks=[],
        llm_calls=4,
        attempts=1,
    )


def instance() -> ToolInstance:
    subs = [
        SubQuestion(
            id="q1", question="Rate of Aurora on 2026-05-12?", answer="150 EUR", hop_level=1, needs_tool=True
        ),
        SubQuestion(
            id="q2",
            question="Rate of Casa Azul on 2026-05-12?",
            answer="95 EUR",
            hop_level=1,
            needs_tool=True,
        ),
        SubQuestion(
            id="q3",
            question="Which is cheaper?",
            answer="Casa Azul",
            parents=["q1", "q2"],
            hop_level=2,
            needs_tool=False,
        ),
    ]
    return ToolInstance(
        language="en",
        domain="Travel",
        scenario_type="parallel-multi-hop",
        main_question="Which hotel is cheaper on 12 May 2026, Aurora or Casa Azul?",
        final_answer="Casa Azul",
        sub_questions=subs,
        tools={"q1": tool("q1", "Aurora", 150), "q2": tool("q2", "Casa Azul", 95)},
    )


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ToolExecutor]:
    with get_executor("subprocess") as executor:
        yield executor


@pytest.fixture
async def llm(scripted_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    async with LLMClient(scripted_llm.endpoint(schema_mode="llama_cpp")) as client:
        yield client


def ctx(llm: LLMClient | None, sandbox: ToolExecutor, seed: int = 0) -> StageContext:
    return StageContext(stage="s", item_id="abc123", seed=seed, llm=llm, sandbox=sandbox)


def script_merge(server: ScriptedLLM, merged_code: str) -> None:
    server.on(
        "You group the sub-questions",
        json_reply({"clusters": [{"intent": "hotel rate", "ids": ["q2", "q1"]}]}),
    )

    def call_for(body: dict) -> object:
        text = body["messages"][0]["content"]
        hotel = "Casa Azul" if "Casa Azul" in text.split("Question:")[1] else "Aurora"
        return json_reply({"hotel": hotel, "date": "2026-05-12"})

    server.on("Write the call of the tool below", call_for)
    server.on("Extend ONLY its data", json_reply({"code": merged_code}))
    server.on(
        "One tool now serves several",
        json_reply({"description": "Nightly rate of any listed hotel on a date."}),
    )


async def test_merge_inserts_then_builds_a_replayable_arena(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script_merge(scripted_llm, code({"Aurora": 150, "Casa Azul": 95, "Other Inn": 60}))
    merged = await MergeStage().process(instance(), ctx(llm, sandbox))
    assert len(merged.arena_tools) == 1
    only = merged.arena_tools[0]
    assert only.merged and set(only.calls) == {"q1", "q2"}
    assert only.spec.description == "Nightly rate of any listed hotel on a date."
    # the insertion prompt listed every member so far, not just the new one
    insert = next(r for r in scripted_llm.chat_requests() if "Extend ONLY" in r["messages"][0]["content"])
    assert "150 EUR" in insert["messages"][0]["content"] and "95 EUR" in insert["messages"][0]["content"]

    arena = await ArenaCheckStage(model="scripted", run_id="r1").process(merged, ctx(None, sandbox))
    assert arena.report is not None and arena.report.passed and arena.report.replay_ok
    assert max(arena.report.probe_rewards.values()) <= 0.1
    assert [s.needs_tool for s in arena.subtasks] == [True, True, False]
    assert arena.provenance.method == "synthesized" and arena.provenance.run_id == "r1"


async def test_a_member_that_cannot_be_inserted_keeps_its_own_tool(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script_merge(scripted_llm, code({"Other Inn": 60}))  # loses both answers: every insertion fails
    merged = await MergeStage().process(instance(), ctx(llm, sandbox))
    names = sorted(t.spec.name for t in merged.arena_tools)
    assert names == ["get_hotel_rate", "get_hotel_rate_2"]  # unmerged twins get unique names
    assert any("could not be inserted" in line for line in merged.merge_log)
    arena = await ArenaCheckStage(model="scripted", run_id="r1").process(merged, ctx(None, sandbox))
    assert arena.report is not None and arena.report.passed


async def test_build_drops_an_arena_that_does_not_replay(sandbox: ToolExecutor) -> None:
    inst = instance()
    broken = ArenaTool(spec=SPEC, source=code({"Other Inn": 60}), calls={"q1": inst.tools["q1"].golden_call})
    ok = ArenaTool(
        spec=SPEC.model_copy(update={"name": "get_rate_b"}),
        source=rename_function(inst.tools["q2"].source, "get_hotel_rate", "get_rate_b"),
        calls={"q2": inst.tools["q2"].golden_call.model_copy(update={"name": "get_rate_b"})},
    )
    merged = MergedInstance(**inst.model_dump(), arena_tools=[broken, ok])
    with pytest.raises(Rejection) as exc:
        await ArenaCheckStage(model="m", run_id="r").process(merged, ctx(None, sandbox))
    assert exc.value.reason == "arena_check_failed" and "golden_output[q1]" in exc.value.detail


def test_unique_names_rename_source_and_calls() -> None:
    a = ArenaTool(spec=SPEC, source=code({"A": 1}), calls={"q1": GoldenCall(name="get_hotel_rate")})
    out = unique_names([a, a, a])
    assert [t.spec.name for t in out] == ["get_hotel_rate", "get_hotel_rate_2", "get_hotel_rate_3"]
    assert "def get_hotel_rate_3(" in out[2].source and out[2].calls["q1"].name == "get_hotel_rate_3"


async def test_an_insert_retry_samples_anew_and_its_call_prompt_says_why(
    scripted_llm: ScriptedLLM, sandbox: ToolExecutor, tmp_path: Path
) -> None:
    scripted_llm.on(  # first match wins: this rule comes before script_merge's
        "Extend ONLY its data",
        json_reply({"code": code({"Other Inn": 60})}),  # the first insertion loses both answers
        json_reply({"code": code({"Aurora": 150, "Casa Azul": 95, "Other Inn": 60})}),
    )
    script_merge(scripted_llm, "unused")
    cache = ResponseCache(tmp_path / "cache.sqlite")
    async with LLMClient(scripted_llm.endpoint(schema_mode="llama_cpp"), cache=cache) as cached:
        merged = await MergeStage().process(instance(), ctx(cached, sandbox))
    assert len(merged.arena_tools) == 1 and merged.arena_tools[0].merged
    sent = scripted_llm.chat_requests()
    calls = [r for r in sent if "Write the call of the tool below" in r["messages"][0]["content"]]
    assert [r["temperature"] for r in calls] == [0.0, 0.7]
    assert "The previous attempt was rejected" in calls[1]["messages"][0]["content"]
    inserts = [r for r in sent if "Extend ONLY" in r["messages"][0]["content"]]
    assert [r["temperature"] for r in inserts] == [0.0, 0.7]


CONVERT = FunctionSpec(
    name="convert_amount",
    description="Convert an amount of money at a given exchange rate.",
    parameters={
        "type": "object",
        "properties": {"amount": {"type": "number"}, "rate": {"type": "number"}},
        "required": ["amount", "rate"],
    },
)
CONVERT_CODE = (
    "def convert_amount(amount, rate):\n"
    "    if amount < 0 or rate <= 0:\n"
    "        raise ValueError('the amount must be non-negative and the rate positive')\n"
    "    return {'amount': round(amount * rate, 2), 'currency': 'USD'}\n"
)


def calculators() -> ToolInstance:
    """Two conversions, each with the calculator that defined its answer."""
    amounts = {"q1": (354, "384.62"), "q2": (120, "130.38")}
    subs = [
        SubQuestion(
            id=sid,
            question=f"How much is {amount} EUR in USD at 1.0865?",
            answer=answer,
            hop_level=1,
            needs_tool=True,
            kind="compute",
        )
        for sid, (amount, answer) in amounts.items()
    ]
    tools = {
        sid: SynthesizedTool(
            sub_id=sid,
            spec=CONVERT,
            source=CONVERT_CODE,
            golden_call=GoldenCall(name="convert_amount", arguments={"amount": amount, "rate": 1.0865}),
            scaled=False,
            checks=[],
            llm_calls=4,
            attempts=1,
        )
        for sid, (amount, _) in amounts.items()
    }
    return ToolInstance(
        language="en",
        domain="Travel",
        scenario_type="parallel-single-hop",
        main_question="How much are 354 EUR and 120 EUR in USD at 1.0865?",
        final_answer="384.62 USD and 130.38 USD.",
        sub_questions=subs,
        tools=tools,
    )


async def test_calculators_merge_without_inserting_anything(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    scripted_llm.on("You group the sub-questions", json_reply({"clusters": [{"ids": ["q1", "q2"]}]}))

    def call_for(body: dict) -> object:
        amount = 120 if "120 EUR" in body["messages"][0]["content"].split("Question:")[1] else 354
        return json_reply({"amount": amount, "rate": 1.0865})

    scripted_llm.on("Write the call of the tool below", call_for)
    scripted_llm.on(
        "One tool now serves several", json_reply({"description": "Convert any amount at a rate."})
    )
    merged = await MergeStage().process(calculators(), ctx(llm, sandbox))
    [only] = merged.arena_tools
    assert only.merged and set(only.calls) == {"q1", "q2"} and only.source == CONVERT_CODE
    assert not any("Extend ONLY" in r["messages"][0]["content"] for r in scripted_llm.chat_requests())
    arena = await ArenaCheckStage(model="scripted", run_id="r1").process(merged, ctx(None, sandbox))
    assert arena.report is not None and arena.report.passed
    assert [s.kind for s in arena.subtasks] == ["compute", "compute"]
