"""The contract fixtures (tests/fixtures/contracts/): a careful strong model's answer at every LLM stage,
replayed through the scripted server; each set must yield its arena or judged trajectory with the funnel its
``contract.yaml`` names, stage by stage (docs/testing.md says how to add a set)."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from astra_synth.arenas.pipeline import run_arenas
from astra_synth.arenas.records import read_arenas
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.arenas.seeds import SeedSource
from astra_synth.arenas.verify import Completeness
from astra_synth.config import ContaminationConfig, load_config
from astra_synth.export.publish import publish
from astra_synth.llm.client import LLMCallError, LLMClient
from astra_synth.llm.structured import StructuredOutputRejected, structured_chat
from astra_synth.prompts import load_prompt
from astra_synth.runs.summary import RunSummary
from astra_synth.sandbox import get_executor
from astra_synth.testing.contracts import ContractReplay, FixtureReply, contract_sets, template_pattern
from astra_synth.testing.policy import respelled_golden_calls
from astra_synth.testing.scripted import ScriptedLLM
from astra_synth.testing.scripts import arenas_config, trajectories_config
from astra_synth.tools.registry import load_servers
from astra_synth.trajectories.pipeline import TrajectoriesConfig, run_trajectories

ROOT = Path(__file__).resolve().parents[1] / "fixtures" / "contracts"


def _sets(pipeline: str) -> list[Any]:
    params = []
    for folder in contract_sets(ROOT):
        replay = ContractReplay(folder)
        if replay.meta.pipeline != pipeline:
            continue
        marks = [pytest.mark.xfail(strict=True, reason=replay.meta.xfail)] if replay.meta.xfail else []
        params.append(pytest.param(folder, id=folder.name, marks=marks))
    return params


def _check_funnel(replay: ContractReplay, summary: RunSummary) -> None:
    assert not replay.problems, "\n".join(replay.problems)
    rows = {row.stage: row for row in summary.stages}
    assert sorted(rows) == sorted(replay.meta.funnel), f"{replay.name}: every stage has its expected row"
    for stage, expected in replay.meta.funnel.items():
        got = rows[stage].model_dump(include=set(expected.model_fields_set))
        assert got == expected.model_dump(exclude_unset=True), f"{replay.name}: {rows[stage]}"
    assert summary.ok == replay.meta.ok, summary.model_dump_json(indent=1)
    assert summary.status == "finished"
    assert not replay.unused(), f"fixture replies the run never asked for: {replay.unused()}"


@pytest.mark.parametrize("folder", _sets("arenas"))
async def test_arenas_contract(folder: Path, scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    replay = ContractReplay(folder)
    replay.install(scripted_llm)
    assert replay.meta.seeds is not None
    source = SeedSource(
        mode="questions",
        language=replay.meta.language,
        file=folder / replay.meta.seeds,
        max_hops=replay.meta.max_hops,
    )
    config = arenas_config(
        scripted_llm, tmp_path, [source], contamination={"enabled": False}, **replay.meta.config
    )
    endpoint = scripted_llm.endpoint(**{"schema_mode": "llama_cpp", **replay.meta.endpoint})
    config = config.model_copy(update={"endpoint": endpoint})
    summary = await run_arenas(config, tmp_path / "run", progress=False)
    _check_funnel(replay, summary)
    publish(tmp_path / "run", config.contamination)
    arenas = read_arenas(tmp_path / "run" / "arenas.jsonl")
    for arena in arenas:
        assert arena.report is not None and arena.report.passed
        assert arena.report.replay_rewards == pytest.approx({"result": 1.0, "answer": 1.0})
    assert [[t.function.name for t in a.tools] for a in arenas] == replay.meta.tools
    with get_executor("subprocess") as executor:
        for arena, number in itertools.product(arenas, (int, float)):  # #17 problem 5: 118 and 118.0
            reward = ArenaEnv(arena, executor).replay([respelled_golden_calls(arena, number)])
            assert reward.reward == pytest.approx(1.0), (arena.id, number, reward)


@pytest.mark.parametrize("folder", _sets("trajectories"))
async def test_trajectories_contract(folder: Path, scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    replay = ContractReplay(folder)
    replay.install(scripted_llm)
    assert replay.meta.registry is not None
    [server] = [s for s in load_servers(folder / replay.meta.registry) if s.id == replay.meta.server_id]
    path = trajectories_config(tmp_path, server, **replay.meta.config)
    endpoint = scripted_llm.endpoint(**replay.meta.endpoint).model_dump()
    config = load_config(TrajectoriesConfig, path, {f"endpoint.{k}": v for k, v in endpoint.items()})
    summary = await run_trajectories(config, tmp_path / "run", progress=False)
    _check_funnel(replay, summary)
    assert summary.rollout_status == {"completed": replay.meta.ok}
    published = publish(tmp_path / "run", ContaminationConfig(enabled=False))
    assert published.published is not None and published.published.rows == replay.meta.ok
    rows = [json.loads(line) for line in (tmp_path / "run" / "sft" / "sft.jsonl").read_text().splitlines()]
    called = [
        [c["function"]["name"] for m in row["messages"] for c in m.get("tool_calls") or []] for row in rows
    ]
    assert sorted(called) == sorted(replay.meta.tools)


def test_a_request_is_recognised_by_its_template() -> None:
    prompt = load_prompt("astra_synth.arenas", "tool_call.md")
    rendered = prompt.render(document="{}", question="Q?", context="", feedback="")
    assert template_pattern(prompt).search(rendered)
    assert not template_pattern(load_prompt("astra_synth.arenas", "tool_code.md")).search(rendered)


def _completeness_set(tmp_path: Path, answer: dict[str, Any]) -> ContractReplay:
    (tmp_path / "contract.yaml").write_text(
        yaml.safe_dump({"pipeline": "arenas", "about": "test", "funnel": {}, "ok": 0}), encoding="utf-8"
    )
    replies = {"replies": [{"answer": answer, "reasoning": "All covered.", "fenced": True}]}
    (tmp_path / "verify_completeness.yaml").write_text(yaml.safe_dump(replies), encoding="utf-8")
    return ContractReplay(tmp_path)


def _completeness_prompt() -> list[dict[str, Any]]:
    prompt = load_prompt("astra_synth.arenas", "verify_completeness.md")
    text = prompt.render(main_question="M?", final_answer="F.", sub_questions="q1 | Q? | A")
    return [{"role": "user", "content": text}]


async def test_a_reply_is_sent_in_its_style(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    replay = _completeness_set(tmp_path, {"complete": True})
    replay.install(scripted_llm)
    async with LLMClient(scripted_llm.endpoint(schema_mode="none")) as client:
        answer = await structured_chat(client, _completeness_prompt(), Completeness, stage="verify")
        result = await client.chat(_completeness_prompt(), stage="verify")
    assert answer.complete and not replay.problems and not replay.unused()
    assert result.message["reasoning_content"] == "All covered."
    assert result.message["content"].startswith("```json\n")


async def test_a_reply_that_no_longer_fits_its_schema_is_named(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    replay = _completeness_set(tmp_path, {"is_complete": True})  # the field was renamed since
    replay.install(scripted_llm)
    async with LLMClient(scripted_llm.endpoint(schema_mode="none")) as client:
        with pytest.raises(StructuredOutputRejected):
            await structured_chat(client, _completeness_prompt(), Completeness, stage="verify", max_reasks=1)
    [problem] = replay.problems
    assert problem.startswith(f"{tmp_path.name}/verify_completeness.yaml: the reply was re-asked")
    assert "complete" in problem


async def test_a_prompt_without_a_stage_file_is_named(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    replay = _completeness_set(tmp_path, {"complete": True})
    replay.install(scripted_llm)
    async with LLMClient(scripted_llm.endpoint(max_retries=0)) as client:
        with pytest.raises(LLMCallError):
            await client.chat([{"role": "user", "content": "Write a haiku."}], stage="x")
    assert replay.problems and "no stage file matches" in replay.problems[0]


def test_inline_reasoning_goes_before_the_content() -> None:
    reply = FixtureReply(answer={"a": 1}, reasoning="Think.").reply("inline")
    assert reply.content == '<think>\nThink.\n</think>\n\n{"a": 1}' and reply.reasoning_content is None


def test_a_thinking_reply_under_a_small_budget_is_cut_inside_its_reasoning() -> None:
    fixture = FixtureReply(answer={"a": 1}, reasoning="Think " * 100, thinking_tokens=500)
    cut = fixture.reply(budget=100)
    assert cut.content is None and cut.finish_reason == "length" and cut.reasoning_content
    assert fixture.reply(budget=4096).content == '{"a": 1}'
