"""Pipeline A end to end: tool servers → chains → tasks → rollouts → judged SFT set.

Two resumable runner pipelines share one run directory, with task deduplication between them (it compares
every task with every other, so it cannot be a per-item stage)::

    run_dir/synth/      graph → chains → tasks → augment          (manifest.json, ok/rejects per stage)
    run_dir/rollout/    score → rollout → judge                   (rollout/ok.jsonl: every trajectory)
    run_dir/summary.json                                           (stage rows, dedupe, usage, status)

The pipeline stops there; :mod:`astra_synth.export.publish` then writes ``run_dir/sft/`` (contamination
firewall, ``sft.jsonl``, ``sft.parquet``, ``provenance.jsonl``, the ``README.md`` card).

A resume recomputes nothing finished: the runner skips recorded ids, dedupe is deterministic in input
order, and the LLM cache (``llm_cache.sqlite`` in the run directory unless configured) answers the rest.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, ValidationInfo, model_validator

from astra_synth.config import ContaminationConfig
from astra_synth.runs.jsonl import load_records
from astra_synth.runs.pipeline import Pipeline, RunOptions, RunResult
from astra_synth.runs.session import PipelineConfig, RunSession
from astra_synth.runs.store import OkRecord
from astra_synth.runs.summary import Dropped, RunFilter, RunSummary, funnel_rows, write_summary
from astra_synth.tools.cassette import Cassette, CassetteMode
from astra_synth.tools.emulator import EmulatorConfig, ToolEmulator
from astra_synth.tools.registry import load_servers
from astra_synth.tools.router import ToolRouter
from astra_synth.trajectories.augment import AugmentConfig, AugmentStage
from astra_synth.trajectories.chains import ChainsConfig, ChainsStage
from astra_synth.trajectories.dedupe import DedupeConfig, dedupe_tasks
from astra_synth.trajectories.graph import GraphConfig, GraphStage
from astra_synth.trajectories.judge import JudgeConfig, JudgeStage
from astra_synth.trajectories.records import Task
from astra_synth.trajectories.rollout import RolloutConfig, RolloutStage
from astra_synth.trajectories.score import ScoreConfig, ScoreStage
from astra_synth.trajectories.tasks import TaskGenConfig, TasksStage


class TrajectoriesConfig(PipelineConfig):
    """``examples/trajectories.yaml`` maps onto this. Relative paths resolve against the config's folder."""

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
    parquet: bool = Field(default=True, description="Publishing also writes sft.parquet (and the card).")
    contamination: ContaminationConfig = Field(
        default_factory=ContaminationConfig, description="The publish step's benchmark firewall."
    )

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


async def run_trajectories(
    config: TrajectoriesConfig, run_dir: Path, *, retry_rejected: bool = False, progress: bool | None = None
) -> RunSummary:
    """Run or resume pipeline A into ``run_dir``; returns its summary (also written to summary.json)."""
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
    session = RunSession.for_run(run_dir, config)
    augment = AugmentStage(config.augment)
    stage_configs: dict[str, BaseModel] = {
        "graph": config.graph,
        "chains": config.chains,
        "tasks": config.tasks,
        "augment": config.augment,
    }
    rollout_result: RunResult | None = None
    kept: list[Task] = []
    dedupe: RunFilter | None = None
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
            deduped = await dedupe_tasks(tasks, config.dedupe, llm)
            kept = [tasks[i] for i in deduped.kept]
            dedupe = RunFilter(
                name="dedupe",
                method=deduped.method,
                kept=[records[i].id for i in deduped.kept],
                dropped=[
                    Dropped(
                        id=records[d.index].id,
                        reason=d.reason,
                        of=records[d.duplicate_of].id,
                        score=d.similarity,
                    )
                    for d in deduped.dropped
                ],
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
    by_id = {r.id: r for r in load_records(run_dir / "rollout" / "rollout" / "ok.jsonl", OkRecord)}
    rollouts = list(by_id.values())
    routes: Counter[str] = Counter()
    for r in rollouts:
        routes.update(r.data.get("execution", {}))
    results = [(run_dir / "synth", synth_result)]
    if rollout_result is not None:
        results.append((run_dir / "rollout", rollout_result))
    summary = RunSummary(
        pipeline="trajectories",
        status=rollout_result.status if rollout_result else synth_result.status,
        inputs=len(servers),
        stages=funnel_rows("trajectories", [(d, r.manifest) for d, r in results], [dedupe] if dedupe else []),
        filters=[dedupe] if dedupe else [],
        ok=len(rollout_result.outputs) if rollout_result else 0,
        rollout_status=dict(Counter(_field(r, "status") for r in rollouts)),
        tool_routes=dict(routes),
        llm_calls=ledger.total().calls,
        usage=ledger.by_stage(),
    )
    write_summary(run_dir, summary)
    return summary


def _field(record: OkRecord, name: str) -> Any:
    return record.data.get(name) if isinstance(record.data, dict) else None
