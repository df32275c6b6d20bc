"""ACEBench's agent categories against a FAKE checkout (``data/acebench_repo``: our own minimal classes in
upstream's module layout), never the real upstream classes: loading, dispatch, end-state and milestone
scoring. A scripted model replaying the milestones scores 100 %, a silent one 0, no checkout → "not run".
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.evaluation.acebench import AceBenchConfig, evaluate_acebench
from astra_synth.evaluation.acebench_agent import (
    AGENT,
    AGENT_RESULTS_FILE,
    AceBenchEnvError,
    AgentEpisode,
    Environment,
    extract_calls,
    load_agent_category,
)
from astra_synth.evaluation.acebench_checker import Call, check_agent_state, milestone_score
from astra_synth.llm.client import LLMClient
from astra_synth.testing.scripted import ScriptedLLM, text_reply

DATA = Path(__file__).parent / "data" / "acebench"
FAKE_REPO = Path(__file__).parent / "data" / "acebench_repo"
ITEMS = {item.question.id: item for c in AGENT for item in load_agent_category(DATA, c)}


def first_route(milestones: list[str] | list[list[str]]) -> list[str]:
    route = milestones[0] if isinstance(milestones[0], list) else milestones
    return [m for m in route if isinstance(m, str)]


def scripted_model(steps: int | None = None) -> Any:
    """The agent replays the item's milestones (the first ``steps`` of them), then says it is done; the
    simulated user asks for the item's goal, then finishes when told it is done."""

    def handler(body: dict[str, Any]) -> Any:
        system, last = body["messages"][0]["content"], body["messages"][-1]["content"]
        if system.startswith("You play a user"):
            return text_reply("finish conversation" if "Done" in last else "Hi, please message Eve for me.")
        item = ITEMS["agent_multi_step_0" if "I am Eve" in last else "agent_multi_turn_0"]
        route = first_route(item.answer.mile_stone)[:steps]
        done = last.count("\nexecution: ")
        if done < len(route):
            return text_reply(route[done])
        return text_reply("finish conversation" if item.category == "agent_multi_step" else "Done.")

    return handler


@pytest.fixture
async def llm(scripted_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    async with LLMClient(scripted_llm.endpoint()) as client:
        yield client


SEND = {"sender_name": "Eve", "receiver_name": "Frank", "message": "hi"}
CONFIG = AceBenchConfig(categories=list(AGENT))


async def test_milestone_replay_scores_100_and_resumes(
    scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path
) -> None:
    scripted_llm.on(".*", scripted_model())
    report = await evaluate_acebench(DATA, tmp_path, llm, CONFIG, acebench_repo=FAKE_REPO)
    assert report.not_run == [] and report.items == 2 and report.errors == 0
    for score in report.categories:
        assert score.group == "agent" and score.items == 1
        assert score.original.accuracy == score.strict.accuracy == 1.0, score
        assert score.original.process_accuracy == 1.0
    assert report.original.agent == report.original.overall == 1.0
    assert report.user_model == "scripted" and report.acebench_repo == str(FAKE_REPO)
    episodes = [
        AgentEpisode.model_validate_json(line)
        for line in (tmp_path / AGENT_RESULTS_FILE).read_text().splitlines()
    ]
    assert {e.ended_by for e in episodes} == {"finish"}
    turn = next(e for e in episodes if e.category == "agent_multi_turn")
    assert [t.role for t in turn.transcript][:3] == ["user", "agent", "execution"]
    assert json.loads(turn.transcript[2].content) == [{"status": True, "message": "logged in"}]
    asked = len(scripted_llm.chat_requests())
    again = await evaluate_acebench(DATA, tmp_path, llm, CONFIG, acebench_repo=FAKE_REPO)
    assert len(scripted_llm.chat_requests()) == asked and again.original.overall == 1.0


async def test_silent_model_scores_zero(scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path) -> None:
    scripted_llm.on(".*", text_reply("I am not sure what you mean."))
    report = await evaluate_acebench(DATA, tmp_path, llm, CONFIG, acebench_repo=FAKE_REPO)
    for score in report.categories:
        assert score.original.accuracy == score.strict.accuracy == 0.0
        assert score.original.process_accuracy == 0.0
    assert report.original.overall == 0.0 and report.errors == 0


async def test_partial_run_earns_process_but_not_end_to_end(
    scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path
) -> None:
    scripted_llm.on(".*", scripted_model(steps=1))
    report = await evaluate_acebench(DATA, tmp_path, llm, CONFIG, acebench_repo=FAKE_REPO)
    for score in report.categories:
        assert score.original.accuracy == 0.0
        assert score.original.process_accuracy == pytest.approx(1 / 3)


async def test_without_checkout_agent_categories_are_not_run(
    scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path
) -> None:
    report = await evaluate_acebench(DATA, tmp_path, llm, CONFIG)
    assert [n.category for n in report.not_run] == list(AGENT)
    assert all("--acebench-repo" in n.reason for n in report.not_run)
    assert report.categories == [] and scripted_llm.chat_requests() == []


async def test_wrong_checkout_fails_before_any_request(
    scripted_llm: ScriptedLLM, llm: LLMClient, tmp_path: Path
) -> None:
    with pytest.raises(AceBenchEnvError, match="scenariosen: no such folder"):
        await evaluate_acebench(DATA, tmp_path / "out", llm, CONFIG, acebench_repo=tmp_path)
    assert scripted_llm.chat_requests() == []


async def test_environment_dispatches_to_every_instance_and_saves_state() -> None:
    async with Environment(FAKE_REPO, "multi_step") as env:
        await env.start(["BaseApi", "MessageApi"], {"BaseApi": {"wifi": False, "logged_in": True}})
        calls = [
            Call(name="turn_on_wifi", arguments={}),
            Call(name="send_message", arguments=SEND),
            Call(name="_load_scenario", arguments={}),
            Call(name="delete_message", arguments={"message_id": 1}),
        ]
        results = await env.execute(calls, stop_on_error=False)
        assert results[1] == {"status": False, "message": "inbox full, delete a message first"}
        assert "not a public function" in results[2]["error"] and results[3] == {"status": True}
        state = await env.state()
    # turn_on_wifi ran on both instances; the inbox keys are JSON strings, as upstream saves them.
    assert state[0] == {"BaseApi": {"wifi": True, "logged_in": True}}
    assert list(state[1]["MessageApi"]["inbox"]) == ["2"]
    async with Environment(FAKE_REPO, "multi_turn") as env:
        await env.start(["MessageApi"], {})
        results = await env.execute(
            [Call(name="nope", arguments={}), Call(name="login_device", arguments={})], stop_on_error=True
        )
        assert len(results) == 1 and "no such function" in results[0]["error"]
    with pytest.raises(AceBenchEnvError, match="unknown ACEBench class"):
        async with Environment(FAKE_REPO, "multi_turn") as env:
            await env.start(["Nope"], {})


def test_class_name_typo_is_unchecked_under_original_only() -> None:
    truth = [{"BaseAPI": {"wifi": True}}, {"MessageApi": {"inbox": {"1": "a"}}}]
    state = [{"BaseApi": {"wifi": False}}, {"MessageApi": {"inbox": {"1": "a", "2": "extra"}}}]
    assert check_agent_state(state, truth, "original").ok  # the misspelt class is never looked at
    assert not check_agent_state(state, truth, "strict").ok
    assert check_agent_state([{"BaseApi": {"wifi": True}}, state[1]], truth, "strict").ok
    assert not check_agent_state(state[:1], truth, "original").ok  # class count differs
    assert not check_agent_state([{"BaseApi": {"wifi": 1}}], [{"BaseApi": {"wifi": True}}], "strict").ok


def test_milestones_match_in_order_and_best_alternative_counts() -> None:
    assert milestone_score(["[a()]", " [c()] ", "[b()]"], ["[a()]", "[b()]", "[c()]"]) == pytest.approx(2 / 3)
    assert milestone_score(["[b()]", "[a()]"], [["[a()]", "[b()]"], ["[b()]", "[a()]"]]) == 1.0
    assert milestone_score([], ["[a()]"]) == 0.0


def test_calls_are_parsed_from_the_message_never_evaluated() -> None:
    assert extract_calls("Sure: [login_device()] now") == [Call(name="login_device", arguments={})]
    assert extract_calls("[__import__('os').system('true')]") is None
    assert extract_calls("Which message should I delete?") is None and extract_calls("[]") is None


def test_cli_runs_agent_categories_with_a_checkout(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.on(".*", scripted_model())
    args = ["--base-url", scripted_llm.base_url, "--model", "scripted", "eval", "acebench"]
    args += ["--data", str(DATA), "--out", str(tmp_path), "--categories", ",".join(AGENT)]
    args += ["--acebench-repo", str(FAKE_REPO)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    last = done.stdout.strip().splitlines()[-1]
    assert "acebench_agent_multi_turn=1.0000" in last and "acebench_agent_multi_step=1.0000" in last
