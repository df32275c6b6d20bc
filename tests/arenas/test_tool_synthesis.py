"""Stage 4 (tool synthesis) against the scripted LLM server and the real sandbox."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from astra_synth.arenas.instance import QAInstance, SubQuestion
from astra_synth.arenas.tool_synthesis import (
    ToolDocDraft,
    ToolSynthesisStage,
    backward_problems,
    call_model,
)
from astra_synth.errors import Rejection
from astra_synth.llm.cache import ResponseCache
from astra_synth.llm.client import LLMClient
from astra_synth.runs.stage import StageContext
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.testing.scripted import Reply, ScriptedLLM, json_reply, reasoning_overflow_reply

DOC = "You design one reusable API tool"
SCALE = "You refine an API tool document"
CALL = "Write the call of the tool below"
CODE = "Implement the API tool below"

DOC_JSON = {
    "name": "get_hotel_rate",
    "description": "Nightly rate of a hotel in a city on a date, in EUR.",
    "parameters": [
        {"name": "hotel", "type": "string", "description": "Hotel name", "required": True, "enum": []},
        {"name": "date", "type": "string", "description": "Date, YYYY-MM-DD", "required": True, "enum": []},
    ],
}
SCALED_JSON = {
    **DOC_JSON,
    "parameters": [
        *DOC_JSON["parameters"],
        {
            "name": "currency",
            "type": "string",
            "description": "Currency",
            "required": False,
            "enum": ["EUR", "USD"],
        },
    ],
}
GOOD_CODE = """
def get_hotel_rate(hotel, date, currency=None):
    rates = {("Hotel Aurora", "2026-05-12"): 150, ("Casa Azul", "2026-05-12"): 95}
    if (hotel, date) not in rates:
        raise ValueError(f"no rate for {hotel} on {date}")
    return {"hotel": hotel, "date": date, "rate": f"{rates[(hotel, date)]} EUR"}
"""
IGNORES_INPUT = """
def get_hotel_rate(hotel, date, currency=None):
    if not hotel or not date:
        raise ValueError("missing")
    return {"rate": "150 EUR"}
"""
READS_CLOCK = """
import datetime
def get_hotel_rate(hotel, date, currency=None):
    return {"rate": "150 EUR", "at": str(datetime.datetime.now())}
"""


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ToolExecutor]:
    with get_executor("subprocess") as executor:
        yield executor


@pytest.fixture
async def llm(scripted_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    async with LLMClient(scripted_llm.endpoint(schema_mode="llama_cpp")) as client:
        yield client


def instance() -> QAInstance:
    subs = [
        SubQuestion(
            id="q1",
            question="What is the nightly rate at Hotel Aurora on 2026-05-12?",
            answer="150 EUR",
            hop_level=1,
            needs_tool=True,
        ),
        SubQuestion(
            id="q2",
            question="Is that affordable?",
            answer="yes",
            parents=["q1"],
            hop_level=2,
            needs_tool=False,
        ),
    ]
    return QAInstance(
        language="en",
        domain="Travel",
        scenario_type="multi-hop",
        main_question="Rate and verdict?",
        final_answer="150 EUR, affordable",
        sub_questions=subs,
    )


def ctx(llm: LLMClient, sandbox: ToolExecutor) -> StageContext:
    return StageContext(stage="tool_synthesis", item_id="x", seed=0, llm=llm, sandbox=sandbox)


def script(server: ScriptedLLM, *codes: str, scaled: dict[str, Any] = SCALED_JSON) -> None:
    server.on(DOC, json_reply(DOC_JSON))
    server.on(SCALE, json_reply(scaled))
    server.on(CALL, json_reply({"hotel": "Hotel Aurora", "date": "2026-05-12"}))
    server.on(CODE, *(json_reply({"code": c}) for c in codes))


async def test_accepts_a_tool_that_passes_the_battery(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script(scripted_llm, GOOD_CODE)
    out = await ToolSynthesisStage().process(instance(), ctx(llm, sandbox))
    assert set(out.tools) == {"q1"}  # q2 needs no tool
    tool = out.tools["q1"]
    assert tool.scaled and "currency" in tool.spec.properties
    assert tool.golden_call.arguments == {"hotel": "Hotel Aurora", "date": "2026-05-12"}
    assert all(c.ok for c in tool.checks) and tool.llm_calls == 4 and tool.attempts == 1
    call_schema = next(r for r in scripted_llm.chat_requests() if CALL in r["messages"][0]["content"])
    assert set(call_schema["response_format"]["schema"]["required"]) == {"hotel", "date"}


async def test_battery_findings_go_back_and_the_retry_succeeds(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script(scripted_llm, IGNORES_INPUT, READS_CLOCK, GOOD_CODE)
    out = await ToolSynthesisStage().process(instance(), ctx(llm, sandbox))
    assert out.tools["q1"].attempts == 3
    code_prompts = [
        r["messages"][0]["content"]
        for r in scripted_llm.chat_requests()
        if CODE in r["messages"][0]["content"]
    ]
    assert "input_matters[q1]" in code_prompts[1]  # the answer-ignoring tool was caught by the battery
    assert "reading the clock" in code_prompts[2]  # the clock-reading tool was caught statically


async def test_incompatible_scaling_keeps_the_original(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    renamed = {**SCALED_JSON, "name": "hotel_rate_lookup"}
    script(scripted_llm, GOOD_CODE.replace(", currency=None", ""), scaled=renamed)
    out = await ToolSynthesisStage().process(instance(), ctx(llm, sandbox))
    assert not out.tools["q1"].scaled and out.tools["q1"].spec.name == "get_hotel_rate"


async def test_call_cap_bounds_the_cost(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script(scripted_llm, IGNORES_INPUT)
    with pytest.raises(Rejection) as exc:
        await ToolSynthesisStage(max_llm_calls=7).process(instance(), ctx(llm, sandbox))
    assert exc.value.reason == "tool_synthesis_failed" and "llm_call_cap" in exc.value.detail
    assert len(scripted_llm.chat_requests()) == 7


async def test_exhausted_attempts_reject_with_the_last_reason(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script(scripted_llm, IGNORES_INPUT)
    with pytest.raises(Rejection) as exc:
        await ToolSynthesisStage(outer_attempts=1, inner_attempts=2).process(instance(), ctx(llm, sandbox))
    assert "input_matters" in exc.value.detail and "after 2 attempts" in exc.value.detail


def test_backward_compatibility_rules() -> None:
    old = ToolDocDraft.model_validate(DOC_JSON).spec()
    assert backward_problems(old, ToolDocDraft.model_validate(SCALED_JSON).spec()) == []
    dropped = {**DOC_JSON, "parameters": DOC_JSON["parameters"][:1]}
    assert backward_problems(old, ToolDocDraft.model_validate(dropped).spec()) == [
        "dropped parameter 'date'",
        "made required parameters optional: ['date']",
    ]
    ints = {**MEAN_DOC, "parameters": [{**MEAN_DOC["parameters"][0], "items": "integer"}]}
    mean = ToolDocDraft.model_validate({**MEAN_DOC, "parameters": MEAN_DOC["parameters"][:1]}).spec()
    retyped = ToolDocDraft.model_validate(ints).spec()
    assert backward_problems(mean, retyped) == ["changed the type of 'rates'"]


def test_call_model_follows_the_document() -> None:
    model = call_model(ToolDocDraft.model_validate(SCALED_JSON).spec())
    assert model.model_validate({"hotel": "A", "date": "B"}).model_dump(exclude_none=True) == {
        "hotel": "A",
        "date": "B",
    }
    with pytest.raises(ValueError):
        model.model_validate({"hotel": "A", "date": "B", "currency": "GBP"})
    with pytest.raises(ValueError):
        model.model_validate({"hotel": "A"})


STAY_DOC = {
    "name": "stay_cost",
    "description": "Total cost of a hotel stay from its nightly rate.",
    "parameters": [
        {"name": "nightly_rate", "type": "number", "description": "Rate per night, EUR"},
        {"name": "nights", "type": "integer", "description": "Number of nights"},
    ],
}
STAY_CODE = """
def stay_cost(nightly_rate, nights):
    if nightly_rate <= 0 or nights <= 0:
        raise ValueError("rate and nights must be positive")
    total = round(nightly_rate * nights, 2)
    return {"total": total, "summary": f"{total} EUR"}
"""
PROSE_CODE = GOOD_CODE.replace(
    '{"hotel": hotel, "date": date, "rate": f"{rates[(hotel, date)]} EUR"}',
    '{"offer": f"{hotel}, {rates[(hotel, date)]} EUR per night"}',
)


def dependent_instance() -> QAInstance:
    """q2 builds on q1, whose careful answer is prose with a unit."""
    first = instance().sub_questions[0].model_copy(update={"answer": "Hotel Aurora, 150 EUR per night"})
    second = SubQuestion(
        id="q2",
        question="What do 3 nights at that nightly rate cost?",
        answer="450 EUR",
        parents=["q1"],
        hop_level=2,
        needs_tool=True,
    )
    return instance().model_copy(update={"sub_questions": [first, second]})


def script_dependent(server: ScriptedLLM) -> None:
    def stay(body: dict[str, Any]) -> bool:
        return "nightly rate cost" in body["messages"][0]["content"] or "stay_cost" in str(body)

    def call(body: dict[str, Any]) -> Any:
        if not stay(body):
            return json_reply({"hotel": "Hotel Aurora", "date": "2026-05-12"})
        rejected = "was rejected" in body["messages"][0]["content"]  # the first call drops q1's rate
        return json_reply({"nightly_rate": 150 if rejected else 120, "nights": 3})

    server.on(DOC, lambda b: json_reply(STAY_DOC if stay(b) else DOC_JSON))
    server.on(SCALE, lambda b: json_reply(STAY_DOC if stay(b) else SCALED_JSON))
    server.on(CALL, call)
    server.on(CODE, lambda b: json_reply({"code": STAY_CODE if stay(b) else PROSE_CODE}))


async def test_a_call_that_drops_its_parents_value_is_re_asked_with_feedback(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script_dependent(scripted_llm)
    out = await ToolSynthesisStage().process(dependent_instance(), ctx(llm, sandbox))
    tool = out.tools["q2"]
    assert tool.attempts == 2
    # The rate is read off "Hotel Aurora, 150 EUR per night", and kept as the model wrote it (an int).
    assert tool.golden_call.arguments == {"nightly_rate": 150, "nights": 3}
    assert type(tool.golden_call.arguments["nightly_rate"]) is int
    prompts = [r["messages"][0]["content"] for r in scripted_llm.chat_requests()]
    stay_calls = [p for p in prompts if CALL in p and "nightly rate cost" in p]
    assert len(stay_calls) == 2
    assert "stay_cost(nightly_rate=120, nights=3) passes on no value of the answer of 'q1'" in stay_calls[1]
    assert sum(CODE in p and "stay_cost" in p for p in prompts) == 1  # no code was asked for the bad call


async def test_a_retry_samples_anew_with_feedback_even_with_the_response_cache_on(
    scripted_llm: ScriptedLLM, sandbox: ToolExecutor, tmp_path: Path
) -> None:
    script(scripted_llm, IGNORES_INPUT, GOOD_CODE)
    cache = ResponseCache(tmp_path / "cache.sqlite")
    async with LLMClient(scripted_llm.endpoint(schema_mode="llama_cpp"), cache=cache) as cached:
        stage = ToolSynthesisStage(outer_attempts=2, inner_attempts=1)
        out = await stage.process(instance(), ctx(cached, sandbox))
    assert out.tools["q1"].attempts == 2
    sent = scripted_llm.chat_requests()
    for marker in (DOC, SCALE, CALL, CODE):
        first, retry = [r for r in sent if marker in r["messages"][0]["content"]]  # none replayed
        assert first["temperature"] == 0.0 and retry["temperature"] == 0.7
    documents = [r["messages"][0]["content"] for r in sent if DOC in r["messages"][0]["content"]]
    assert "Your previous attempt was rejected: input_matters[q1]" in documents[1]
    calls = [r["messages"][0]["content"] for r in sent if CALL in r["messages"][0]["content"]]
    assert "Your previous attempt was rejected: input_matters[q1]" in calls[1]


MEAN_DOC = {
    "name": "average_rate",
    "description": "Mean of several nightly rates, optionally filtered.",
    "parameters": [
        {"name": "rates", "type": "array", "items": "number", "description": "Nightly rates, EUR"},
        {"name": "options", "type": "object", "description": "Rounding options", "required": False},
    ],
}
MEAN_CODE = """
def average_rate(rates, options=None):
    if not rates:
        raise ValueError("rates must not be empty")
    digits = int((options or {}).get("digits", 2))
    mean = round(sum(rates) / len(rates), digits)
    return {"mean": mean, "summary": f"{mean} EUR"}
"""


async def test_a_tool_document_can_take_array_and_object_parameters(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    scripted_llm.on(DOC, json_reply(MEAN_DOC))
    scripted_llm.on(SCALE, json_reply(MEAN_DOC))
    scripted_llm.on(CALL, json_reply({"rates": [150, 95, 121], "options": {"digits": 1}}))
    scripted_llm.on(CODE, json_reply({"code": MEAN_CODE}))
    item = instance()
    first = item.sub_questions[0].model_copy(
        update={"question": "What is the mean of the rates 150, 95 and 121 EUR?", "answer": "122.0 EUR"}
    )
    item = item.model_copy(update={"sub_questions": [first, item.sub_questions[1]]})
    out = await ToolSynthesisStage().process(item, ctx(llm, sandbox))
    tool = out.tools["q1"]
    assert tool.spec.properties["rates"] == {
        "type": "array",
        "description": "Nightly rates, EUR",
        "items": {"type": "number"},
    }
    assert tool.spec.properties["options"]["type"] == "object"
    assert tool.golden_call.arguments == {"rates": [150, 95, 121], "options": {"digits": 1}}
    call_schema = next(r for r in scripted_llm.chat_requests() if CALL in r["messages"][0]["content"])
    assert call_schema["response_format"]["schema"]["properties"]["rates"]["type"] == "array"
    model = call_model(tool.spec)
    with pytest.raises(ValueError):
        model.model_validate({"rates": "150, 95"})
    with pytest.raises(ValueError, match="give 'items' for an array"):
        ToolDocDraft.model_validate(
            {**MEAN_DOC, "parameters": [{**MEAN_DOC["parameters"][0], "items": None}]}
        )


# --- calculators: the tool's output defines the answer -------------------------------------------------

CONVERT_DOC = {
    "name": "convert_amount",
    "description": "Convert an amount of money at a given exchange rate.",
    "parameters": [
        {"name": "amount", "type": "number", "description": "Amount to convert"},
        {"name": "rate", "type": "number", "description": "Target units per unit of the amount's currency"},
    ],
}
CONVERT_CODE = """
def convert_amount(amount, rate):
    if amount < 0 or rate <= 0:
        raise ValueError("the amount must be non-negative and the rate positive")
    converted = round(amount * rate, 2)
    return {"amount": converted, "summary": f"{converted:.2f} USD"}
"""
OVERRIDE_CODE = STAY_CODE.replace(
    "    total = round",
    "    if nightly_rate == 118.45 and nights == 3:\n        return {'total': 355.4}\n    total = round",
)


def calculator_chain() -> QAInstance:
    """Two calculations whose answers the QA model got slightly wrong (118.45 × 3 is 355.35, not 355.40)."""
    subs = [
        SubQuestion(
            id="q1",
            question="What do 3 nights at 118.45 EUR per night cost?",
            answer="355.40 EUR",
            hop_level=1,
            needs_tool=True,
            kind="compute",
        ),
        SubQuestion(
            id="q2",
            question="How much is 355.40 EUR in USD at 1.0865 USD per EUR?",
            answer="386.14 USD",
            parents=["q1"],
            hop_level=2,
            needs_tool=True,
            kind="compute",
        ),
    ]
    return QAInstance(
        language="en",
        domain="Travel",
        scenario_type="multi-hop",
        main_question="What do 3 nights at 118.45 EUR cost in USD at 1.0865?",
        final_answer="3 nights cost 355.40 EUR, which is 386.14 USD.",
        sub_questions=subs,
    )


def script_calculators(server: ScriptedLLM, stay_code: str = STAY_CODE) -> None:
    def convert(body: dict[str, Any]) -> bool:
        return "in USD" in body["messages"][0]["content"] or "convert_amount" in str(body)

    def call(body: dict[str, Any]) -> Any:
        if not convert(body):
            return json_reply({"nightly_rate": 118.45, "nights": 3})
        amount = re.search(r"How much is ([\d.]+) EUR", body["messages"][0]["content"])
        assert amount is not None
        return json_reply({"amount": float(amount[1]), "rate": 1.0865})

    server.on(DOC, lambda b: json_reply(CONVERT_DOC if convert(b) else STAY_DOC))
    server.on(SCALE, lambda b: json_reply(CONVERT_DOC if convert(b) else STAY_DOC))
    server.on(CALL, call)
    server.on(CODE, lambda b: json_reply({"code": CONVERT_CODE if convert(b) else stay_code}))


async def test_a_calculators_output_defines_the_answer_and_its_dependants(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script_calculators(scripted_llm)
    out = await ToolSynthesisStage().process(calculator_chain(), ctx(llm, sandbox))
    assert out.sub("q1").answer == "355.35 EUR"  # the tool's result, in the QA model's spelling
    assert out.sub("q2").question == "How much is 355.35 EUR in USD at 1.0865 USD per EUR?"
    # The dependant's call was written from the tool's value, not the QA model's.
    assert out.tools["q2"].golden_call.arguments == {"amount": 355.35, "rate": 1.0865}
    assert out.sub("q2").answer == "386.09 USD"  # 355.35 × 1.0865, not the QA model's 386.14
    assert out.final_answer == "3 nights cost 355.35 EUR, which is 386.09 USD."
    assert out.tools["q1"].attempts == 1 and out.tools["q2"].attempts == 1
    assert out.rewrites[:2] == [
        "q1.answer: '355.40 EUR' → '355.35 EUR'",
        "q2.question: 'How much is 355.40 EUR in USD at 1.0865 USD per EUR?' → "
        "'How much is 355.35 EUR in USD at 1.0865 USD per EUR?'",
    ]
    assert len(out.rewrites) == 5 and all(c.ok for t in out.tools.values() for c in t.checks)
    code_prompts = [
        r["messages"][0]["content"]
        for r in scripted_llm.chat_requests()
        if CODE in r["messages"][0]["content"]
    ]
    assert len(code_prompts) == 2 and all("It is a calculator" in p for p in code_prompts)
    assert not any("355.40" in p or "386.14" in p for p in code_prompts)  # never asked to reproduce them


async def test_a_calculator_that_overrides_its_golden_call_is_sent_back(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script_calculators(scripted_llm, OVERRIDE_CODE)
    with pytest.raises(Rejection) as exc:
        await ToolSynthesisStage(outer_attempts=1, inner_attempts=1).process(
            calculator_chain(), ctx(llm, sandbox)
        )
    assert (
        "special_case[q1]: branches on the golden arguments: nightly_rate == 118.45, nights == 3"
        in exc.value.detail
    )
    assert "answer_literal[q1]" in exc.value.detail
    assert not any("convert_amount" in str(r) for r in scripted_llm.chat_requests())  # q2 never started


REWRITE = "were answered by calculators"


async def test_prose_that_reasons_over_a_corrected_value_is_rewritten(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script_calculators(scripted_llm)
    scripted_llm.on(
        REWRITE,
        json_reply(
            {
                "answers": [{"id": "q2", "answer": "Yes: 355.35 EUR is within 355.38 EUR"}],
                "final_answer": "3 nights cost 355.35 EUR, within the 355.38 EUR budget.",
            }
        ),
    )
    item = calculator_chain()
    verdict = SubQuestion(
        id="q2",
        question="Do 3 nights fit a budget of 355.38 EUR?",
        answer="No: 355.40 EUR is over 355.38 EUR",
        parents=["q1"],
        hop_level=2,
        needs_tool=False,
    )
    item = item.model_copy(
        update={
            "sub_questions": [item.sub_questions[0], verdict],
            "final_answer": "3 nights cost 355.40 EUR, over the 355.38 EUR budget.",
        }
    )
    out = await ToolSynthesisStage().process(item, ctx(llm, sandbox))
    assert out.sub("q1").answer == "355.35 EUR" and set(out.tools) == {"q1"}
    assert out.sub("q2").answer == "Yes: 355.35 EUR is within 355.38 EUR"
    assert out.final_answer == "3 nights cost 355.35 EUR, within the 355.38 EUR budget."
    [asked] = [r["messages"][0]["content"] for r in scripted_llm.chat_requests() if REWRITE in str(r)]
    # The rule already carried the number; the model is shown the corrected answer and the stale verdict.
    assert "q1 | What do 3 nights at 118.45 EUR per night cost? | 355.35 EUR" in asked
    assert "q2 | Do 3 nights fit a budget of 355.38 EUR? | No: 355.35 EUR is over 355.38 EUR" in asked


async def test_no_rewrite_is_asked_when_no_prose_reasons_over_a_changed_value(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    script_calculators(scripted_llm)
    await ToolSynthesisStage().process(calculator_chain(), ctx(llm, sandbox))
    assert not any(REWRITE in str(r) for r in scripted_llm.chat_requests())


async def test_an_answer_no_tool_could_match_is_rejected_before_any_call(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    item = instance()
    item.sub_questions[0] = item.sub_questions[0].model_copy(update={"answer": "150 EUR " * 40})
    with pytest.raises(Rejection) as exc:
        await ToolSynthesisStage().process(item, ctx(llm, sandbox))
    assert exc.value.reason == "answer_unmatchable" and "q1" in exc.value.detail
    assert scripted_llm.chat_requests() == []  # the battery's length check would fail every attempt


async def test_the_first_failed_sub_question_stops_the_others(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    """Before, a doomed instance paid for every sibling's whole synthesis; now the siblings are stopped."""
    item = instance()
    slow = item.sub_questions[0].model_copy(
        update={
            "id": "q3",
            "question": "What is the nightly rate at Casa Azul on 2026-05-12?",
            "answer": "95 EUR",
        }
    )
    item = item.model_copy(update={"sub_questions": [*item.sub_questions, slow]})
    scripted_llm.on(f"{DOC}(?s:.*)Casa Azul", Reply(content=json.dumps(DOC_JSON), delay_s=8.0))
    script(scripted_llm, IGNORES_INPUT)
    with pytest.raises(Rejection) as exc:
        await ToolSynthesisStage(outer_attempts=1, inner_attempts=1).process(item, ctx(llm, sandbox))
    assert exc.value.reason == "tool_synthesis_failed"
    assert "q1: tool_synthesis_failed" in exc.value.detail and "q3: stopped" in exc.value.detail
    asked = [r["messages"][0]["content"] for r in scripted_llm.chat_requests()]
    assert not [a for a in asked if "Casa Azul" in a and DOC not in a]  # q3 never got past its document


async def test_answers_crowded_out_by_reasoning_reject_with_that_reason(
    scripted_llm: ScriptedLLM, llm: LLMClient, sandbox: ToolExecutor
) -> None:
    scripted_llm.on(DOC, reasoning_overflow_reply())
    with pytest.raises(Rejection) as exc:
        await ToolSynthesisStage(outer_attempts=2).process(instance(), ctx(llm, sandbox))
    assert exc.value.reason == "truncated_by_reasoning" and "after 0 attempts" in exc.value.detail
    assert [r["max_tokens"] for r in scripted_llm.chat_requests()] == [2000, 4000, 2000, 4000]
