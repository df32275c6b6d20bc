"""Pipeline B end to end against the scripted LLM server and the real sandbox: funnel, files, resume."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from astra_synth.arenas.pipeline import ArenasConfig, run_arenas
from astra_synth.arenas.records import read_arenas
from astra_synth.arenas.seeds import SeedSource
from astra_synth.config import ContaminationConfig, EndpointConfig
from astra_synth.export.publish import publish
from astra_synth.firewall.benchmarks import BFCL_LABEL
from astra_synth.runs.rundir import RunDirError
from astra_synth.runs.summary import read_summary
from astra_synth.testing.scripted import Reply, ScriptedLLM, json_reply

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
    produced = await run_arenas(config(scripted_llm, tmp_path), run_dir, progress=False)
    # two seeds, but the scripted model answers both identically: one distinct instance survives dedupe
    assert produced.inputs == 2 and produced.status == "finished"
    selection = produced.filter("selection")
    assert produced.ok >= 1 and selection is not None and selection.threshold == 1.0
    assert not (run_dir / "arenas.jsonl").exists()  # the pipeline stops at its outputs
    funnel = publish(run_dir, config(scripted_llm, tmp_path).contamination)
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

    again = await run_arenas(config(scripted_llm, tmp_path), tmp_path / "rerun", progress=False)
    publish(tmp_path / "rerun", config(scripted_llm, tmp_path).contamination)
    assert len(scripted_llm.chat_requests()) == calls  # the cache answered everything
    rerun = read_arenas(tmp_path / "rerun" / "arenas.jsonl")
    assert [a.model_dump(exclude={"provenance"}) for a in rerun] == [
        a.model_dump(exclude={"provenance"}) for a in arenas
    ]
    assert rerun[0].provenance.run_id == "rerun"
    assert again.llm_calls == 0


async def test_budget_stops_cleanly(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    script(scripted_llm)
    summary = await run_arenas(
        config(scripted_llm, tmp_path, budget={"max_calls": 1}), tmp_path / "r", progress=False
    )
    assert summary.status == "stopped: budget" and summary.ok == 0
    with pytest.raises(RunDirError, match="not finished"):  # nothing to publish yet
        publish(tmp_path / "r", ContaminationConfig())
    assert len(scripted_llm.chat_requests()) <= 2


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
