"""Stages 1–3 of arena synthesis against the scripted LLM server: right answers, wrong answers, garbage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from astra_synth.arenas.instance import QAInstance
from astra_synth.arenas.qa_generate import QaGenerateStage
from astra_synth.arenas.seeds import QASeed
from astra_synth.arenas.tool_necessity import ToolNecessityStage
from astra_synth.arenas.verify import VerifyStage, percentile, select_by_percentile
from astra_synth.errors import Rejection
from astra_synth.llm.client import LLMClient
from astra_synth.runs.stage import StageContext
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply

GEN = "You write realistic, multi-step user requests"
NEC = "You decide, for each sub-question"
DEP = "You check the dependency links"
ATOM = "You check that each sub-question"
SEQ = "You check the execution order"
COMP = "You check whether the sub-questions"

GOOD_QA = {
    "main_question": "What will 3 nights at Hotel Aurora in Porto from 12 May 2026 cost in USD?",
    "final_answer": "It costs 486.00 USD.",
    "sub_questions": [
        {
            "id": 1,
            "question": "What is the nightly rate at Hotel Aurora in Porto on 12 May 2026?",
            "answer": "150 EUR",
            "depends_on": [],
            "hop_level": 1,
        },
        {
            "id": 2,
            "question": "What is the EUR to USD rate on 12 May 2026?",
            "answer": "1.08",
            "depends_on": [],
            "hop_level": 1,
        },
        {
            "id": 3,
            "question": "What is 3 nights at 150 EUR in USD at 1.08?",
            "answer": "486.00 USD",
            "depends_on": [1, 2],
            "hop_level": 2,
        },
    ],
}


@pytest.fixture
async def llm(scripted_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    async with LLMClient(scripted_llm.endpoint(schema_mode="llama_cpp")) as client:
        yield client


def ctx(llm: LLMClient, stage: str) -> StageContext:
    return StageContext(stage=stage, item_id="it", seed=0, llm=llm)


def seed(**kw: Any) -> QASeed:
    base: dict[str, Any] = {
        "mode": "plain",
        "language": "en",
        "domain": "Travel",
        "min_hops": 2,
        "max_hops": 4,
    }
    return QASeed(**{**base, **kw})


async def generated(scripted_llm: ScriptedLLM, llm: LLMClient) -> QAInstance:
    scripted_llm.on(GEN, json_reply(GOOD_QA))
    return await QaGenerateStage().process(seed(), ctx(llm, "qa_generate"))


async def test_generate_builds_ids_parents_and_derived_type(
    scripted_llm: ScriptedLLM, llm: LLMClient
) -> None:
    inst = await generated(scripted_llm, llm)
    assert [s.id for s in inst.sub_questions] == ["q1", "q2", "q3"]
    assert inst.sub("q3").parents == ["q1", "q2"]
    assert inst.scenario_type == "parallel-multi-hop"
    assert inst.seed["domain"] == "Travel"
    body = scripted_llm.chat_requests()[0]
    assert body["response_format"]["type"] == "json_object"
    assert "Travel" in body["messages"][0]["content"]


async def test_generate_reasks_an_invalid_graph_with_the_problem(
    scripted_llm: ScriptedLLM, llm: LLMClient
) -> None:
    cyclic = {
        **GOOD_QA,
        "sub_questions": [
            {"id": 1, "question": "What is A here?", "answer": "a", "depends_on": [2], "hop_level": 2},
            {"id": 2, "question": "What is B here?", "answer": "b", "depends_on": [1], "hop_level": 2},
        ],
    }
    scripted_llm.on(GEN, json_reply(cyclic), json_reply(GOOD_QA))
    inst = await QaGenerateStage().process(seed(), ctx(llm, "qa_generate"))
    assert len(inst.sub_questions) == 3
    reask = scripted_llm.chat_requests()[1]["messages"][-1]["content"]
    assert "dependency cycle" in reask


async def test_generate_rejects_garbage_and_bad_hop_budget(scripted_llm: ScriptedLLM, llm: LLMClient) -> None:
    scripted_llm.on(GEN, invalid_json_reply())
    with pytest.raises(Rejection) as exc:
        await QaGenerateStage(max_reasks=1).process(seed(), ctx(llm, "qa_generate"))
    assert exc.value.reason == "structured_output_invalid"
    scripted_llm.reset()
    scripted_llm.on(GEN, json_reply(GOOD_QA))
    with pytest.raises(Rejection) as exc:
        await QaGenerateStage().process(seed(min_hops=4, max_hops=5), ctx(llm, "qa_generate"))
    assert exc.value.reason == "hop_budget"


async def test_chinese_seed_uses_the_chinese_prompt(scripted_llm: ScriptedLLM, llm: LLMClient) -> None:
    scripted_llm.on("你为训练会调用工具的助手", json_reply(GOOD_QA))
    inst = await QaGenerateStage().process(seed(language="zh", domain="出行"), ctx(llm, "qa_generate"))
    assert inst.language == "zh"


def decisions(*pairs: tuple[str, bool]) -> dict[str, Any]:
    return {"decisions": [{"id": i, "needs_tool": t, "reason": "r"} for i, t in pairs]}


async def test_necessity_sets_decisions_by_id(scripted_llm: ScriptedLLM, llm: LLMClient) -> None:
    inst = await generated(scripted_llm, llm)
    # listed out of order on purpose: matching is by id, not position
    scripted_llm.on(NEC, json_reply(decisions(("q3", False), ("q1", True), ("q2", True))))
    out = await ToolNecessityStage().process(inst, ctx(llm, "tool_necessity"))
    assert [s.needs_tool for s in out.sub_questions] == [True, True, False]
    schema = scripted_llm.chat_requests()[-1]["response_format"]["schema"]
    assert schema["properties"]["decisions"]["minItems"] == 3


async def test_necessity_tags_lookups_and_calculations(scripted_llm: ScriptedLLM, llm: LLMClient) -> None:
    inst = await generated(scripted_llm, llm)
    reply = decisions(("q1", True), ("q2", True), ("q3", False))
    reply["decisions"][1]["kind"] = "compute"  # q1 leaves it out: a lookup, as before kinds existed
    scripted_llm.on(NEC, json_reply(reply))
    out = await ToolNecessityStage().process(inst, ctx(llm, "tool_necessity"))
    assert [s.kind for s in out.sub_questions] == ["lookup", "compute", None]  # no tool, no kind
    schema = scripted_llm.chat_requests()[-1]["response_format"]["schema"]
    assert schema["$defs"]["Decision"]["properties"]["kind"]["enum"] == ["lookup", "compute"]


async def test_necessity_enforces_legitimacy(scripted_llm: ScriptedLLM, llm: LLMClient) -> None:
    inst = await generated(scripted_llm, llm)
    scripted_llm.on(NEC, json_reply(decisions(("q1", False), ("q2", True), ("q3", True))))
    with pytest.raises(Rejection) as exc:
        await ToolNecessityStage().process(inst, ctx(llm, "tool_necessity"))
    assert exc.value.reason == "illegitimate" and "'q1'" in exc.value.detail


async def test_necessity_reasks_duplicates_then_fails_closed(
    scripted_llm: ScriptedLLM, llm: LLMClient
) -> None:
    inst = await generated(scripted_llm, llm)
    scripted_llm.on(NEC, json_reply(decisions(("q1", True), ("q1", True), ("q2", True))))
    with pytest.raises(Rejection) as exc:
        await ToolNecessityStage(max_reasks=1).process(inst, ctx(llm, "tool_necessity"))
    assert exc.value.reason == "structured_output_invalid"
    assert "more than once" in scripted_llm.chat_requests()[-1]["messages"][-1]["content"]


def verdicts(ok: dict[str, bool]) -> dict[str, Any]:
    return {"verdicts": [{"id": i, "ok": v, "reason": "why" if not v else ""} for i, v in ok.items()]}


async def test_verify_scores_the_four_dimensions(scripted_llm: ScriptedLLM, llm: LLMClient) -> None:
    inst = await generated(scripted_llm, llm)
    scripted_llm.on(DEP, json_reply(verdicts({"q1": True, "q2": True, "q3": False})))
    scripted_llm.on(ATOM, json_reply(verdicts({"q1": True, "q2": True, "q3": True})))
    scripted_llm.on(SEQ, json_reply(verdicts({"q1": True, "q2": False, "q3": True})))
    scripted_llm.on(COMP, json_reply({"requirements": ["price"], "complete": False, "reason": "no total"}))
    out = await VerifyStage().process(inst, ctx(llm, "verify"))
    v = out.verification
    assert v is not None
    assert v.dependency_consistency == pytest.approx(2 / 3)
    assert v.atomicity == 1.0
    assert v.completeness == 0.0
    assert v.score == pytest.approx((2 / 3 + 1 + 2 / 3 + 0) / 4)
    assert v.notes["dependency_consistency"] == "q3: why"


async def test_verify_fails_closed_on_an_unparseable_judge(scripted_llm: ScriptedLLM, llm: LLMClient) -> None:
    inst = await generated(scripted_llm, llm)
    scripted_llm.on(DEP, json_reply(verdicts({"q1": True, "q2": True, "q3": True})))
    scripted_llm.on(ATOM, invalid_json_reply())
    scripted_llm.on(SEQ, json_reply(verdicts({"q1": True, "q2": True, "q3": True})))
    scripted_llm.on(COMP, json_reply({"complete": True}))
    with pytest.raises(Rejection) as exc:
        await VerifyStage(max_reasks=1).process(inst, ctx(llm, "verify"))
    assert exc.value.reason == "judge_error:atomicity"


def test_percentile_selection_records_the_threshold() -> None:
    scores = {"a": 0.5, "b": 0.75, "c": 1.0, "d": 1.0, "e": 0.25}
    assert percentile(list(scores.values()), 50) == 0.75
    kept, threshold = select_by_percentile(scores, 50)
    assert threshold == 0.75 and kept == {"b", "c", "d"}
    kept, threshold = select_by_percentile(scores, 0, min_score=0.9)
    assert kept == {"c", "d"} and threshold == 0.9
    assert select_by_percentile({}, 90) == (set(), None)
