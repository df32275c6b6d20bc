"""Pipeline B end to end: seeds → QA instances → verified selection → tools → merged → replayed arenas.

Two resumable runner pipelines share one run directory, with the run-level percentile selection between
them (it needs every verified score, so it cannot be a per-item stage)::

    run_dir/qa/        qa_generate → tool_necessity → verify          (manifest.json, ok/rejects per stage)
    run_dir/selection.json                                             (percentile, threshold, kept, dropped)
    run_dir/synth/     tool_synthesis → merge → arena_check
    run_dir/contamination.json, contamination_rejects.jsonl            (benchmark firewall: report, drops)
    run_dir/arenas.jsonl, arenas.parquet, manifest.json                (funnel, threshold, cost per arena)
    run_dir/README.md                                                  (dataset card)

Resuming reruns nothing that finished: both pipelines skip recorded ids and the LLM cache answers the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from astra_synth.arenas.arena_check import ArenaCheckStage
from astra_synth.arenas.instance import QAInstance
from astra_synth.arenas.merge import MergeStage
from astra_synth.arenas.qa_generate import QaGenerateStage
from astra_synth.arenas.records import Arena, write_arenas
from astra_synth.arenas.seeds import SeedSource, expand_sources
from astra_synth.arenas.tool_necessity import ToolNecessityStage
from astra_synth.arenas.tool_synthesis import ToolSynthesisStage
from astra_synth.arenas.validate import ValidationConfig
from astra_synth.arenas.verify import VerifyStage, select_by_percentile
from astra_synth.config import BudgetConfig, EndpointConfig, StrictModel
from astra_synth.export.card import write_card
from astra_synth.firewall.contamination import ContaminationConfig, arena_probe, screen
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.runs.manifest import Manifest
from astra_synth.runs.pipeline import Pipeline, RunOptions
from astra_synth.runs.session import CACHE_PATH_HELP, RunSession


class QAConfig(StrictModel):
    sources: list[SeedSource] = Field(min_length=1)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_reasks: int = Field(default=2, ge=0)
    max_tokens: int = Field(default=900, ge=64, description="Completion budget of one generation request.")


class SelectionConfig(StrictModel):
    percentile: float = Field(default=90, ge=0, le=100, description="Keep QS at or above this percentile.")
    min_score: float = Field(default=0.0, ge=0, le=1, description="And at or above this absolute score.")


class SynthesisConfig(StrictModel):
    outer_attempts: int = Field(default=2, ge=1, description="Restarts from the tool document.")
    inner_attempts: int = Field(default=3, ge=1, description="Call + code attempts per document.")
    max_llm_calls: int = Field(default=24, ge=4, description="Hard cap per sub-question, re-asks included.")
    max_reasks: int = Field(default=1, ge=0)


class MergeConfig(StrictModel):
    insert_attempts: int = Field(default=2, ge=1)
    max_llm_calls: int = Field(default=24, ge=1, description="Hard cap per instance.")


class ArenasConfig(StrictModel):
    """``examples/arenas.yaml`` maps onto this."""

    endpoint: EndpointConfig = Field(default_factory=EndpointConfig)
    budget: BudgetConfig = Field(default_factory=BudgetConfig)
    cache_path: Path | None = Field(default=None, description=CACHE_PATH_HELP)
    seed: int = 0
    concurrency: int = Field(default=8, ge=1, description="Items in flight per stage.")
    executor: Literal["forkserver", "subprocess"] = "forkserver"
    qa: QAConfig
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    merge: MergeConfig = Field(default_factory=MergeConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    contamination: ContaminationConfig = Field(default_factory=ContaminationConfig)


class Funnel(BaseModel):
    seeds: int
    seed_errors: list[str]
    qa_generated: int
    legitimate: int
    verified: int
    selected: int
    threshold: float | None
    tools_synthesized: int
    merged: int
    arenas: int
    contaminated: int = Field(default=0, description="Arenas dropped by the contamination firewall.")
    llm_calls: int
    llm_calls_per_arena: float | None
    status: str


def _ok(manifest: Manifest, stage: str) -> int:
    entry = manifest.stage(stage)
    return entry.counts.ok if entry else 0


async def run_arenas(
    config: ArenasConfig, run_dir: Path, *, retry_rejected: bool = False, progress: bool | None = None
) -> Funnel:
    run_dir.mkdir(parents=True, exist_ok=True)
    seeds, seed_errors = expand_sources(config.qa.sources, config.seed)
    options = RunOptions(
        seed=config.seed, concurrency=config.concurrency, retry_rejected=retry_rejected, progress=progress
    )
    session = RunSession.for_run(
        run_dir, config.endpoint, budget=config.budget, cache_path=config.cache_path, executor=config.executor
    )
    async with session:
        llm, ledger, sandbox, endpoint = session.llm, session.ledger, session.sandbox, session.endpoint
        qa = Pipeline(
            "arenas.qa",
            [
                QaGenerateStage(**config.qa.model_dump(exclude={"sources"})),
                ToolNecessityStage(),
                VerifyStage(),
            ],
            config=config,
        )
        qa_result = await qa.run(seeds, run_dir / "qa", options, llm=llm, ledger=ledger)
        verified = {r.id: QAInstance.model_validate(r.data) for r in qa_result.outputs}
        scores = {k: v.verification.score for k, v in verified.items() if v.verification}
        kept, threshold = select_by_percentile(
            scores, config.selection.percentile, min_score=config.selection.min_score
        )
        write_json_atomic(
            run_dir / "selection.json",
            {
                "percentile": config.selection.percentile,
                "min_score": config.selection.min_score,
                "threshold": threshold,
                "kept": sorted(kept),
                "dropped": {k: v for k, v in sorted(scores.items()) if k not in kept},
            },
        )
        selected = [verified[k] for k in verified if k in kept]
        synth_result = None
        if qa_result.status == "finished":
            synth = Pipeline(
                "arenas.synth",
                [
                    ToolSynthesisStage(**config.synthesis.model_dump(), validation=config.validation),
                    MergeStage(**config.merge.model_dump(), validation=config.validation),
                    ArenaCheckStage(model=endpoint.model, run_id=run_dir.name, validation=config.validation),
                ],
                config=config,
            )
            synth_result = await synth.run(
                selected, run_dir / "synth", options, llm=llm, sandbox=sandbox, ledger=ledger
            )
    arenas = [Arena.model_validate(r.data) for r in synth_result.outputs] if synth_result else []
    contamination = None
    if config.contamination.enabled:
        report = screen([arena_probe(a) for a in arenas], config.contamination, run_dir)
        arenas = [a for a in arenas if a.id not in report.dropped_ids]
        contamination = report.summary
    write_arenas(run_dir / "arenas.jsonl", arenas)
    write_parquet(run_dir / "arenas.parquet", arenas)
    total_calls = ledger.total().calls
    status = synth_result.status if synth_result else qa_result.status
    funnel = Funnel(
        seeds=len(seeds),
        seed_errors=[str(e) for e in seed_errors],
        qa_generated=_ok(qa_result.manifest, "qa_generate"),
        legitimate=_ok(qa_result.manifest, "tool_necessity"),
        verified=_ok(qa_result.manifest, "verify"),
        selected=len(selected),
        threshold=threshold,
        tools_synthesized=_ok(synth_result.manifest, "tool_synthesis") if synth_result else 0,
        merged=_ok(synth_result.manifest, "merge") if synth_result else 0,
        arenas=len(arenas),
        contaminated=contamination.dropped if contamination else 0,
        llm_calls=total_calls,
        llm_calls_per_arena=(total_calls / len(arenas)) if arenas else None,
        status=status,
    )
    write_json_atomic(
        run_dir / "manifest.json",
        {
            "pipeline": "arenas",
            "config": config.model_dump(mode="json"),
            "funnel": funnel.model_dump(),
            "usage": {k: v.model_dump() for k, v in ledger.by_stage().items()},
            "stages": {"qa": "qa/manifest.json", "synth": "synth/manifest.json"},
            "contamination": contamination.model_dump() if contamination else None,
        },
    )
    write_card(run_dir)
    return funnel


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
