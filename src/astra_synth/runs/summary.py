"""``summary.json``: the one typed record of a pipeline run, read by the card, the report and the demo.

The pipelines write it when they stop (stage rows, the run-level filter, usage, status); the publish step adds
what it did (contamination result, rows, files) to the same file. Nothing else about a run is re-parsed by
key: the per-stage counts and reject reasons are computed here, once, from the sub-run manifests and logs.
Runs written before this file existed kept ``funnel.json`` / ``dedupe.json`` / ``selection.json`` and a free
``manifest.json`` at the run root instead; :func:`read_summary` names that layout and how to upgrade it.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, ValidationError

from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.llm.ledger import StageUsage
from astra_synth.runs.jsonl import describe_errors, write_json_atomic
from astra_synth.runs.manifest import ContaminationSummary, Manifest, RunStatus
from astra_synth.runs.store import reject_reasons, rejected_spend

SUMMARY_FILE = "summary.json"
SUMMARY_SCHEMA_VERSION = 1
OLD_LAYOUT_FILES = ("funnel.json", "dedupe.json", "selection.json")
"""Side files of the layout before ``summary.json`` (with a free ``manifest.json`` at the arenas run root)."""

PipelineKind = Literal["trajectories", "arenas"]


class SummaryError(InputError):
    """``summary.json`` is missing, from the old layout, or not a valid summary; the message says which."""


class StageRow(BaseModel):
    """One funnel row: a stage of a sub-run, or a run-level filter between the sub-runs."""

    pipeline: str = Field(
        description="The sub-run's pipeline name (``trajectories.synth`` …) or the run kind."
    )
    stage: str
    inputs: int = 0
    ok: int = 0
    rejected: int = 0
    errors: int = 0
    outputs: int = Field(default=0, description="Records produced: fan-out stages produce several per item.")
    reject_reasons: dict[str, int] = Field(default_factory=dict, description="Most frequent first.")
    llm_calls: int = Field(default=0, description="LLM calls the stage made (not cached), every session.")
    rejected_llm_calls: int = Field(
        default=0,
        description="Of those, the calls spent on items the stage rejected: what a check run earlier saves.",
    )
    rejected_tokens: int = Field(default=0, description="The tokens of those calls.")


class Dropped(BaseModel):
    id: str
    reason: str = Field(description="dedupe: exact / embedding / ngram; selection: below_threshold.")
    of: str | None = Field(default=None, description="dedupe: the kept item this one duplicates.")
    score: float | None = Field(
        default=None, description="dedupe: similarity; selection: verification score."
    )


class RunFilter(BaseModel):
    """A run-level filter between the two sub-runs: task dedupe (trajectories) or percentile selection
    (arenas). Both compare every item with every other, so neither is a per-item stage."""

    name: Literal["dedupe", "selection"]
    method: str | None = Field(description="dedupe: exact / embedding / ngram; selection: percentile.")
    kept: list[str]
    dropped: list[Dropped]
    percentile: float | None = None
    min_score: float | None = None
    threshold: float | None = Field(default=None, description="selection: the score cut; None if none.")

    def row(self, pipeline: str) -> StageRow:
        if self.name == "dedupe":
            reasons = Counter(f"duplicate ({d.reason})" for d in self.dropped)
        else:
            reasons = Counter({f"verification score below {self.threshold}": len(self.dropped)})
        kept = len(self.kept)
        return StageRow(
            pipeline=pipeline,
            stage=self.name,
            inputs=kept + len(self.dropped),
            ok=kept,
            rejected=len(self.dropped),
            outputs=kept,
            reject_reasons=dict(reasons.most_common()) if self.dropped else {},
        )


class Published(BaseModel):
    rows: int = Field(description="Rows in the published set, after the contamination firewall.")
    files: dict[str, str] = Field(description="What the publish step wrote, relative to the run folder.")


class RunSummary(StrictModel):
    schema_version: int = SUMMARY_SCHEMA_VERSION
    pipeline: PipelineKind
    status: RunStatus
    inputs: int = Field(description="Tool servers (trajectories) or expanded QA seeds (arenas).")
    input_errors: list[str] = Field(default_factory=list, description="Seed sources that failed to expand.")
    stages: list[StageRow] = Field(description="Every stage of both sub-runs, the run filter between them.")
    filters: list[RunFilter] = Field(default_factory=list)
    ok: int = Field(description="Items the last stage accepted (judged trajectories / checked arenas).")
    rollout_status: dict[str, int] = Field(default_factory=dict, description="trajectories only.")
    tool_routes: dict[str, int] = Field(default_factory=dict, description="trajectories only.")
    llm_calls: int = Field(description="Every call of the run, the run filter's embeddings included.")
    usage: dict[str, StageUsage] = Field(default_factory=dict, description="LLM usage per stage.")
    contamination: ContaminationSummary | None = Field(
        default=None, description="Written by the publish step; None before it ran or with the firewall off."
    )
    published: Published | None = None

    def stage(self, name: str) -> StageRow | None:
        return next((s for s in self.stages if s.stage == name), None)

    def count(self, stage: str) -> int:
        """Items the stage accepted, 0 when the run never reached it."""
        row = self.stage(stage)
        return row.ok if row else 0

    def filter(self, name: str) -> RunFilter | None:
        return next((f for f in self.filters if f.name == name), None)


def stage_rows(sub_run: Path, manifest: Manifest) -> list[StageRow]:
    """The funnel rows of one sub-run: counts and calls from its manifest, reject reasons and what the
    rejected items cost from its stage logs."""
    rows = []
    for s in manifest.stages:
        calls, tokens = rejected_spend(sub_run / s.name)
        rows.append(
            StageRow(
                pipeline=manifest.pipeline,
                stage=s.name,
                inputs=s.counts.inputs,
                ok=s.counts.ok,
                rejected=s.counts.rejected,
                errors=s.counts.errors,
                outputs=s.counts.outputs,
                reject_reasons=reject_reasons(sub_run / s.name),
                llm_calls=s.usage.calls,
                rejected_llm_calls=calls,
                rejected_tokens=tokens,
            )
        )
    return rows


def funnel_rows(
    kind: PipelineKind, sub_runs: list[tuple[Path, Manifest]], filters: list[RunFilter]
) -> list[StageRow]:
    """Every stage in run order: the first sub-run, the run-level filters, then the second sub-run."""
    rows: list[StageRow] = []
    for index, (folder, manifest) in enumerate(sub_runs):
        if index == 1:
            rows += [f.row(kind) for f in filters]
        rows += stage_rows(folder, manifest)
    if len(sub_runs) == 1:  # the run stopped before the second sub-run; the filter may still have run
        rows += [f.row(kind) for f in filters]
    return rows


def write_summary(run_dir: Path, summary: RunSummary) -> Path:
    path = run_dir / SUMMARY_FILE
    write_json_atomic(path, summary.model_dump(mode="json"))
    return path


def read_summary(run_dir: Path) -> RunSummary:
    """The run's summary, validated; a missing one from the old layout says so and how to upgrade."""
    path = run_dir / SUMMARY_FILE
    if not path.is_file():
        old = [name for name in OLD_LAYOUT_FILES if (run_dir / name).is_file()]
        if old:
            raise SummaryError(
                f"{run_dir}: written by an older astra-synth ({', '.join(old)}, no {SUMMARY_FILE}); "
                "run the same `astra trajectories run` / `astra arenas run` command on it again: the run "
                f"resumes at no cost (finished work is reused) and writes {SUMMARY_FILE}"
            )
        raise SummaryError(f"{path}: missing; the run has not stopped yet (resume it to write the summary)")
    try:
        summary = RunSummary.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise SummaryError(f"{path}: not a run summary: {describe_errors(exc)}") from exc
    if summary.schema_version != SUMMARY_SCHEMA_VERSION:
        raise SummaryError(
            f"{path}: schema_version {summary.schema_version}; "
            f"this astra-synth reads {SUMMARY_SCHEMA_VERSION}"
        )
    return summary
