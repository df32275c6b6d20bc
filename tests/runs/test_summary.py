"""The run summary: one typed file, written atomically, read back validated, old layouts named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astra_synth.runs.manifest import Manifest, StageCounts, StageManifest
from astra_synth.runs.store import RejectRecord
from astra_synth.runs.summary import (
    SUMMARY_FILE,
    Dropped,
    RunFilter,
    RunSummary,
    SummaryError,
    funnel_rows,
    read_summary,
    write_summary,
)

DEDUPE = RunFilter(
    name="dedupe",
    method="exact",
    kept=["a", "b"],
    dropped=[Dropped(id="c", reason="exact", of="a", score=1.0), Dropped(id="d", reason="ngram", of="b")],
)
SELECTION = RunFilter(
    name="selection",
    method="percentile",
    kept=["q1"],
    dropped=[Dropped(id="q2", reason="below_threshold", score=0.25)],
    percentile=90,
    min_score=0,
    threshold=0.5,
)


def _manifest(pipeline: str, *stages: tuple[str, int, int]) -> Manifest:
    return Manifest(
        pipeline=pipeline,
        package_version="0",
        seed=0,
        status="finished",
        stages=[
            StageManifest(
                name=n, version="1", counts=StageCounts(inputs=i, ok=ok, rejected=i - ok, outputs=ok)
            )
            for n, i, ok in stages
        ],
    )


def _summary(**update: object) -> RunSummary:
    return RunSummary(
        pipeline="trajectories", status="finished", inputs=1, stages=[], ok=0, llm_calls=0
    ).model_copy(update=update)


def test_filters_become_funnel_rows_with_their_reasons() -> None:
    row = DEDUPE.row("trajectories")
    assert (row.stage, row.inputs, row.ok, row.rejected, row.outputs) == ("dedupe", 4, 2, 2, 2)
    assert row.reject_reasons == {"duplicate (exact)": 1, "duplicate (ngram)": 1}
    row = SELECTION.row("arenas")
    assert (row.inputs, row.ok, row.rejected) == (2, 1, 1)
    assert row.reject_reasons == {"verification score below 0.5": 1}


def test_funnel_rows_put_the_filter_between_the_sub_runs_with_reject_reasons(tmp_path: Path) -> None:
    first, second = tmp_path / "synth", tmp_path / "rollout"
    (first / "tasks").mkdir(parents=True)
    reject = RejectRecord(id="t1", stage="tasks", reason="too_easy", detail="")
    (first / "tasks" / "rejects.jsonl").write_text(reject.model_dump_json() + "\n")
    rows = funnel_rows(
        "trajectories",
        [
            (first, _manifest("trajectories.synth", ("tasks", 3, 2))),
            (second, _manifest("trajectories.rollout", ("judge", 2, 2))),
        ],
        [DEDUPE],
    )
    assert [(r.pipeline, r.stage) for r in rows] == [
        ("trajectories.synth", "tasks"),
        ("trajectories", "dedupe"),
        ("trajectories.rollout", "judge"),
    ]
    assert rows[0].reject_reasons == {"too_easy": 1}
    # a run that stopped in its first sub-run still shows the filter (it ran) after it
    alone = funnel_rows("arenas", [(first, _manifest("arenas.qa", ("verify", 2, 2)))], [SELECTION])
    assert [r.stage for r in alone] == ["verify", "selection"]


def test_written_once_and_read_back_validated(tmp_path: Path) -> None:
    summary = _summary(filters=[DEDUPE], stages=[DEDUPE.row("trajectories")])
    path = write_summary(tmp_path, summary)
    assert path == tmp_path / SUMMARY_FILE and [p.name for p in tmp_path.iterdir()] == [SUMMARY_FILE]
    assert read_summary(tmp_path) == summary
    assert read_summary(tmp_path).filter("dedupe") == DEDUPE and read_summary(tmp_path).count("dedupe") == 2

    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "stages": "many"}))
    with pytest.raises(SummaryError, match="not a run summary"):
        read_summary(tmp_path)
    path.write_text(json.dumps({**data, "schema_version": 99}))
    with pytest.raises(SummaryError, match="schema_version 99"):
        read_summary(tmp_path)


def test_a_missing_summary_names_the_old_layout_and_the_fix(tmp_path: Path) -> None:
    with pytest.raises(SummaryError, match="has not stopped yet"):
        read_summary(tmp_path)
    (tmp_path / "funnel.json").write_text("{}")
    (tmp_path / "dedupe.json").write_text("{}")
    with pytest.raises(SummaryError) as raised:
        read_summary(tmp_path)
    message = str(raised.value)
    assert "older astra-synth (funnel.json, dedupe.json, no summary.json)" in message
    assert "`astra trajectories run` / `astra arenas run`" in message and "resumes" in message
