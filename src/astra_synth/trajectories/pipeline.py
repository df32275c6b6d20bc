"""Pipeline A end to end: tool servers → chains → tasks → rollouts → judged SFT set.

Two resumable runner pipelines share one run directory, with task deduplication between them (it compares
every task with every other, so it cannot be a per-item stage)::

    run_dir/synth/      graph → chains → tasks → augment          (manifest.json, ok/rejects per stage)
    run_dir/dedupe.json                                            (method, kept ids, dropped with reason)
    run_dir/rollout/    score → rollout → judge                   (rollout/ok.jsonl: every trajectory)
    run_dir/sft/        contamination.json, contamination_rejects.jsonl (benchmark firewall)
    run_dir/sft/        sft.jsonl, sft.parquet, provenance.jsonl, README.md (dataset card)
    run_dir/funnel.json                                            (counts and reject reasons per stage)

A resume recomputes nothing finished: the runner skips recorded ids, dedupe is deterministic in input
order, and the LLM cache (``llm_cache.sqlite`` in the run directory unless configured) answers the rest.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from astra_synth.config import BudgetConfig, EndpointConfig, StrictModel
from astra_synth.export.card import write_card
from astra_synth.firewall.contamination import ContaminationConfig, record_contamination
from astra_synth.runs.jsonl import load_records, write_json_atomic
from astra_synth.runs.pipeline import Pipeline, RunOptions, RunResult
from astra_synth.runs.session import CACHE_PATH_HELP, RunSession
from astra_synth.runs.store import OkRecord, reject_reasons
from astra_synth.tools.cassette import Cassette, CassetteMode
from astra_synth.tools.emulator import EmulatorConfig, ToolEmulator
from astra_synth.tools.registry import load_servers
from astra_synth.tools.router import ToolRouter
from astra_synth.trajectories.augment import AugmentConfig, AugmentStage
from astra_synth.trajectories.chains import ChainsConfig, ChainsStage
from astra_synth.trajectories.dedupe import DedupeConfig, dedupe_tasks
from astra_synth.trajectories.export import ExportSummary, export_sft
from astra_synth.trajectories.graph import GraphConfig, GraphStage
from astra_synth.trajectories.judge import JudgeConfig, JudgedTrajectory, JudgeStage
from astra_synth.trajectories.records import Task
from astra_synth.trajectories.rollout import RolloutConfig, RolloutStage
from astra_synth.trajectories.score import ScoreConfig, ScoreStage
from astra_synth.trajectories.tasks import TaskGenConfig, TasksStage


class TrajectoriesConfig(StrictModel):
    """``examples/trajectories.yaml`` maps onto this. Relative paths resolve against the config's folder."""

    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    cache_path: Path | None = Field(default=None, description=CACHE_PATH_HELP)
    seed: int = 0
    concurrency: int = Field(default=8, ge=1, description="Items in flight per stage.")
    servers: Path = Field(description="Tool registry JSONL (one ServerRecord per line).")
    server_ids: list[str] | None = Field(default=None, description="Use only these servers.")
    graph: GraphConfig = Field(default_factory=GraphConfig)
    chains: ChainsConfig = Field(default_factory=ChainsConfig)
    tasks: TaskGenConfig = Field(default_factory=TaskGenConfig)
    augment: AugmentConfig = Field(default_factory=AugmentConfig)
    dedupe: DedupeConfig = Field(default_factory=DedupeConfig)
    score: ScoreConfig = Field(default_factory=ScoreConfig)
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    emulator: EmulatorConfig = Field(default_factory=EmulatorConfig)
    cassette: Path | None = Field(default=None, description="Record/replay real tool responses here.")
    cassette_mode: CassetteMode = "auto"
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    parquet: bool = Field(default=True, description="Also write sft.parquet.")
    contamination: ContaminationConfig = Field(default_factory=ContaminationConfig)

    @model_validator(mode="after")
    def _resolve_paths(self, info: ValidationInfo) -> TrajectoriesConfig:
        base = (info.context or {}).get("config_dir")
        if base:
            self.servers = _under(base, self.servers)
            self.cache_path = _under(base, self.cache_path)
            self.cassette = _under(base, self.cassette)
            self.augment.personas = _under(base, self.augment.personas)
        return self


def _under(base: str, path: Path | None) -> Any:
    return path if path is None or path.is_absolute() else Path(base) / path


class StageFunnel(BaseModel):
    stage: str
    inputs: int
    ok: int
    outputs: int
    rejected: int
    errors: int
    reject_reasons: dict[str, int]


class Funnel(BaseModel):
    status: str
    servers: int
    stages: list[StageFunnel]
    deduped_tasks: int
    dedupe_method: str | None
    rollout_status: dict[str, int]
    tool_routes: dict[str, int]
    sft_rows: int
    llm_calls: int
    export: ExportSummary | None


def _stage_funnel(result: RunResult, run_dir: Path) -> list[StageFunnel]:
    out = []
    for entry in result.manifest.stages:
        c = entry.counts
        out.append(
            StageFunnel(
                stage=entry.name,
                inputs=c.inputs,
                ok=c.ok,
                outputs=c.outputs,
                rejected=c.rejected,
                errors=c.errors,
                reject_reasons=reject_reasons(run_dir / entry.name),
            )
        )
    return out


async def run_trajectories(
    config: TrajectoriesConfig, run_dir: Path, *, retry_rejected: bool = False, progress: bool | None = None
) -> Funnel:
    """Run or resume pipeline A into ``run_dir``; returns the funnel (also written to funnel.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    servers = load_servers(config.servers)
    if config.server_ids is not None:
        missing = sorted(set(config.server_ids) - {s.id for s in servers})
        if missing:
            raise ValueError(f"{config.servers}: no servers {missing}")
        servers = [s for s in servers if s.id in set(config.server_ids)]
    options = RunOptions(
        seed=config.seed, concurrency=config.concurrency, retry_rejected=retry_rejected, progress=progress
    )
    session = RunSession.for_run(run_dir, config.endpoint, budget=config.budget, cache_path=config.cache_path)
    augment = AugmentStage(config.augment)
    stage_configs: dict[str, BaseModel] = {
        "graph": config.graph,
        "chains": config.chains,
        "tasks": config.tasks,
        "augment": config.augment,
    }
    rollout_result: RunResult | None = None
    kept: list[Task] = []
    dedupe_method: str | None = None
    async with session:
        llm, ledger = session.llm, session.ledger
        synth = Pipeline(
            "trajectories.synth",
            [
                GraphStage(config.graph),
                ChainsStage(config.chains),
                TasksStage(config.tasks),
                augment,
            ],
            config=config,
            stage_configs=stage_configs,
        )
        synth_result = await synth.run(servers, run_dir / "synth", options, llm=llm, ledger=ledger)
        if synth_result.status == "finished":
            records = synth_result.outputs
            tasks = [Task.model_validate(r.data) for r in records]
            dedupe = await dedupe_tasks(tasks, config.dedupe, llm)
            dedupe_method = dedupe.method
            kept = [tasks[i] for i in dedupe.kept]
            write_json_atomic(
                run_dir / "dedupe.json",
                {
                    "method": dedupe.method,
                    "kept": [records[i].id for i in dedupe.kept],
                    "dropped": [
                        {**d.model_dump(), "id": records[d.index].id, "of": records[d.duplicate_of].id}
                        for d in dedupe.dropped
                    ],
                },
            )
            cassette = Cassette(config.cassette, config.cassette_mode) if config.cassette else None
            async with ToolRouter(emulator=ToolEmulator(llm, config.emulator), cassette=cassette) as router:
                rollout = Pipeline(
                    "trajectories.rollout",
                    [
                        ScoreStage(config.score),
                        RolloutStage(router, config.rollout),
                        JudgeStage(config.judge),
                    ],
                    config=config,
                    stage_configs={
                        "score": config.score,
                        "rollout": config.rollout,
                        "judge": config.judge,
                    },
                )
                rollout_result = await rollout.run(kept, run_dir / "rollout", options, llm=llm, ledger=ledger)
    finished = rollout_result is not None and rollout_result.status == "finished"
    judged = (
        [(r.id, JudgedTrajectory.model_validate(r.data)) for r in rollout_result.outputs]
        if rollout_result is not None and finished
        else []
    )
    summary = (
        export_sft(judged, run_dir / "sft", parquet=config.parquet, contamination=config.contamination)
        if finished
        else None
    )
    if summary is not None and summary.contamination is not None:
        record_contamination(run_dir / "rollout" / "manifest.json", summary.contamination)
    by_id = {r.id: r for r in load_records(run_dir / "rollout" / "rollout" / "ok.jsonl", OkRecord)}
    rollouts = list(by_id.values())
    statuses = Counter(_field(r, "status") for r in rollouts)
    routes: Counter[str] = Counter()
    for r in rollouts:
        routes.update(r.data.get("execution", {}))
    funnel = Funnel(
        status=rollout_result.status if rollout_result else synth_result.status,
        servers=len(servers),
        stages=_stage_funnel(synth_result, run_dir / "synth")
        + (_stage_funnel(rollout_result, run_dir / "rollout") if rollout_result else []),
        deduped_tasks=len(kept),
        dedupe_method=dedupe_method,
        rollout_status=dict(statuses),
        tool_routes=dict(routes),
        sft_rows=summary.rows if summary else 0,  # after the contamination firewall
        llm_calls=ledger.total().calls,
        export=summary,
    )
    write_json_atomic(run_dir / "funnel.json", funnel.model_dump(mode="json"))
    if summary is not None and config.parquet:  # the card describes the parquet
        write_card(run_dir)
    return funnel


def _field(record: OkRecord, name: str) -> Any:
    return record.data.get(name) if isinstance(record.data, dict) else None
