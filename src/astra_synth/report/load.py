"""Run directories read into typed views: what the report shows, found by the files each pipeline writes.

A run directory may hold one pipeline or several (the demo nests pipeline B under ``arenas/`` and training
under ``sft/`` and ``rl/``), so the loader looks for each kind's marker files anywhere in the tree instead
of being told what the directory is. Every file is read through its record model; a malformed line fails
with its file and line (:class:`~astra_synth.runs.jsonl.StoreCorrupted`), never with a half-drawn report.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationError

from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.errors import InputError
from astra_synth.evaluation.suite import SUMMARY_FILE as EVAL_SUMMARY
from astra_synth.evaluation.suite import EvalSummary
from astra_synth.evaluation.suite import read_summary as read_eval_summary
from astra_synth.llm.ledger import StageUsage
from astra_synth.runs.jsonl import describe_errors, load_records
from astra_synth.runs.manifest import ContaminationSummary, Manifest, StageCounts
from astra_synth.runs.rundir import LAYOUTS, RunDir, RunDirError, open_run
from astra_synth.runs.store import ErrorRecord, OkRecord, RejectRecord
from astra_synth.runs.summary import SUMMARY_FILE, RunFilter, RunSummary, read_summary, stage_rows
from astra_synth.trajectories.graph import build_graph
from astra_synth.trajectories.judge import JudgedTrajectory, JudgeReport
from astra_synth.trajectories.records import ChainSeed, Trajectory

SKIP_DIRS = frozenset({"runs", "report", "__pycache__"})
"""Folders never searched: TensorBoard event folders (a trainer's ``runs/``), earlier reports."""
SKIP_PREFIXES = ("checkpoint-", ".")
"""Model checkpoints and hidden folders are not searched either."""
MAX_DEPTH = 4


class ReportError(InputError):
    """The run directory cannot be reported on (missing, not a directory, unreadable)."""


class StageView(BaseModel):
    name: str
    counts: StageCounts
    seconds: float
    usage: StageUsage
    reject_reasons: dict[str, int] = Field(description="Rejected items per reason, most frequent first.")
    error_types: dict[str, int] = Field(description="Errored items per exception type.")


class PipelineView(BaseModel):
    """One runner pipeline (one ``manifest.json`` with stages)."""

    path: str = Field(description="Folder relative to the report root.")
    pipeline: str
    status: str
    error: str | None
    stages: list[StageView]
    contamination: ContaminationSummary | None


class TrajectoryView(BaseModel):
    id: str
    trajectory: Trajectory
    judge: JudgeReport | None = None
    judge_reject: RejectRecord | None = None


class ToolGraphView(BaseModel):
    """A server's tool transition graph, rebuilt from the chains its graph stage seeded."""

    server: str
    nodes: list[str]
    edges: list[tuple[str, str, int]]


class TrajectoriesRun(BaseModel):
    path: str
    pipelines: list[PipelineView]
    contamination: ContaminationSummary | None
    trajectories: list[TrajectoryView]
    graphs: list[ToolGraphView]
    dedupe_dropped: dict[str, int] = Field(description="Tasks dropped by deduplication, per reason.")
    llm_calls: int | None = Field(
        default=None, description="Every call of the run (summary.json), the stages' and deduplication's."
    )

    @property
    def accepted(self) -> int:
        return sum(1 for t in self.trajectories if t.judge is not None)


class ArenasRun(BaseModel):
    path: str
    pipelines: list[PipelineView]
    contamination: ContaminationSummary | None
    arenas: list[Arena]
    rejected: list[RejectRecord] = Field(description="Arenas the final check dropped, with the failures.")
    selection: RunFilter | None = None

    @property
    def accepted(self) -> int:
        return len(self.arenas)


class Curve(BaseModel):
    metric: str
    points: list[tuple[float, float]]


class TrainingRun(BaseModel):
    """The per-step metrics of one trainer run (``metrics.jsonl`` written by JsonlMetrics)."""

    path: str
    curves: list[Curve]


class DemoStep(BaseModel):
    name: str
    data: dict[str, Any]


class EvaluationView(BaseModel):
    """An ``astra eval all`` folder's summary."""

    path: str = Field(description="Folder relative to the report root.")
    summary: EvalSummary


class RunData(BaseModel):
    root: Path
    trajectories: list[TrajectoriesRun] = Field(default_factory=list)
    arenas: list[ArenasRun] = Field(default_factory=list)
    pipelines: list[PipelineView] = Field(
        default_factory=list, description="Runner pipelines that belong to neither kind above."
    )
    training: list[TrainingRun] = Field(default_factory=list)
    demo: list[DemoStep] = Field(default_factory=list)
    evaluations: list[EvaluationView] = Field(default_factory=list)

    @property
    def empty(self) -> bool:
        kinds = (self.trajectories, self.arenas, self.pipelines, self.training, self.demo, self.evaluations)
        return not any(kinds)


CURVE_METRICS = (
    "loss",
    "reward",
    "arena/recall",
    "arena/precision",
    "arena/calls",
    "fill/frac_zero_variance",
    "eval_loss",
)
"""Training metrics drawn, in this order: SFT loss, GRPO reward and its parts, the zero-variance fraction."""


class _Trajectory(OkRecord):
    data: Trajectory


class _Judged(OkRecord):
    data: JudgedTrajectory


class _Seed(OkRecord):
    data: ChainSeed


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable JSON file: {exc}") from exc


def _validate(path: Path, model: type[BaseModel], value: Any) -> Any:
    try:
        return model.model_validate(value)
    except ValidationError as exc:
        raise InputError(f"{path}: not a {model.__name__}: {describe_errors(exc)}") from exc


def _rel(root: Path, path: Path) -> str:
    rel = path.relative_to(root).as_posix()
    return "" if rel == "." else rel


def load_pipeline(root: Path, folder: Path, manifest: Manifest | None = None) -> PipelineView:
    """A runner pipeline's manifest with its reject reasons and error types counted from the stage logs."""
    if manifest is None:
        manifest = _validate(folder / "manifest.json", Manifest, _json(folder / "manifest.json"))
    stages = []
    for entry, row in zip(manifest.stages, stage_rows(folder, manifest), strict=True):
        errors = load_records(folder / entry.name / "errors.jsonl", ErrorRecord)
        stages.append(
            StageView(
                name=entry.name,
                counts=entry.counts,
                seconds=entry.seconds,
                usage=entry.usage,
                reject_reasons=row.reject_reasons,
                error_types=dict(Counter({e.id: e.error for e in errors}.values()).most_common()),
            )
        )
    return PipelineView(
        path=_rel(root, folder),
        pipeline=manifest.pipeline,
        status=manifest.status,
        error=manifest.error,
        stages=stages,
        contamination=manifest.contamination,
    )


def _pipelines(root: Path, run: RunDir) -> list[PipelineView]:
    return [load_pipeline(root, run.path / sub, m) for sub, m in run.manifests.items()]


def _summary(run: RunDir) -> RunSummary | None:
    """The run's summary; None while a run that never stopped (or one of the old layout) has none."""
    return read_summary(run.path) if (run.path / SUMMARY_FILE).is_file() else None


def _contamination(run: RunDir, summary: RunSummary | None) -> ContaminationSummary | None:
    """From the summary; a run of the old layout kept it in its last sub-run's manifest."""
    if summary is not None:
        return summary.contamination
    return next((m.contamination for m in reversed(run.manifests.values()) if m.contamination), None)


def load_trajectories(root: Path, found: RunDir) -> TrajectoriesRun:
    """Pipeline A: every rollout with its judge verdict, and the tool graphs behind the chains."""
    run = found.path
    judged = {
        r.parent_id: r.data.judge for r in load_records(run / "rollout" / "judge" / "ok.jsonl", _Judged)
    }
    judge_rejects = {
        r.parent_id: r for r in load_records(run / "rollout" / "judge" / "rejects.jsonl", RejectRecord)
    }
    views = {
        r.id: TrajectoryView(
            id=r.id, trajectory=r.data, judge=judged.get(r.id), judge_reject=judge_rejects.get(r.id)
        )
        for r in load_records(run / "rollout" / "rollout" / "ok.jsonl", _Trajectory)
    }
    chains: dict[str, list[list[str]]] = {}
    tools: dict[str, list[str]] = {}
    for seed in load_records(run / "synth" / "graph" / "ok.jsonl", _Seed):
        server = seed.data.server
        tools.setdefault(server.id, [t.name for t in server.tools])
        chains.setdefault(server.id, [])
        if seed.data.chain:
            chains[server.id].append(seed.data.chain)
    graphs = []
    for server_id, names in tools.items():
        graph = build_graph(names, chains[server_id])
        graphs.append(
            ToolGraphView(
                server=server_id,
                nodes=names,
                edges=[(a, b, int(w)) for a, b, w in graph.edges(data="weight", default=1)],
            )
        )
    summary = _summary(found)
    dedupe = summary.filter("dedupe") if summary else None
    return TrajectoriesRun(
        path=_rel(root, run),
        pipelines=_pipelines(root, found),
        contamination=_contamination(found, summary),
        trajectories=list(views.values()),
        graphs=graphs,
        dedupe_dropped=dict(Counter(d.reason for d in dedupe.dropped)) if dedupe else {},
        llm_calls=summary.llm_calls if summary else None,
    )


def load_arenas(root: Path, found: RunDir) -> ArenasRun:
    """Pipeline B: the arenas with their report cards, and the ones the final check dropped."""
    run = found.path
    arenas = read_arenas(run / "arenas.jsonl") if (run / "arenas.jsonl").is_file() else []
    rejected = load_records(run / "synth" / "arena_check" / "rejects.jsonl", RejectRecord)
    summary = _summary(found)
    return ArenasRun(
        path=_rel(root, run),
        pipelines=_pipelines(root, found),
        contamination=_contamination(found, summary),
        arenas=arenas,
        rejected=rejected,
        selection=summary.filter("selection") if summary else None,
    )


def load_metrics(root: Path, path: Path) -> TrainingRun:
    """The curves of :data:`CURVE_METRICS` present in a trainer's ``metrics.jsonl``."""
    series: dict[str, list[tuple[float, float]]] = {m: [] for m in CURVE_METRICS}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            step = float(record["step"])
        except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
            raise InputError(
                f"{path}:{lineno}: expected a JSON object with a numeric 'step' ({exc})"
            ) from exc
        for metric in CURVE_METRICS:
            value = record.get(metric)
            if isinstance(value, int | float) and not isinstance(value, bool):
                series[metric].append((step, float(value)))
    curves = [Curve(metric=m, points=p) for m, p in series.items() if p]
    return TrainingRun(path=_rel(root, path.parent), curves=curves)


def _folders(root: Path) -> list[Path]:
    """Every folder under ``root`` up to :data:`MAX_DEPTH`, sorted, skipping the ones above."""
    found = []
    for here, dirs, _ in os.walk(root):
        depth = len(Path(here).relative_to(root).parts)
        dirs[:] = sorted(
            d for d in dirs if d not in SKIP_DIRS and not d.startswith(SKIP_PREFIXES) and depth < MAX_DEPTH
        )
        found.append(Path(here))
    return sorted(found)


def _pipeline_name(manifest: Path) -> str | None:
    if not manifest.is_file():
        return None
    name = _json(manifest).get("pipeline")
    return name if isinstance(name, str) else None


def _run_dir(folder: Path) -> RunDir | None:
    """The pipeline run in ``folder``, if its layout is one (a malformed manifest is an error, not a no)."""
    if not any((folder / subruns[0] / "manifest.json").is_file() for subruns, _ in LAYOUTS.values()):
        return None
    try:
        return open_run(folder)
    except RunDirError as exc:
        if "not a pipeline run directory" in str(exc):
            return None
        raise InputError(str(exc)) from exc


def load_run(root: Path) -> RunData:
    """Everything reportable under ``root``; an empty or unrelated folder gives an empty :class:`RunData`."""
    if not root.exists():
        raise ReportError(f"{root}: no such run directory")
    if not root.is_dir():
        raise ReportError(f"{root}: not a directory")
    data = RunData(root=root)
    claimed: set[Path] = set()  # sub-run folders a trajectories/arenas run already shows
    for folder in _folders(root):
        run = _run_dir(folder)
        if run is not None and run.kind == "trajectories":
            data.trajectories.append(load_trajectories(root, run))
        elif run is not None:
            data.arenas.append(load_arenas(root, run))
        elif folder not in claimed and _pipeline_name(folder / "manifest.json") not in (None, "arenas"):
            data.pipelines.append(load_pipeline(root, folder))
        if run is not None:
            claimed.update(folder / sub for sub in LAYOUTS[run.kind][0])
        if (folder / "metrics.jsonl").is_file():
            data.training.append(load_metrics(root, folder / "metrics.jsonl"))
        if (folder / EVAL_SUMMARY).is_file():
            summary = read_eval_summary(folder / EVAL_SUMMARY)
            data.evaluations.append(EvaluationView(path=_rel(root, folder), summary=summary))
        if folder.name == "steps" and folder.parent == root:
            for step in sorted(folder.glob("*.json"), key=lambda p: (p.stat().st_mtime, p.name)):  # run order
                data.demo.append(_validate(step, DemoStep, _json(step)))
    return data
