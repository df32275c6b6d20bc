"""``astra eval all``: one pre-flight check, every chosen benchmark in its sub-folder, one summary beside the
paper's published rows; resumable; a failing benchmark is recorded while the others still run.

Fast tests run arenas + ACEBench on tiny inputs against the scripted server (a silent model: everything
scores 0, which is what these tests need); the slow one runs all four with ``--limit 1``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.evaluation.suite import (
    PUBLISHED,
    PUBLISHED_SOURCE,
    BenchmarkResult,
    EvalSummary,
    paper_table,
    read_summary,
)
from astra_synth.testing.scripted import ScriptedLLM, text_reply

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "arenas.sample.jsonl"
ACEBENCH = Path(__file__).parent / "data" / "acebench"
ACEBENCH_CATEGORIES = ",".join(
    sorted(p.name.removeprefix("data_").removesuffix(".json") for p in ACEBENCH.glob("data_*.json"))
)
DEAD = "http://127.0.0.1:9/v1"


def _all(base_url: str, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["--base-url", base_url, "--model", "m", "eval", "all", "--out", str(out), *args]
    )
    return result.exit_code, result.output


def _small(acebench: Path = ACEBENCH) -> list[str]:
    return [
        "--benchmarks",
        "arenas,acebench",
        "--arenas",
        str(SAMPLE),
        "--acebench-data",
        str(acebench),
        "--acebench-categories",
        ACEBENCH_CATEGORIES,
        "--limit",
        "2",
    ]


def test_arenas_and_acebench_summarised_and_resumed(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.on(".*", text_reply("I cannot help with that."))
    code, output = _all(scripted_llm.base_url, tmp_path, *_small())
    assert code == 0, output
    last = output.strip().splitlines()[-1]
    assert last.startswith("RESULT arenas_success_rate=0.0000 acebench_overall=0.0000 failed=0 errors=0 ")
    assert "ASTRA-32B" in output and "64.25" in output
    summary = read_summary(tmp_path / "eval_summary.json")
    assert [r.benchmark for r in summary.results] == ["arenas", "acebench"]
    assert all(r.status == "ok" and not r.comparable for r in summary.results)
    assert "acebench: * not comparable with the paper: " in output
    arenas, acebench = summary.results
    assert arenas.items == 2 and arenas.settings["limit"] == 2 and arenas.out_dir == "arenas"
    assert acebench.settings["scoring"] == "original"
    assert "the paper's ACEBench column is the agent split" in " ".join(acebench.notes)
    assert (tmp_path / "acebench" / "acebench_report.json").is_file()
    assert summary.published == list(PUBLISHED)
    asked = len(scripted_llm.chat_requests())
    assert asked > 0

    code, again = _all(scripted_llm.base_url, tmp_path, *_small())
    assert code == 0, again
    assert len(scripted_llm.chat_requests()) == asked  # resumed: nothing asked twice
    assert read_summary(tmp_path / "eval_summary.json").results == summary.results


def test_dead_endpoint_fails_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code, output = _all(DEAD, out, *_small())
    assert code == 1, output
    assert f"endpoint {DEAD} is not usable: cannot connect" in output
    assert "RESULT" not in output and not out.exists()


def test_a_missing_input_is_refused_before_the_endpoint_is_asked(tmp_path: Path) -> None:
    code, output = _all(DEAD, tmp_path / "out", "--benchmarks", "arenas")
    assert code == 2, output
    assert "arenas needs an arena file (--arenas)" in output and "not usable" not in output


def test_a_failing_benchmark_is_recorded_and_the_others_still_run(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    scripted_llm.on(".*", text_reply("I cannot help with that."))
    missing = tmp_path / "no-such-acebench"
    code, output = _all(scripted_llm.base_url, tmp_path / "out", *_small(missing))
    assert code == 1, output
    assert "acebench_overall=failed failed=1" in output
    summary = read_summary(tmp_path / "out" / "eval_summary.json")
    arenas, acebench = summary.results
    assert arenas.status == "ok" and arenas.headline == 0.0
    assert acebench.status == "failed" and acebench.headline is None
    assert acebench.reason is not None and str(missing) in acebench.reason
    assert (tmp_path / "out" / "acebench" / "suite_error.txt").is_file()


def test_paper_table_marks_ours_measured_and_theirs_published() -> None:
    ours = BenchmarkResult(benchmark="bfcl", status="ok", headline=12.5, comparable=True, wall_s=1.0)
    summary = EvalSummary(model="mine", endpoint="embedded", results=[ours], wall_s=1.0)
    rows, notes = paper_table(summary)
    assert rows[0].model == "mine" and rows[0].cells == ["12.50", "not run", "not run", "not run"]
    assert [r.model for r in rows[1:]] == [p.model for p in PUBLISHED]
    assert all(r.source == PUBLISHED_SOURCE for r in rows[1:])
    assert rows[-1].cells[:3] == ["64.25", "63.70", "71.88"]  # ASTRA-32B, Table 1
    assert notes[-1].startswith("published rows: published, not re-measured")


@pytest.mark.slow
def test_all_four_benchmarks_with_limit_one(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    """BFCL and τ² through their venvs (built on first use), one item each, a silent model."""
    scripted_llm.on(".*", text_reply("I see."))
    code, output = _all(
        scripted_llm.base_url,
        tmp_path,
        "--arenas",
        str(SAMPLE),
        "--acebench-data",
        str(ACEBENCH),
        "--acebench-categories",
        ACEBENCH_CATEGORIES,
        "--limit",
        "1",
        "--max-tokens",
        "64",
    )
    assert code == 0, output
    summary = json.loads((tmp_path / "eval_summary.json").read_text())
    assert [r["benchmark"] for r in summary["results"]] == ["arenas", "bfcl", "tau2", "acebench"]
    assert all(r["status"] == "ok" and r["headline"] == 0.0 for r in summary["results"])
    assert "bfcl_overall=0.0000 tau2_pass1=0.0000" in output
