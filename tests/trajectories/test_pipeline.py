"""Pipeline A end to end on the scripted endpoint (every prompt answered well), through the CLI, and
resumed at zero cost; then on the embedded model (real llama.cpp) with a tiny config."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.config import EndpointConfig, load_config
from astra_synth.export.publish import publish
from astra_synth.firewall.benchmarks import BFCL_LABEL
from astra_synth.runs.summary import read_summary
from astra_synth.testing.scripted import Reply, ScriptedLLM
from astra_synth.testing.scripts import answer_trajectories, trajectories_config
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.pipeline import TrajectoriesConfig, run_trajectories


def test_cli_run_then_resume_costs_nothing(
    tmp_path: Path, scripted_endpoint: EndpointConfig, scripted_llm: ScriptedLLM, notes_server: ServerRecord
) -> None:
    scripted_llm.handler = answer_trajectories
    config = trajectories_config(tmp_path, notes_server)
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
        return answer_trajectories(body)

    scripted_llm.handler = grumpy
    config = load_config(
        TrajectoriesConfig,
        trajectories_config(
            tmp_path, notes_server, augment={"modes": []}, graph={"server_only_tool_counts": []}
        ),
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
    scripted_llm.handler = answer_trajectories
    (tmp_path / "bench_tools.json").write_text(json.dumps([notes_server.tools[0].openai()]))
    contamination = {"bfcl": False, "benchmarks": ["bench_tools.json"], "embedder": "none"}
    path = trajectories_config(
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
    path = trajectories_config(
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
