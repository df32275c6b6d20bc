"""Pipeline B end to end: seeds → QA instances → verified selection → tools → merged → replayed arenas.

Two resumable runner pipelines share one run directory, with the run-level percentile selection between
them (it needs every verified score, so it cannot be a per-item stage)::

    run_dir/qa/        qa_generate → tool_necessity → verify          (manifest.json, ok/rejects per stage)
    run_dir/synth/     tool_synthesis → merge → arena_check          (synth/ok.jsonl: every checked arena)
    run_dir/summary.json                                               (stage rows, selection, usage, status)

The pipeline stops there; :mod:`astra_synth.export.publish` then writes the contamination report and
rejects, ``arenas.jsonl``, ``arenas.parquet`` and the ``README.md`` card into ``run_dir``.

Resuming reruns nothing that finished: both pipelines skip recorded ids and the LLM cache answers the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from astra_synth.arenas.arena_check import ArenaCheckStage
from astra_synth.arenas.instance import QAInstance
from astra_synth.arenas.merge import MergeStage
from astra_synth.arenas.qa_generate import QaGenerateStage
from astra_synth.arenas.seeds import SeedSource, expand_sources
from astra_synth.arenas.tool_necessity import ToolNecessityStage
from astra_synth.arenas.tool_synthesis import ToolSynthesisStage
from astra_synth.arenas.validate import ValidationConfig
from astra_synth.arenas.verify import VerifyStage, select_by_percentile
from astra_synth.config import ContaminationConfig, StrictModel
from astra_synth.runs.pipeline import Pipeline, RunOptions
from astra_synth.runs.session import PipelineConfig, RunSession
from astra_synth.runs.summary import Dropped, RunFilter, RunSummary, funnel_rows, write_summary


class QAConfig(StrictModel):
    sources: list[SeedSource] = Field(min_length=1)
    temperature: float = Field(default=0.7, ge=0, le=2)
    max_reasks: int = Field(default=2, ge=0)
    max_tokens: int = Field(default=900, ge=64, description="Completion budget of one generation request.")


class NecessityConfig(StrictModel):
    max_reasks: int = Field(default=2, ge=0)
    max_tokens: int = Field(default=800, ge=64, description="Completion budget of one decision request.")


class VerifyConfig(StrictModel):
    max_reasks: int = Field(default=2, ge=0)
    max_tokens: int = Field(default=900, ge=64, description="Completion budget of one judge request.")


class SelectionConfig(StrictModel):
    percentile: float = Field(default=90, ge=0, le=100, description="Keep QS at or above this percentile.")
    min_score: float = Field(default=0.0, ge=0, le=1, description="And at or above this absolute score.")


class SynthesisConfig(StrictModel):
    outer_attempts: int = Field(default=2, ge=1, description="Restarts from the tool document.")
    inner_attempts: int = Field(default=3, ge=1, description="Call + code attempts per document.")
    max_llm_calls: int = Field(default=24, ge=4, description="Hard cap per sub-question, re-asks included.")
    max_reasks: int = Field(default=1, ge=0)
    retry_temperature: float = Field(
        default=0.7, ge=0, le=2, description="Retries sample at this (the first attempt is greedy)."
    )
    answer_tolerance: float = Field(
        default=0.05,
        ge=0,
        description="How far (relative) a calculator's result may lie from the QA answer it replaces.",
    )
    max_tokens: int = Field(default=2000, ge=64, description="Completion budget of one request.")


class MergeConfig(StrictModel):
    insert_attempts: int = Field(default=2, ge=1)
    max_llm_calls: int = Field(default=24, ge=1, description="Hard cap per instance.")
    retry_temperature: float = Field(
        default=0.7, ge=0, le=2, description="Insert retries sample at this (the first is greedy)."
    )
    max_tokens: int = Field(default=2000, ge=64, description="Completion budget of one request.")


class ArenasConfig(PipelineConfig):
    """``examples/arenas.yaml`` maps onto this."""

    executor: Literal["forkserver", "subprocess"] = "forkserver"
    qa: QAConfig
    necessity: NecessityConfig = Field(default_factory=NecessityConfig)
    verify: VerifyConfig = Field(default_factory=VerifyConfig)
    selection: SelectionConfig = Field(default_factory=SelectionConfig)
    synthesis: SynthesisConfig = Field(default_factory=SynthesisConfig)
    merge: MergeConfig = Field(default_factory=MergeConfig)
    validation: ValidationConfig = Field(default_factory=ValidationConfig)
    contamination: ContaminationConfig = Field(
        default_factory=ContaminationConfig, description="The publish step's benchmark firewall."
    )


async def run_arenas(
    config: ArenasConfig, run_dir: Path, *, retry_rejected: bool = False, progress: bool | None = None
) -> RunSummary:
    """Run or resume pipeline B into ``run_dir``; returns its summary (also written to summary.json)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    seeds, seed_errors = expand_sources(config.qa.sources, config.seed)
    options = RunOptions(
        seed=config.seed, concurrency=config.concurrency, retry_rejected=retry_rejected, progress=progress
    )
    session = RunSession.for_run(run_dir, config, executor=config.executor)
    async with session:
        llm, ledger, sandbox, endpoint = session.llm, session.ledger, session.sandbox, session.endpoint
        qa = Pipeline(
            "arenas.qa",
            [
                QaGenerateStage(**config.qa.model_dump(exclude={"sources"})),
                ToolNecessityStage(**config.necessity.model_dump()),
                VerifyStage(**config.verify.model_dump()),
            ],
            config=config,
        )
        qa_result = await qa.run(seeds, run_dir / "qa", options, llm=llm, ledger=ledger)
        verified = {r.id: QAInstance.model_validate(r.data) for r in qa_result.outputs}
        scores = {k: v.verification.score for k, v in verified.items() if v.verification}
        kept, threshold = select_by_percentile(
            scores, config.selection.percentile, min_score=config.selection.min_score
        )
        selection = RunFilter(
            name="selection",
            method="percentile",
            kept=sorted(kept),
            dropped=[
                Dropped(id=k, reason="below_threshold", score=v)
                for k, v in sorted(scores.items())
                if k not in kept
            ],
            percentile=config.selection.percentile,
            min_score=config.selection.min_score,
            threshold=threshold,
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
    results = [(run_dir / "qa", qa_result)] + ([(run_dir / "synth", synth_result)] if synth_result else [])
    summary = RunSummary(
        pipeline="arenas",
        status=synth_result.status if synth_result else qa_result.status,
        inputs=len(seeds),
        input_errors=[str(e) for e in seed_errors],
        stages=funnel_rows("arenas", [(d, r.manifest) for d, r in results], [selection]),
        filters=[selection],
        ok=len(synth_result.outputs) if synth_result else 0,
        llm_calls=ledger.total().calls,
        usage=ledger.by_stage(),
    )
    write_summary(run_dir, summary)
    return summary
