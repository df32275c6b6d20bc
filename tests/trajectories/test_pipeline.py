"""Pipeline A end to end on the scripted endpoint (every prompt answered well), through the CLI, and
resumed at zero cost; then on the embedded model (real llama.cpp) with a tiny config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.config import EndpointConfig, load_config
from astra_synth.export.publish import publish
from astra_synth.firewall.benchmarks import BFCL_LABEL
from astra_synth.runs.summary import read_summary
from astra_synth.testing.scripted import Reply, ScriptedLLM, json_reply, text_reply, tool_call_reply
from astra_synth.tools.registry import write_servers
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.pipeline import TrajectoriesConfig, run_trajectories

CHAIN = ["search_notes", "read_note"]
GOOD_SCORES = {
    "question_quality": "excellent",
    "scenario_realism": "realistic",
    "tool_necessity": "essential",
    "selection_difficulty": "medium",
    "selection_uniqueness": "quite unique",
}


def _ids(body: dict[str, Any], pattern: str) -> list[str]:
    """Call ids / round ids named in the judge prompt, so the scripted judge answers every one."""
    import re

    text = body["messages"][0]["content"]
    if pattern == "calls":
        return list(dict.fromkeys(re.findall(r"call (call_\w+):", text)))
    return re.findall(r"^(r\d+): message", text, re.MULTILINE)


def _answer(body: dict[str, Any]) -> Reply | dict[str, Any]:
    """A competent model: every prompt type of pipeline A, answered in its schema."""
    first = body["messages"][0]["content"]
    last = body["messages"][-1]
    if first.startswith("You are a capable assistant"):  # the rollout agent
        if last["role"] == "user":
            return tool_call_reply(("search_notes", {"query": "Lisbon"}))
        if "read_note" not in json.dumps(body["messages"]):
            return tool_call_reply(("read_note", {"note_id": "n7"}))
        return text_reply("Your Lisbon note says: book the tram tour.")
    if first.startswith("You simulate a real software service"):
        ids = (
            {"ids": ["n7"]} if "search_notes(" in body["messages"][1]["content"].split("call:")[-1] else None
        )
        return {"status": "ok", "result": ids or {"title": "Lisbon", "text": "book the tram tour"}}
    table: list[tuple[str, Any]] = [
        ("Propose up to", {"chains": [{"task": "Open my Lisbon note", "chain": CHAIN}]}),
        (
            "every required argument",
            {
                "parameters": [
                    {"step": 0, "tool": "search_notes", "parameter": "query", "source": "task"},
                    {
                        "step": 1,
                        "tool": "read_note",
                        "parameter": "note_id",
                        "source": "tool_output",
                        "from_step": 0,
                    },
                ]
            },
        ),
        ("You review a workflow", {"is_valid": True, "task": "Open my Lisbon note"}),
        ("Someone called these tools", {"valid": True, "query": "Show me my note about Lisbon."}),
        ("A user asks:", {"plan": "search then read", "chain": CHAIN}),
        (
            "exactly these 2 tools",
            {"server_analysis": "notes", "question": "Show me what my Lisbon note says."},
        ),
        (
            "needs exactly 2 of these tools",
            {"target_tools": CHAIN, "question": "What did I write about Porto?"},
        ),
        (
            "completely different situations",
            {"variations": [{"question": "Show me what my sourdough note says."}]},
        ),
        ("harder versions", {"variations": [{"question": "Before 5pm, show me my Lisbon note."}]}),
        ("as this person would write it", {"variations": [{"question": "hey, what's in my lisbon note"}]}),
        ("You rate a user request", {d: {"rating": v} for d, v in GOOD_SCORES.items()}),
        ("Judge only its FIRST", {"verdict": "pass"}),
        ("Judge its INITIAL PLAN", {"verdict": "pass"}),
        ("must show that it understood", {"rounds": [{"id": i, "verdict": "pass"} for i in _ids(body, "r")]}),
        ("after having seen", {"rounds": [{"id": i, "verdict": "pass"} for i in _ids(body, "r")]}),
        (
            "outcome of each tool call",
            {"calls": [{"id": i, "status": "success"} for i in _ids(body, "calls")]},
        ),
        ("was necessary", {"calls": [{"id": i, "necessary": True} for i in _ids(body, "calls")]}),
        ("You grade the final answer", {"correctness": "pass", "summary": "pass"}),
    ]
    for marker, answer in table:
        if marker in first:
            return json_reply(answer)
    raise AssertionError(f"unscripted prompt: {first[:200]}")


def _config(tmp_path: Path, server: ServerRecord, **overrides: Any) -> Path:
    write_servers(tmp_path / "servers.jsonl", [server])
    personas = Path(__file__).resolve().parents[2] / "examples" / "personas.jsonl"
    data: dict[str, Any] = {
        "servers": "servers.jsonl",
        "concurrency": 4,
        "graph": {"max_walks_per_server": 3, "server_only_tool_counts": [2]},
        "augment": {"personas": str(personas), "variations": 1},
        "emulator": {"failure_rate": 0.0},
        **overrides,
    }
    path = tmp_path / "traj.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_cli_run_then_resume_costs_nothing(
    tmp_path: Path, scripted_endpoint: EndpointConfig, scripted_llm: ScriptedLLM, notes_server: ServerRecord
) -> None:
    scripted_llm.handler = _answer
    config = _config(tmp_path, notes_server)
    args = ["--base-url", scripted_llm.base_url, "--model", "scripted", "trajectories", "run"]
    args += ["--config", str(config), "--run-dir", str(tmp_path / "run")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = read_summary(tmp_path / "run")
    stages = {s.stage: s for s in summary.stages}
    assert stages["graph"].outputs == 2  # the proposed chain (the only walk) + one server-only seed
    # The chain task and its 3 augmentations; the server-only task and its 3.
    assert stages["augment"].outputs == 8
    # The scripted augmentations are the same for both seeds: the second copies are exact duplicates.
    dedupe = summary.filter("dedupe")
    assert dedupe is not None and dedupe.method == "embedding" and len(dedupe.kept) == 5
    assert [d.reason for d in dedupe.dropped] == ["exact"] * 3
    assert stages["dedupe"].reject_reasons == {"duplicate (exact)": 3}
    assert summary.rollout_status == {"completed": 5}
    assert summary.tool_routes == {"emulated": 10}
    assert summary.published is not None and summary.published.rows == 5
    assert stages["judge"].rejected == 0
    rows = (tmp_path / "run" / "sft" / "sft.jsonl").read_text().splitlines()
    assert len(rows) == 5
    first = json.loads(rows[0])
    assert [m["role"] for m in first["messages"]] == [
        "system",
        "user",
        "assistant",
        "tool",
        "assistant",
        "tool",
        "assistant",
    ]
    assert (tmp_path / "run" / "sft" / "sft.parquet").exists()
    assert "SFT rows: 5" in result.output
    contamination = summary.contamination
    assert contamination is not None  # the firewall ran on the publish step, on by default
    assert contamination.checked == 5 and contamination.dropped == 0
    assert contamination.benchmarks == [BFCL_LABEL]
    assert (tmp_path / "run" / "sft" / "README.md").exists()  # the card, beside the parquet
    assert (tmp_path / "run" / "sft" / "contamination_rejects.jsonl").read_text() == ""

    calls = len(scripted_llm.requests)
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert len(scripted_llm.requests) == calls  # resume: recorded items skipped, nothing re-asked
    assert (tmp_path / "run" / "sft" / "sft.jsonl").read_text().splitlines() == rows


async def test_strict_judge_and_scores_filter_everything_out(
    tmp_path: Path, scripted_endpoint: EndpointConfig, scripted_llm: ScriptedLLM, notes_server: ServerRecord
) -> None:
    def grumpy(body: dict[str, Any]) -> Reply | dict[str, Any]:
        if "Judge only its FIRST" in body["messages"][0]["content"]:
            return Reply(content="I refuse to answer in JSON.")
        return _answer(body)

    scripted_llm.handler = grumpy
    config = load_config(
        TrajectoriesConfig,
        _config(tmp_path, notes_server, augment={"modes": []}, graph={"server_only_tool_counts": []}),
        {"endpoint.base_url": scripted_llm.base_url},
    )
    summary = await run_trajectories(config, tmp_path / "run", progress=False)
    stages = {s.stage: s for s in summary.stages}
    assert summary.rollout_status == {"completed": 1}
    assert stages["judge"].reject_reasons == {"judge_error": 1}  # fail closed: no score, no row
    assert summary.ok == 0 and summary.status == "finished"
    assert not (tmp_path / "run" / "sft").exists()  # the pipeline stops at its outputs; publish writes sft/


async def test_rows_offering_a_benchmark_tool_are_dropped_at_export(
    tmp_path: Path, scripted_llm: ScriptedLLM, notes_server: ServerRecord
) -> None:
    """A benchmark file (relative to the config) holding the notes server's ``search_notes``: every row
    offers it, so every row is dropped at publishing, with its reason in the rejects and the summary."""
    scripted_llm.handler = _answer
    (tmp_path / "bench_tools.json").write_text(json.dumps([notes_server.tools[0].openai()]))
    contamination = {"bfcl": False, "benchmarks": ["bench_tools.json"], "embedder": "none"}
    path = _config(
        tmp_path,
        notes_server,
        augment={"modes": []},
        graph={"server_only_tool_counts": []},
        contamination=contamination,
    )
    config = load_config(TrajectoriesConfig, path, {"endpoint.base_url": scripted_llm.base_url})
    produced = await run_trajectories(config, tmp_path / "run", progress=False)
    assert produced.ok == 1 and produced.contamination is None
    published = publish(tmp_path / "run", config.contamination, parquet=config.parquet)
    assert published.published is not None and published.published.rows == 0
    summary = published.contamination
    assert summary is not None and summary.checked == 1 and summary.by_reason == {"tool_signature": 1}
    assert summary.benchmarks == ["tools:bench_tools.json"] and summary.method == "ngram"
    assert read_summary(tmp_path / "run").contamination == summary  # recorded once, in summary.json
    (reject,) = [
        json.loads(line) for line in (tmp_path / "run" / "sft" / "contamination_rejects.jsonl").open()
    ]
    assert reject["reason"] == "tool_signature" and "search_notes" in reject["detail"]
    assert (tmp_path / "run" / "sft" / "sft.jsonl").read_text() == ""


@pytest.mark.slow
@pytest.mark.timeout(900)
async def test_embedded_model_end_to_end(
    tmp_path: Path, embedded_endpoint: EndpointConfig, notes_server: ServerRecord
) -> None:
    """The real 135M model through every stage with a tiny, lenient config: it must complete, not yield.

    It rarely proposes a usable chain and does not emit tool calls, so its yield is usually zero; the point
    is that every stage runs for real and every item ends ok or with a recorded reason."""
    path = _config(
        tmp_path,
        notes_server,
        graph={"max_walks_per_server": 1, "server_only_tool_counts": [2], "max_chains": 2, "max_tokens": 256},
        chains={"vote_samples": 1, "back_translation_rounds": 1, "max_tokens": 256},
        tasks={"samples": 1, "max_tokens": 256},
        augment={"modes": []},
        score={"min_scores": {}, "max_tokens": 384},
        rollout={"agent": {"max_llm_calls": 2, "max_tokens": 128, "episode_timeout_s": 120}},
        emulator={"failure_rate": 0.2, "max_tokens": 128},
        judge={"threshold": 0.0, "reject_zero_dimension": False, "max_tokens": 256},
        budget={"max_calls": 60},
    )
    config = load_config(TrajectoriesConfig, path, {"endpoint": embedded_endpoint.model_dump()})
    summary = await run_trajectories(config, tmp_path / "run", progress=False)
    print(summary.model_dump_json())
    assert summary.status in ("finished", "stopped: budget")
    assert [s.stage for s in summary.stages][:4] == ["graph", "chains", "tasks", "augment"]
    for stage in summary.stages:
        assert stage.ok + stage.rejected + stage.errors == stage.inputs
        assert sum(stage.reject_reasons.values()) == stage.rejected
    assert read_summary(tmp_path / "run").inputs == 1
