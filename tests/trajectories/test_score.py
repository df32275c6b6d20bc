"""Task scoring: exact level mapping, per-dimension minima, garbage judge rejects."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from astra_synth.errors import Rejection
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.records import Task
from astra_synth.trajectories.score import ScoreConfig, ScoreStage

from .conftest import ContextFactory

GOOD = {
    "question_quality": "excellent",
    "scenario_realism": "realistic",
    "tool_necessity": "essential",
    "selection_difficulty": "medium",
    "selection_uniqueness": "somewhat unique",
}


def _answer(**levels: str) -> dict[str, Any]:
    return {dim: {"reasoning": "because", "rating": level} for dim, level in {**GOOD, **levels}.items()}


def _task(server: ServerRecord) -> Task:
    return Task(
        server=server,
        mode="chain",
        question="Find my Lisbon note.",
        target_tools=["search_notes"],
        chain_origin="walk",
    )


async def test_scores_map_exactly_and_pass(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on("You rate a user request", json_reply(_answer()))
    out = await ScoreStage().process(_task(notes_server), make_ctx("score"))
    assert out.scores is not None
    assert out.scores.as_dict() == {
        "question_quality": 5,
        "scenario_realism": 4,
        "tool_necessity": 5,
        "selection_difficulty": 3,
        "selection_uniqueness": 2,
    }


async def test_somewhat_unrealistic_is_two_and_fails_the_minimum(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on("You rate a user request", json_reply(_answer(scenario_realism="somewhat unrealistic")))
    with pytest.raises(Rejection, match="task_score_below_minimum: scenario_realism=2"):
        await ScoreStage().process(_task(notes_server), make_ctx("score"))
    lenient = ScoreStage(ScoreConfig(min_scores={"question_quality": 5}))
    out = await lenient.process(_task(notes_server), make_ctx("score"))
    assert out.scores is not None and out.scores.scenario_realism.score == 2


@pytest.mark.parametrize(
    "reply", [invalid_json_reply(), json_reply(_answer(question_quality="superb")), json_reply({"x": 1})]
)
async def test_garbage_judge_rejects(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord, reply: Any
) -> None:
    scripted_llm.on("You rate a user request", reply)
    with pytest.raises(Rejection, match="structured_output_invalid"):
        await ScoreStage().process(_task(notes_server), make_ctx("score"))


def test_minima_must_name_known_dimensions() -> None:
    with pytest.raises(ValidationError, match="unknown dimensions"):
        ScoreConfig(min_scores={"vibes": 3})
