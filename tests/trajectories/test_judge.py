"""The 7-dimension judge: paper semantics, one status per dimension, fail closed, mean + threshold."""

from __future__ import annotations

import json
from typing import Any

import pytest

from astra_synth.errors import Rejection
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply
from astra_synth.testing.scripts import notes_trajectory
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.judge import (
    DIMENSIONS,
    JudgeConfig,
    JudgeStage,
    language_of,
    later_rounds,
    unseen_urls,
)

from .conftest import ContextFactory

QU, QP = "Judge only its FIRST response", "Judge its INITIAL PLAN"
TCU, TCP = "must show that it understood", "judge the tool calls it makes after having seen"
TCS, TC = "You check the outcome of each tool call", "was necessary"
FA = "You grade the final answer"


def _script(llm: ScriptedLLM, **overrides: Any) -> None:
    replies = {
        QU: json_reply({"reasoning": "ok", "verdict": "pass"}),
        QP: json_reply({"reasoning": "ok", "verdict": "pass"}),
        TCU: json_reply({"rounds": [{"id": "r4", "verdict": "pass"}]}),
        TCP: json_reply({"rounds": [{"id": "r4", "verdict": "pass"}]}),
        TCS: json_reply({"calls": [{"id": "c1", "status": "success"}, {"id": "c2", "status": "success"}]}),
        TC: json_reply({"calls": [{"id": "c1", "necessary": True}, {"id": "c2", "necessary": True}]}),
        FA: json_reply({"reasoning": "solved", "correctness": "pass", "summary": "pass"}),
    }
    names = {"qu": QU, "qp": QP, "tcu": TCU, "tcp": TCP, "tcs": TCS, "tc": TC, "fa": FA}
    for key, reply in overrides.items():
        replies[names[key]] = reply
    for pattern, reply in replies.items():
        llm.on(pattern, *(reply if isinstance(reply, list) else [reply]))


def test_helpers() -> None:
    assert language_of("What does my note say?") == "en"
    assert language_of("我的笔记里写了什么？") == "zh"
    assert language_of("12 + 7") == "none"
    seen = [{"role": "tool", "content": "see https://example.org/a for details"}]
    assert unseen_urls("Done: https://example.org/a. Also https://made.up/x", seen) == ["https://made.up/x"]


async def test_a_good_trajectory_scores_one_on_every_dimension(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    _script(scripted_llm)
    trajectory = notes_trajectory(notes_server)
    assert later_rounds(trajectory.messages) == [4]
    out = await JudgeStage().process(trajectory, make_ctx("judge"))
    assert out.judge.overall == 1.0
    scored = {d: (r.status, r.score) for d, r in out.judge.dimensions.items()}
    assert scored == dict.fromkeys(DIMENSIONS, ("scored", 1.0))
    assert out.messages == trajectory.messages
    assert len(scripted_llm.chat_requests()) == 7


async def test_failed_call_scores_zero_and_partial_single_call_plan_is_zero(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    _script(
        scripted_llm,
        tcs=json_reply({"calls": [{"id": "c1", "status": "success"}, {"id": "c2", "status": "failure"}]}),
        tcp=json_reply({"rounds": [{"id": "r4", "verdict": "partial"}]}),
        fa=json_reply({"correctness": "partial", "summary": "pass"}),
    )
    lenient = JudgeStage(JudgeConfig(threshold=0.0, reject_zero_dimension=False))
    out = await lenient.process(notes_trajectory(notes_server), make_ctx("judge"))
    dims = {d: r.score for d, r in out.judge.dimensions.items()}
    assert dims["tool_call_status"] == 0.5  # paper: 1 of 2 calls succeeded (the authors' code gave 0.75)
    assert dims["tool_context_planning"] == 0.0
    assert dims["final_answer"] == 0.75
    assert out.judge.overall == pytest.approx((1 + 1 + 1 + 0 + 0.5 + 1 + 0.75) / 7, abs=1e-4)
    with pytest.raises(Rejection, match="judge_below_threshold"):
        await JudgeStage().process(notes_trajectory(notes_server), make_ctx("judge"))
    with pytest.raises(Rejection, match="judge_zero_dimension"):
        await JudgeStage(JudgeConfig(threshold=0.5)).process(
            notes_trajectory(notes_server), make_ctx("judge")
        )


@pytest.mark.parametrize(
    "override",
    [
        {"qu": invalid_json_reply()},
        {"tcs": json_reply({"calls": [{"id": "c1", "status": "success"}]})},  # a call left out
        {"tc": json_reply({"calls": [{"id": "c1", "necessary": True}, {"id": "c9", "necessary": True}]})},
        {"tcu": json_reply({"rounds": []})},
        {"fa": json_reply({"correctness": "great", "summary": "pass"})},
    ],
)
async def test_an_unusable_judge_answer_rejects_never_scores(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord, override: dict[str, Any]
) -> None:
    _script(scripted_llm, **override)
    stage = JudgeStage(JudgeConfig(threshold=0.0, reject_zero_dimension=False))
    with pytest.raises(Rejection, match=f"judge_error.*{_dimension(next(iter(override)))}"):
        await stage.process(notes_trajectory(notes_server), make_ctx("judge"))


def _dimension(key: str) -> str:
    return {
        "qu": "query_understanding",
        "tcs": "tool_call_status",
        "tc": "tool_conciseness",
        "tcu": "tool_context_understanding",
        "fa": "final_answer",
    }[key]


async def test_language_mismatch_and_made_up_urls_are_caught_without_the_judge(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    _script(scripted_llm)
    stage = JudgeStage(JudgeConfig(threshold=0.0, reject_zero_dimension=False))
    chinese = await stage.process(
        notes_trajectory(notes_server, "你的笔记写着：预订电车游览。"), make_ctx("judge")
    )
    assert chinese.judge.dimensions["final_answer"].score == 0.5
    assert "language mismatch" in chinese.judge.dimensions["final_answer"].detail
    url = await stage.process(
        notes_trajectory(notes_server, "Booked: https://tram.example/t/1"), make_ctx("judge")
    )
    assert url.judge.dimensions["final_answer"].score == 0.5


async def test_single_round_trajectory_has_not_applicable_context_dimensions(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    _script(
        scripted_llm,
        tcs=json_reply({"calls": [{"id": "c1", "status": "success"}]}),
        tc=json_reply({"calls": [{"id": "c1", "necessary": True}]}),
    )
    full = notes_trajectory(notes_server)
    short = full.model_copy(
        update={"messages": [*full.messages[:4], {"role": "assistant", "content": "It is n7."}]}
    )
    out = await JudgeStage().process(short, make_ctx("judge"))
    statuses = {d: r.status for d, r in out.judge.dimensions.items()}
    assert statuses["tool_context_understanding"] == statuses["tool_context_planning"] == "not_applicable"
    assert out.judge.overall == 1.0
    assert len(scripted_llm.chat_requests()) == 5


async def test_incomplete_rollouts_and_tool_free_answers_are_rejected_unjudged(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    full = notes_trajectory(notes_server)
    with pytest.raises(Rejection, match="rollout_incomplete"):
        await JudgeStage().process(full.model_copy(update={"status": "timeout"}), make_ctx("judge"))
    twice = notes_trajectory(notes_server)
    twice.messages[4]["tool_calls"][0]["id"] = "c1"
    with pytest.raises(Rejection, match="duplicate_call_ids"):
        await JudgeStage().process(twice, make_ctx("judge"))
    chat_only = full.model_copy(
        update={"messages": [*full.messages[:2], {"role": "assistant", "content": "Hi"}]}
    )
    with pytest.raises(Rejection, match="no_tool_calls"):
        await JudgeStage().process(chat_only, make_ctx("judge"))
    assert scripted_llm.chat_requests() == []


async def test_round_and_call_ids_are_pinned_and_a_miscopied_id_is_re_asked(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    miscopied = json_reply({"calls": [{"id": "c1", "status": "success"}, {"id": "c_2", "status": "success"}]})
    right = json_reply({"calls": [{"id": "c1", "status": "success"}, {"id": "c2", "status": "success"}]})
    _script(scripted_llm, tcs=[miscopied, right])
    out = await JudgeStage().process(notes_trajectory(notes_server), make_ctx("judge"))
    assert out.judge.dimensions["tool_call_status"].score == 1.0
    asked = [r for r in scripted_llm.chat_requests() if TCS in r["messages"][0]["content"]]
    assert (
        len(asked) == 2 and "calls.1.id: Input should be 'c1' or 'c2'" in asked[1]["messages"][-1]["content"]
    )
    schemas = {
        marker: json.dumps(r["response_format"])
        for r in scripted_llm.chat_requests()
        for marker in (TCS, TC, TCU)
        if marker in r["messages"][0]["content"]
    }
    assert '"enum": ["c1", "c2"]' in schemas[TCS] and '"enum": ["c1", "c2"]' in schemas[TC]
    assert '"const": "r4"' in schemas[TCU] or '"enum": ["r4"]' in schemas[TCU]
