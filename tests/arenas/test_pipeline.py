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
from astra_synth.arenas.records import read_arenas
from astra_synth.arenas.seeds import SeedSource
from astra_synth.config import EndpointConfig
from astra_synth.firewall.benchmarks import BFCL_LABEL
from astra_synth.testing.scripted import Reply, ScriptedLLM, json_reply
from astra_synth.runs.manifest import ContaminationSummary

QA = {
    "main_question": "Which hotel is cheaper on 12 May 2026, Hotel Aurora or Casa Azul?",
    "final_answer": "Casa Azul (95 EUR) is cheaper than Hotel Aurora (150 EUR).",
    "sub_questions": [
        {
            "id": 1,
            "question": "What is the nightly rate of Hotel Aurora on 2026-05-12?",
            "answer": "150 EUR",
            "depends_on": [],
            "hop_level": 1,
        },
        {
            "id": 2,
            "question": "What is the nightly rate of Casa Azul on 2026-05-12?",
            "answer": "95 EUR",
            "depends_on": [],
            "hop_level": 1,
        },
        {
            "id": 3,
            "question": "Which of the two rates is lower?",
            "answer": "Casa Azul",
            "depends_on": [1, 2],
            "hop_level": 2,
        },
    ],
}
DOC = {
    "name": "get_hotel_rate",
    "description": "Nightly rate of a hotel on a date, in EUR.",
    "parameters": [
        {"name": "hotel", "type": "string", "description": "Hotel name"},
        {"name": "date", "type": "string", "description": "Date, YYYY-MM-DD"},
    ],
}


def code(table: dict[str, int]) -> str:
    return (
        "def get_hotel_rate(hotel, date):\n"
        f"    rates = {table!r}\n"
        "    if hotel not in rates or date != '2026-05-12':\n"
        "        raise ValueError(f'no rate for {hotel} on {date}')\n"
        "    return {'hotel': hotel, 'rate': f'{rates[hotel]} EUR'}\n"
    )


def verdicts(body: dict[str, Any]) -> Reply:
    ids = body["response_format"]["schema"]["$defs"]["Verdict"]["properties"]["id"]["enum"]
    return json_reply({"verdicts": [{"id": i, "ok": True} for i in ids]})


def call(body: dict[str, Any]) -> Reply:
    question = body["messages"][0]["content"].split("Question:")[1]
    hotel = "Casa Azul" if "Casa Azul" in question else "Hotel Aurora"
    return json_reply({"hotel": hotel, "date": "2026-05-12"})


def script(server: ScriptedLLM) -> None:
    server.on("You write realistic, multi-step user requests", json_reply(QA))
    server.on(
        "You decide, for each sub-question",
        json_reply(
            {
                "decisions": [
                    {"id": "q1", "needs_tool": True},
                    {"id": "q2", "needs_tool": True},
                    {"id": "q3", "needs_tool": False},
                ]
            }
        ),
    )
    for prompt in (
        "You check the dependency links",
        "You check that each sub-question",
        "You check the execution",
    ):
        server.on(prompt, verdicts)
    server.on("You check whether the sub-questions", json_reply({"complete": True}))
    server.on("You design one reusable API tool", json_reply(DOC))
    server.on("You refine an API tool document", json_reply(DOC))
    server.on("Write the call of the tool below", call)
    server.on(
        "Implement the API tool below",
        json_reply({"code": code({"Hotel Aurora": 150, "Casa Azul": 95, "Inn": 60})}),
    )
    server.on(
        "You group the sub-questions", json_reply({"clusters": [{"intent": "rate", "ids": ["q1", "q2"]}]})
    )
    server.on(
        "Extend ONLY its data", json_reply({"code": code({"Hotel Aurora": 150, "Casa Azul": 95, "Inn": 60})})
    )
    server.on(
        "One tool now serves several",
        json_reply({"description": "Nightly rate of a listed hotel on a date."}),
    )


def config(server: ScriptedLLM, tmp_path: Path, **kw: Any) -> ArenasConfig:
    return ArenasConfig(
        endpoint=server.endpoint(schema_mode="llama_cpp"),
        cache_path=tmp_path / "cache.sqlite",
        executor="subprocess",
        qa={"sources": [SeedSource(mode="plain", domain="Travel", min_hops=3, max_hops=3, repeats=2)]},
        selection={"percentile": 0},
        **kw,
    )


@pytest.mark.slow
async def test_end_to_end_funnel_files_and_free_rerun(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    script(scripted_llm)
    run_dir = tmp_path / "run"
    funnel = await run_arenas(config(scripted_llm, tmp_path), run_dir, progress=False)
    # two seeds, but the scripted model answers both identically: one distinct instance survives dedupe
    assert funnel.seeds == 2 and funnel.status == "finished"
    assert funnel.arenas >= 1 and funnel.threshold == 1.0
    arenas = read_arenas(run_dir / "arenas.jsonl")
    assert len(arenas) == funnel.arenas
    arena = arenas[0]
    assert [t.function.name for t in arena.tools] == ["get_hotel_rate"]  # merged into one tool
    assert arena.report is not None and arena.report.passed
    assert arena.provenance.method == "synthesized" and arena.provenance.run_id == "run"
    table = pq.read_table(run_dir / "arenas.parquet")
    assert table.num_rows == len(arenas) and json.loads(table.column("tools")[0].as_py())
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["funnel"]["arenas"] == funnel.arenas
    contamination = ContaminationSummary.model_validate(manifest["contamination"])  # on by default
    assert contamination.checked == funnel.arenas and contamination.dropped == funnel.contaminated == 0
    assert contamination.benchmarks == [BFCL_LABEL] and contamination.thresholds["embedding_cosine"] == 0.9
    assert (run_dir / "contamination_rejects.jsonl").read_text() == ""
    assert json.loads((run_dir / "selection.json").read_text())["threshold"] == 1.0
    calls = len(scripted_llm.chat_requests())
    assert funnel.llm_calls == calls

    again = await run_arenas(config(scripted_llm, tmp_path), tmp_path / "rerun", progress=False)
    assert len(scripted_llm.chat_requests()) == calls  # the cache answered everything
    rerun = read_arenas(tmp_path / "rerun" / "arenas.jsonl")
    assert [a.model_dump(exclude={"provenance"}) for a in rerun] == [
        a.model_dump(exclude={"provenance"}) for a in arenas
    ]
    assert rerun[0].provenance.run_id == "rerun"
    assert again.llm_calls == 0


async def test_budget_stops_cleanly(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    script(scripted_llm)
    funnel = await run_arenas(
        config(scripted_llm, tmp_path, budget={"max_calls": 1}), tmp_path / "r", progress=False
    )
    assert funnel.status == "stopped: budget" and funnel.arenas == 0
    assert len(scripted_llm.chat_requests()) <= 2


async def test_budget_cap_counts_the_calls_of_earlier_sessions(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    script(scripted_llm)
    capped = config(scripted_llm, tmp_path, budget={"max_calls": 2})
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
    script(scripted_llm)
    monkeypatch.setenv("ASTRA_CACHE_DIR", str(tmp_path / "shared"))
    old = config(scripted_llm, tmp_path).model_copy(update={"cache_path": tmp_path / "shared" / "llm.sqlite"})
    run_dir = tmp_path / "run"
    await run_arenas(old, run_dir, progress=False)
    shutil.rmtree(run_dir / "synth")  # work the old session had not recorded yet
    asked = len(scripted_llm.chat_requests())
    resumed = await run_arenas(old.model_copy(update={"cache_path": None}), run_dir, progress=False)
    assert resumed.status == "finished" and resumed.arenas >= 1
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
    funnel = await run_arenas(cfg, tmp_path / "run", progress=False)
    assert funnel.status == "finished"
    steps = [
        funnel.seeds,
        funnel.qa_generated,
        funnel.legitimate,
        funnel.verified,
        funnel.selected,
        funnel.tools_synthesized,
        funnel.merged,
        funnel.arenas,
    ]
    assert steps[0] == 2 and all(a >= b for a, b in itertools.pairwise(steps))
    assert funnel.llm_calls >= 2  # at least one generation request per seed reached the model
    qa_manifest = json.loads((tmp_path / "run" / "qa" / "manifest.json").read_text())
    counts = qa_manifest["stages"][0]["counts"]
    assert counts["ok"] + counts["rejected"] + counts["errors"] == counts["inputs"] == 2
    assert (tmp_path / "run" / "arenas.jsonl").exists()
