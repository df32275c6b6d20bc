"""The publish step: firewall → data files → card for either pipeline's finished run, recorded once in the
summary; a run of the layout before ``summary.json`` resumes into it or is refused with the way out."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from astra_synth.config import ContaminationConfig, load_config
from astra_synth.export.publish import publish
from astra_synth.runs.manifest import ContaminationSummary, Manifest
from astra_synth.runs.summary import SUMMARY_FILE, SummaryError, read_summary
from astra_synth.testing.scripted import ScriptedLLM
from astra_synth.testing.scripts import answer_trajectories, notes_server, trajectories_config
from astra_synth.trajectories.pipeline import TrajectoriesConfig, run_trajectories
from tests.export.conftest import RunCopy

OFF = ContaminationConfig(enabled=False)


def test_publishing_again_rewrites_the_same_files_and_records_the_result_once(
    trajectories_run: Path, run_copy: RunCopy, tmp_path: Path
) -> None:
    run = run_copy(trajectories_run)
    bench = tmp_path / "bench.json"  # a benchmark that shares nothing with the run
    tool = {"name": "book_flight", "parameters": {"type": "object", "properties": {}}}
    bench.write_text(json.dumps([{"type": "function", "function": tool}]))
    before = read_summary(run)
    rows = (run / "sft" / "sft.jsonl").read_bytes()
    again = publish(run, ContaminationConfig(bfcl=False, benchmarks=[bench], embedder="none"))
    assert (run / "sft" / "sft.jsonl").read_bytes() == rows
    assert again.published == before.published and again.stages == before.stages
    assert again.contamination is not None and again.contamination.benchmarks == ["tools:bench.json"]
    assert read_summary(run) == again  # the summary is the only record of the firewall's result
    for sub in ("synth", "rollout"):
        assert Manifest.model_validate_json((run / sub / "manifest.json").read_bytes()).contamination is None
    assert (
        json.loads((run / "sft" / "contamination.json").read_text())["summary"]
        == again.contamination.model_dump()
    )


def test_the_firewall_off_publishes_everything_and_says_not_checked(
    arenas_run: Path, run_copy: RunCopy
) -> None:
    run = run_copy(arenas_run)
    summary = publish(run, OFF)
    assert summary.contamination is None
    assert summary.published is not None and summary.published.rows == summary.ok
    assert set(summary.published.files.values()) == {"arenas.jsonl", "arenas.parquet"}
    assert "**Not checked**" in (run / "README.md").read_text(encoding="utf-8")


def _old_layout(run: Path) -> None:
    """What a run of the earlier layout held: funnel/dedupe side files, the firewall's summary patched into
    the rollout manifest, no summary.json."""
    summary = read_summary(run)
    (run / SUMMARY_FILE).unlink()
    (run / "funnel.json").write_text(json.dumps({"status": "finished", "llm_calls": summary.llm_calls}))
    (run / "dedupe.json").write_text(json.dumps({"method": "embedding", "kept": [], "dropped": []}))
    path = run / "rollout" / "manifest.json"
    manifest = Manifest.model_validate_json(path.read_bytes())
    manifest.contamination = ContaminationSummary(checked=5)
    path.write_text(manifest.model_dump_json())


def test_an_old_layout_run_is_refused_by_name_then_resumes_into_a_summary(
    trajectories_run: Path, run_copy: RunCopy, tmp_path: Path
) -> None:
    run = run_copy(trajectories_run)
    _old_layout(run)
    with pytest.raises(
        SummaryError, match=r"older astra-synth \(funnel.json, dedupe.json, no summary.json\)"
    ):
        publish(run, OFF)
    with ScriptedLLM() as server:
        server.handler = answer_trajectories
        path = trajectories_config(tmp_path, notes_server())
        config = load_config(TrajectoriesConfig, path, {"endpoint.base_url": server.base_url})
        summary = asyncio.run(run_trajectories(config, run, progress=False))
        assert server.chat_requests() == []  # resumed: every finished item and call reused
    assert summary.status == "finished" and summary.ok == 5 and read_summary(run) == summary
    assert publish(run, OFF).published is not None
