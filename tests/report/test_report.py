"""``astra report`` on real run directories: what each page shows, escaping, pagination, bad input."""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astra_synth.arenas.records import read_arenas
from astra_synth.cli import app
from astra_synth.evaluation.suite import PUBLISHED, PUBLISHED_SOURCE, BenchmarkResult, EvalSummary
from astra_synth.evaluation.suite import SUMMARY_FILE as SUITE_SUMMARY
from astra_synth.report import pages
from astra_synth.report.load import load_run
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.runs.summary import read_summary
from tests.report.conftest import HOSTILE, Runs


def _read(folder: Path, name: str = "index.html") -> str:
    return (folder / name).read_text(encoding="utf-8")


def test_pipeline_runs_overview_matches_the_run_files(runs: Runs, reports: dict[str, Path]) -> None:
    index = _read(reports["pipelines"])
    summary = read_summary(runs.pipelines / "traj")
    for (
        stage
    ) in summary.stages:  # every stage of pipeline A's sub-runs is in the funnel table with its counts
        if stage.pipeline == "trajectories":
            continue  # the run-level dedupe: its drops are a table of their own
        row = re.search(rf"<tr><td>{stage.stage}</td><td>{stage.pipeline}</td>(.*?)</tr>", index)
        assert row, stage.stage
        cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
        assert cells[:5] == [
            str(getattr(stage, k)) for k in ("inputs", "ok", "outputs", "rejected", "errors")
        ]
    for stage in ("qa_generate", "tool_necessity", "verify", "tool_synthesis", "merge", "arena_check"):
        assert f"<td>{stage}</td><td>arenas." in index
    # LLM usage: pipeline A's total is every call the run made, and it is divided by the accepted rows
    total = re.search(r"<tr><td>total</td><td class=\"num\">(\d+)</td>", index)
    assert total and int(total.group(1)) == summary.llm_calls
    per_item = re.search(r"<td>per accepted trajectory</td><td class=\"num\">([\d.]+)</td>", index)
    assert per_item and float(per_item.group(1)) == pytest.approx(summary.llm_calls / summary.ok, 0.01)
    # one judge histogram per dimension, each counting every judged trajectory
    for dim in ("query_understanding", "tool_call_status", "final_answer"):
        assert f'<text x="24" y="14">{dim}</text>' in index
    assert index.count(">5</text>") >= 7
    contamination = summary.contamination  # the publish step's firewall
    assert contamination is not None
    assert f"run traj: {contamination.checked} checked, {contamination.dropped} dropped" in index
    assert "dedupe dropped" in index and '<td>emulated</td><td class="num">10</td>' in index
    # the tool graph: the notes server's tools, and the one seeded transition drawn as an arrow
    assert "<title>tool graph of notes</title>" in index
    assert "<title>search_notes → read_note: " in index and "notes: 4 tools, 1 transitions" in index
    assert re.search(r"arenas\.html|arenas-arenas-1\.html", index)
    assert '<span class="badge ok">passed</span>' in index  # the scripted arena's report card
    assert "2 of 2 verified QA instances kept at percentile 0 (minimum score 0, threshold 1.000)" in index


def test_trajectory_viewer_shows_messages_calls_routes_and_scores(reports: dict[str, Path]) -> None:
    viewer = _read(reports["pipelines"], "trajectories-traj-1.html")
    assert viewer.count('<section id="t-') == 5
    assert "Show me what my Lisbon note says." in viewer
    assert "<code>search_notes</code>" in viewer and "&quot;note_id&quot;: &quot;n7&quot;" in viewer
    assert "result of call_0_read_note" in viewer and "book the tram tour" in viewer
    assert viewer.count('<span class="badge warn"') == 5 and "emulated × 2" in viewer
    assert viewer.count("accepted (overall 1.00)") == 5
    assert '<td>tool_conciseness</td><td>scored</td><td>2/2 necessary</td><td class="num">1.00</td>' in viewer


def test_model_text_is_escaped_never_markup(reports: dict[str, Path]) -> None:
    viewer = _read(reports["pipelines"], "trajectories-traj-1.html")
    assert HOSTILE not in viewer and "<script" not in viewer and "<img" not in viewer
    assert "&lt;script&gt;console.error(&quot;injected&quot;)&lt;/script&gt;" in viewer


def test_arena_cards_show_checks_replay_and_probes(runs: Runs, reports: dict[str, Path]) -> None:
    cards = _read(reports["pipelines"], "arenas-arenas-1.html")
    arenas = read_arenas(runs.pipelines / "arenas" / "arenas.jsonl")
    assert cards.count('<section id="arena-') == len(arenas) >= 1
    for arena in arenas:
        assert arena.report is not None and arena.report.checks and arena.report.probe_rewards
        for check in arena.report.checks:  # the whole check battery, one row each
            assert f"<td>{check.name}</td><td>{'ok' if check.ok else 'FAILED'}</td>" in cards
        for probe, reward in arena.report.probe_rewards.items():
            assert f'<td>hacking probe</td><td>{probe}</td><td class="num">{reward:.3f}</td>' in cards
    assert cards.count('<span class="badge ok">replay ok</span>') == len(arenas)


def test_demo_run_shows_arenas_curves_and_the_learning_signal(reports: dict[str, Path]) -> None:
    index = _read(reports["demo"])
    assert "Arenas run: arenas" in index
    assert "Training curves: sft" in index and "Training curves: rl" in index
    for metric in (
        "loss",
        "reward",
        "arena/recall",
        "arena/precision",
        "arena/calls",
        "fill/frac_zero_variance",
    ):
        assert f">{metric}</text>" in index
    assert "<polyline" in index
    assert "<td>eval_rl_rl</td>" in index and "f1=0.4" in index  # step results in the steps table
    assert "Learning signal" in index and "0.400 ± 0.050 (0.20, n=40)" in index  # per family group
    assert "SFT+GRPO − SFT on rl: +0.150 ± 0.098 (paired over 2 arenas, 2 changed)" in index
    assert "<td>finance.convert</td>" in index and '<td class="num">0.200</td>' in index  # per family
    assert not list(reports["demo"].glob("trajectories-*"))


def test_empty_run_says_so(reports: dict[str, Path]) -> None:
    index = _read(reports["empty"])
    assert "Nothing here yet" in index
    assert sorted(p.name for p in reports["empty"].iterdir()) == ["index.html"]


def test_pages_are_split_beyond_the_page_size(
    runs: Runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pages, "TRAJECTORIES_PER_PAGE", 2)
    built = pages.build_pages(load_run(runs.pipelines))
    names = sorted(n for n in built if n.startswith("trajectories-"))
    assert names == ["trajectories-traj-1.html", "trajectories-traj-2.html", "trajectories-traj-3.html"]
    assert [built[n].count('<section id="t-') for n in names] == [2, 2, 1]
    assert '<a href="trajectories-traj-3.html">3</a>' in built[names[0]]


def test_cli_writes_where_asked_and_prints_the_index(runs: Runs, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["report", str(runs.empty), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(tmp_path / "out" / "index.html")
    assert (tmp_path / "out" / "index.html").is_file()


def test_cli_errors_name_the_problem(runs: Runs, tmp_path: Path) -> None:
    missing = CliRunner().invoke(app, ["report", str(tmp_path / "nope")])
    assert missing.exit_code == 2 and "no such run directory" in missing.output
    broken = tmp_path / "broken"
    for src in (runs.pipelines / "traj").rglob("*"):
        if src.is_file() and "report" not in src.parts:
            dest = broken / src.relative_to(runs.pipelines / "traj")
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(src.read_bytes())
    with (broken / "rollout" / "rollout" / "ok.jsonl").open("a") as fh:
        fh.write('{"id": "x"}\n')
    result = CliRunner().invoke(app, ["report", str(broken)])
    assert result.exit_code == 2
    assert "rollout/rollout/ok.jsonl:6" in result.output


def test_an_evaluation_summary_is_drawn_as_the_papers_table(tmp_path: Path) -> None:
    ours = [
        BenchmarkResult(benchmark="bfcl", status="ok", headline=12.5, comparable=True, wall_s=3.0),
        BenchmarkResult(benchmark="acebench", status="failed", reason=f"InputError: {HOSTILE}", wall_s=0.1),
    ]
    summary = EvalSummary(model=HOSTILE, endpoint="http://127.0.0.1:8000/v1", results=ours, wall_s=3.1)
    run = tmp_path / "run"
    (run / "eval").mkdir(parents=True)
    write_json_atomic(run / "eval" / SUITE_SUMMARY, summary.model_dump(mode="json"))
    index = pages.write_report(run, tmp_path / "html").read_text(encoding="utf-8")
    assert "1 evaluation(s)" in index
    escaped = html.escape(HOSTILE, quote=True)
    assert f"<tr><td>{escaped}</td>" in index  # our row, the model name as text
    assert '<td class="num">12.50</td><td class="num">not run</td><td class="num">failed</td>' in index
    assert f"<li>acebench: failed: InputError: {escaped}</li>" in index
    for row in PUBLISHED:  # the paper's rows, each marked as published
        assert re.search(
            rf"<tr><td>{row.model}</td><td class=\"num\">{row.bfcl:.2f}</td>.*?"
            rf"<td class=\"num\">{PUBLISHED_SOURCE}</td></tr>",
            index,
        ), row.model
    assert "<script" not in index
