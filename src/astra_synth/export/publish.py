"""Publish a finished run of either pipeline: contamination firewall → data files (JSONL, parquet) → card.

The pipelines stop at their ok records and ``summary.json``; this step reads the last sub-run's outputs,
drops what copies a benchmark (``contamination.json`` + ``contamination_rejects.jsonl`` next to the data),
writes the published files, records the firewall's result and the published rows in the summary (the one
place they are kept), and writes the ``README.md`` dataset card beside the parquet. Where the files go:

    trajectories: run_dir/sft/  sft.jsonl, provenance.jsonl, sft.parquet, README.md, contamination files
    arenas:       run_dir/      arenas.jsonl, arenas.parquet, README.md, contamination files

Publishing again rewrites the same files from the same outputs, so it is safe to repeat.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astra_synth.arenas.records import Arena, write_arenas
from astra_synth.config import ContaminationConfig
from astra_synth.export.card import DEFAULT_LICENSE, write_card
from astra_synth.firewall.benchmarks import Probe
from astra_synth.firewall.contamination import ContaminationReport, screen
from astra_synth.firewall.probes import arena_probe, chat_probe
from astra_synth.runs.jsonl import load_records
from astra_synth.runs.rundir import LAYOUTS, RunDirError, open_run
from astra_synth.runs.store import OUTPUT_FILE, OkRecord
from astra_synth.runs.summary import Published, RunSummary, read_summary, write_summary
from astra_synth.trajectories.export import export_sft, sft_row
from astra_synth.trajectories.judge import JudgedTrajectory


def publish(
    run_dir: Path,
    contamination: ContaminationConfig,
    *,
    parquet: bool = True,
    license_id: str = DEFAULT_LICENSE,
) -> RunSummary:
    """Publish the finished run in ``run_dir``; returns its summary with the contamination result and rows.

    ``parquet`` matters for trajectories only (arenas always get one); the card describes the parquet, so a
    run published without one gets no card."""
    run = open_run(run_dir)
    summary = read_summary(run_dir)
    if summary.status != "finished":
        raise RunDirError(
            f"{run_dir}: the {run.kind} run is not finished (status: {summary.status}); "
            f"resume it with `astra {run.kind} run` before publishing"
        )
    last = run_dir / LAYOUTS[run.kind][0][-1] / OUTPUT_FILE
    outputs = load_records(last, OkRecord)
    if run.kind == "trajectories":
        report, published = _publish_trajectories(run_dir, outputs, contamination, parquet)
    else:
        report, published = _publish_arenas(run_dir, outputs, contamination)
    summary = summary.model_copy(
        update={"contamination": report.summary if report else None, "published": published}
    )
    write_summary(run_dir, summary)
    if run.parquet.exists():
        write_card(run_dir, license_id=license_id)
    return summary


def _screen(probes: list[Probe], config: ContaminationConfig, out_dir: Path) -> ContaminationReport | None:
    return screen(probes, config, out_dir) if config.enabled else None


def _publish_trajectories(
    run_dir: Path, outputs: list[OkRecord], contamination: ContaminationConfig, parquet: bool
) -> tuple[ContaminationReport | None, Published]:
    out = run_dir / "sft"
    out.mkdir(parents=True, exist_ok=True)
    items = [(r.id, JudgedTrajectory.model_validate(r.data)) for r in outputs]
    rows = [sft_row(i, t) for i, t in items]
    report = _screen([chat_probe(r["id"], r["messages"], r["tools"]) for r in rows], contamination, out)
    if report is not None:
        items = [(i, t) for i, t in items if i not in report.dropped_ids]
    exported = export_sft(items, out, parquet=parquet)
    files = {k: Path(v).relative_to(run_dir).as_posix() for k, v in exported.files.items()}
    return report, Published(rows=exported.rows, files=files)


def _publish_arenas(
    run_dir: Path, outputs: list[OkRecord], contamination: ContaminationConfig
) -> tuple[ContaminationReport | None, Published]:
    arenas = [Arena.model_validate(r.data) for r in outputs]
    report = _screen([arena_probe(a) for a in arenas], contamination, run_dir)
    if report is not None:
        arenas = [a for a in arenas if a.id not in report.dropped_ids]
    write_arenas(run_dir / "arenas.jsonl", arenas)
    write_parquet(run_dir / "arenas.parquet", arenas)
    files = {"arenas": "arenas.jsonl", "parquet": "arenas.parquet"}
    return report, Published(rows=len(arenas), files=files)


def arena_row(arena: Arena) -> dict[str, Any]:
    """A flat row: scalar columns plus JSON strings for nested fields (loads in any parquet reader)."""
    data = arena.model_dump(mode="json")
    return {
        "id": arena.id,
        "language": arena.language,
        "domain": arena.domain,
        "scenario_type": arena.scenario_type,
        "prompt": json.dumps(data["messages"], ensure_ascii=False),
        "tools": json.dumps(data["tools"], ensure_ascii=False),
        "tool_sources": json.dumps(data["tool_sources"], ensure_ascii=False),
        "subtasks": json.dumps(data["subtasks"], ensure_ascii=False),
        "final_answer": arena.final_answer,
        "provenance": json.dumps(data["provenance"], ensure_ascii=False),
        "report": json.dumps(data.get("report"), ensure_ascii=False),
    }


def write_parquet(path: Path, arenas: list[Arena]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = [
        "id",
        "language",
        "domain",
        "scenario_type",
        "prompt",
        "tools",
        "tool_sources",
        "subtasks",
        "final_answer",
        "provenance",
        "report",
    ]
    rows = [arena_row(a) for a in arenas]
    table = pa.Table.from_pydict(
        {c: [r[c] for r in rows] for c in columns}, schema=pa.schema([(c, pa.string()) for c in columns])
    )
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)
