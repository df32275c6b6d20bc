"""Pipeline B end to end against the scripted LLM server and the real sandbox: funnel, files, resume."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from astra_synth.arenas.pipeline import ArenasConfig, run_arenas
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.arenas.seeds import SeedSource
from astra_synth.config import ContaminationConfig, EndpointConfig
from astra_synth.export.publish import publish
from astra_synth.firewall.benchmarks import BFCL_LABEL
from astra_synth.runs.rundir import RunDirError
from astra_synth.runs.summary import read_summary
from astra_synth.sandbox import get_executor
from astra_synth.testing.policy import respelled_golden_calls
from astra_synth.testing.scripted import ScriptedLLM
from astra_synth.testing.scripts import PORTO_QA, arenas_config, script_arenas, script_porto


@pytest.mark.slow
async def test_end_to_end_funnel_files_and_free_rerun(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    script_arenas(scripted_llm)
    run_dir = tmp_path / "run"
    produced = await run_arenas(arenas_config(scripted_llm, tmp_path), run_dir, progress=False)
    # two seeds, but the scripted model answers both identically: one distinct instance survives dedupe
    assert produced.inputs == 2 and produced.status == "finished"
    selection = produced.filter("selection")
    assert produced.ok >= 1 and selection is not None and selection.threshold == 1.0
    assert not (run_dir / "arenas.jsonl").exists()  # the pipeline stops at its outputs
    funnel = publish(run_dir, arenas_config(scripted_llm, tmp_path).contamination)
    assert funnel.published is not None
    arenas = read_arenas(run_dir / "arenas.jsonl")
    assert len(arenas) == funnel.published.rows == produced.ok
    arena = arenas[0]
    assert [t.function.name for t in arena.tools] == ["get_hotel_rate"]  # merged into one tool
    assert arena.report is not None and arena.report.passed
    assert arena.provenance.method == "synthesized" and arena.provenance.run_id == "run"
    table = pq.read_table(run_dir / "arenas.parquet")
    assert table.num_rows == len(arenas) and json.loads(table.column("tools")[0].as_py())
    assert read_summary(run_dir) == funnel
    contamination = funnel.contamination  # on by default
    assert contamination is not None and contamination.checked == len(arenas) and contamination.dropped == 0
    assert contamination.benchmarks == [BFCL_LABEL] and contamination.thresholds["embedding_cosine"] == 0.9
    assert (run_dir / "contamination_rejects.jsonl").read_text() == ""
    assert (run_dir / "README.md").exists()  # the card
    calls = len(scripted_llm.chat_requests())
    assert funnel.llm_calls == calls

    again = await run_arenas(arenas_config(scripted_llm, tmp_path), tmp_path / "rerun", progress=False)
    publish(tmp_path / "rerun", arenas_config(scripted_llm, tmp_path).contamination)
    assert len(scripted_llm.chat_requests()) == calls  # the cache answered everything
    rerun = read_arenas(tmp_path / "rerun" / "arenas.jsonl")
    assert [a.model_dump(exclude={"provenance"}) for a in rerun] == [
        a.model_dump(exclude={"provenance"}) for a in arenas
    ]
    assert rerun[0].provenance.run_id == "rerun"
    assert again.llm_calls == 0


async def test_budget_stops_cleanly(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    script_arenas(scripted_llm)
    summary = await run_arenas(
        arenas_config(scripted_llm, tmp_path, budget={"max_calls": 1}), tmp_path / "r", progress=False
    )
    assert summary.status == "stopped: budget" and summary.ok == 0
    with pytest.raises(RunDirError, match="not finished"):  # nothing to publish yet
        publish(tmp_path / "r", ContaminationConfig())
    assert len(scripted_llm.chat_requests()) <= 2


async def test_budget_cap_counts_the_calls_of_earlier_sessions(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    script_arenas(scripted_llm)
    capped = arenas_config(scripted_llm, tmp_path, budget={"max_calls": 2})
    first = await run_arenas(capped, tmp_path / "r", progress=False)
    asked = len(scripted_llm.chat_requests())
    assert first.status == "stopped: budget" and asked <= 2
    resumed = await run_arenas(capped, tmp_path / "r", progress=False)  # as a new process would
    assert resumed.status == "stopped: budget"
    assert len(scripted_llm.chat_requests()) == asked  # the cap already spent is not spent again


@pytest.mark.slow
async def test_run_dir_from_before_the_run_dir_cache_resumes_on_its_shared_cache(
    scripted_llm: ScriptedLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Arena runs used to cache in $ASTRA_CACHE_DIR/llm.sqlite: such a run dir keeps that cache on resume."""
    script_arenas(scripted_llm)
    monkeypatch.setenv("ASTRA_CACHE_DIR", str(tmp_path / "shared"))
    old = arenas_config(scripted_llm, tmp_path).model_copy(
        update={"cache_path": tmp_path / "shared" / "llm.sqlite"}
    )
    run_dir = tmp_path / "run"
    await run_arenas(old, run_dir, progress=False)
    shutil.rmtree(run_dir / "synth")  # work the old session had not recorded yet
    asked = len(scripted_llm.chat_requests())
    resumed = await run_arenas(old.model_copy(update={"cache_path": None}), run_dir, progress=False)
    assert resumed.status == "finished" and resumed.ok >= 1
    assert len(scripted_llm.chat_requests()) == asked and resumed.llm_calls == 0
    assert not (run_dir / "llm_cache.sqlite").exists()


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_embedded_model_run_completes_with_a_consistent_funnel(
    embedded_endpoint: EndpointConfig, tmp_path: Path
) -> None:
    """The real 135M model on one seed source: yield may be zero, but every stage runs and counts add up."""
    cfg = ArenasConfig(
        endpoint=embedded_endpoint,
        cache_path=tmp_path / "cache.sqlite",
        qa={
            "sources": [SeedSource(mode="plain", domain="Travel booking", min_hops=1, max_hops=2)],
            "max_reasks": 1,
            "max_tokens": 600,
        },
        synthesis={"outer_attempts": 1, "inner_attempts": 1, "max_llm_calls": 8},
        selection={"percentile": 0},
    )
    summary = await run_arenas(cfg, tmp_path / "run", progress=False)
    assert summary.status == "finished"
    funnel = publish(tmp_path / "run", cfg.contamination)
    steps = [
        funnel.inputs,
        *(funnel.count(s) for s in ("qa_generate", "tool_necessity", "verify", "selection")),
        *(funnel.count(s) for s in ("tool_synthesis", "merge")),
        funnel.published.rows if funnel.published else 0,
    ]
    assert steps[0] == 2 and all(a >= b for a, b in itertools.pairwise(steps))
    assert funnel.llm_calls >= 2  # at least one generation request per seed reached the model
    qa_manifest = json.loads((tmp_path / "run" / "qa" / "manifest.json").read_text())
    counts = qa_manifest["stages"][0]["counts"]
    assert counts["ok"] + counts["rejected"] + counts["errors"] == counts["inputs"] == 2
    assert (tmp_path / "run" / "arenas.jsonl").exists()


SEEDS = Path(__file__).resolve().parents[2] / "examples" / "seeds" / "questions.en.jsonl"


async def _porto_arena(scripted_llm: ScriptedLLM, tmp_path: Path, qa: dict[str, Any] = PORTO_QA) -> Arena:
    """The Porto seed through pipeline B with careful replies (``qa``: another QA reply): its one published
    arena, which passed its report card."""
    script_porto(scripted_llm, qa)
    source = SeedSource(mode="questions", language="en", file=SEEDS, max_hops=4, limit=1)
    config = arenas_config(scripted_llm, tmp_path, [source], contamination={"enabled": False})
    summary = await run_arenas(config, tmp_path / "run", progress=False)
    assert summary.status == "finished" and summary.ok == 1, summary.model_dump_json(indent=1)
    publish(tmp_path / "run", config.contamination)
    [arena] = read_arenas(tmp_path / "run" / "arenas.jsonl")
    assert arena.report is not None and arena.report.passed
    return arena


async def test_porto_seed_answered_carefully_yields_an_arena(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    """The review's walk-through: prose sub-answers with units survive the dependency check, and the
    golden-call reward credits a policy whatever spelling of an integral number it writes."""
    arena = await _porto_arena(scripted_llm, tmp_path)
    assert arena.report.replay_rewards == pytest.approx({"result": 1.0, "answer": 1.0})
    deps = {c.name: c.ok for c in arena.report.checks if c.name.startswith("dependency_used")}
    assert deps == dict.fromkeys(
        ["dependency_used[q3<-q1]", "dependency_used[q4<-q2]", "dependency_used[q4<-q3]"], True
    )
    golden = {s.id: s.golden_call.arguments for s in arena.subtasks if s.golden_call is not None}
    assert type(golden["q3"]["nightly_rate"]) is int and type(golden["q4"]["amount"]) is float  # as written
    with get_executor("subprocess") as executor:
        env = ArenaEnv(arena, executor)
        for number in (int, float):
            reward = env.replay([respelled_golden_calls(arena, number)])
            assert reward.reward == pytest.approx(1.0), (number, reward)


def _slipped_porto() -> dict[str, Any]:
    """The Porto reply with the QA model's arithmetic slipping: 3 × 118 written as 355, then converted."""
    qa = json.loads(json.dumps(PORTO_QA))
    qa["final_answer"] = qa["final_answer"].replace("354 EUR", "355 EUR").replace("384.62", "385.71")
    q3, q4 = qa["sub_questions"][2:]
    q3["answer"] = "355 EUR"
    q4["question"] = q4["question"].replace("354 EUR", "355 EUR")
    q4["answer"] = "385.71 USD"
    return qa


async def test_porto_with_arithmetic_slips_takes_the_calculators_values(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    """The computed sub-answers come from the tools: the slip is corrected everywhere it was written."""
    arena = await _porto_arena(scripted_llm, tmp_path, _slipped_porto())
    assert arena.report.replay_rewards == pytest.approx({"result": 1.0, "answer": 1.0})
    subs = {s.id: s for s in arena.subtasks}
    assert [subs[i].kind for i in ("q1", "q2", "q3", "q4")] == ["lookup", "lookup", "compute", "compute"]
    assert subs["q3"].answer == "354 EUR" and subs["q4"].answer == "384.62 USD"
    assert subs["q4"].question == "How much is 354 EUR in USD at 1.0865 USD per EUR?"
    assert arena.final_answer == PORTO_QA["final_answer"]  # rewritten back to the right values
    checks = {c.name.split("[")[0] for c in arena.report.checks}
    assert {"answer_literal", "special_case", "perturbed_result"} <= checks


@pytest.mark.parametrize("allowance", [None, 0])
async def test_porto_seed_from_a_thinking_model_yields_its_arena(
    scripted_llm: ScriptedLLM, tmp_path: Path, allowance: int | None
) -> None:
    """Qwen3 thinking on vLLM: 3000 reasoning tokens before every answer, counted against the cap. With the
    default allowance nothing is re-asked; with none, each cut-off answer goes again with twice the cap
    (never "keep it shorter") and the arena still comes out. The reasoning is never parsed."""
    scripted_llm.thinking_tokens = 3000
    script_porto(scripted_llm)
    source = SeedSource(mode="questions", language="en", file=SEEDS, max_hops=4, limit=1)
    config = arenas_config(scripted_llm, tmp_path, [source], contamination={"enabled": False})
    endpoint = config.endpoint.model_copy(update={"thinking": "on", "reasoning_tokens": allowance})
    config = config.model_copy(update={"endpoint": endpoint})
    summary = await run_arenas(config, tmp_path / "run", progress=False)
    assert summary.status == "finished" and summary.ok == 1, summary.model_dump_json(indent=1)
    requests = scripted_llm.chat_requests()
    assert all(r["chat_template_kwargs"] == {"enable_thinking": True} for r in requests)
    assert not any("Keep it shorter" in json.dumps(r["messages"]) for r in requests)
    cut = sum(u.reasoning_cut_calls for u in summary.usage.values())
    if allowance is None:
        assert len(requests) == 23 and cut == 0
    else:
        assert len(requests) == 52 and cut == 52 - 23  # every first answer was crowded out, once


async def test_every_llm_stage_takes_its_token_cap_from_the_config(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    script_porto(scripted_llm)
    source = SeedSource(mode="questions", language="en", file=SEEDS, max_hops=4, limit=1)
    caps = {"qa": 1001, "necessity": 1002, "verify": 1003, "synthesis": 1004, "merge": 1005}
    config = arenas_config(
        scripted_llm,
        tmp_path,
        [source],
        contamination={"enabled": False},
        **{section: {"max_tokens": cap} for section, cap in caps.items() if section != "qa"},
    )
    config = config.model_copy(update={"qa": config.qa.model_copy(update={"max_tokens": caps["qa"]})})
    summary = await run_arenas(config, tmp_path / "run", progress=False)
    assert summary.ok == 1
    prompts = {
        "You write realistic": "qa",
        "You decide, for each sub-question": "necessity",
        "You check": "verify",
        "API tool": "synthesis",
        "Write the call": "synthesis",
        "You group the sub-questions": "merge",
    }
    sent = {}
    for request in scripted_llm.chat_requests():
        first = request["messages"][0]["content"]
        section = next(s for p, s in prompts.items() if p in first)
        sent.setdefault(section, set()).add(request["max_tokens"])
    assert sent == {section: {cap} for section, cap in caps.items()}
