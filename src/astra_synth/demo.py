"""``astra demo``: the whole loop on the embedded default, small enough for 2 CPU cores.

Steps (each one resumable: a finished step leaves ``steps/<name>.json`` and is skipped on a re-run):
arenas (pipeline B on the bundled seeds, then published: what synthesis makes) → the learning-signal
experiment at demo size (:mod:`astra_synth.experiments.learning_signal`: the family curriculum, SFT on the
warm-up families, GRPO on the RL families, base / SFT / SFT+GRPO scored per family group) → summary and
report. The arenas step shows the synthesis; the training story runs on the curriculum, whose groups keep
what SFT saw, what only GRPO saw and what nothing saw apart.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from pydantic import BaseModel, Field
from rich.console import Console

from astra_synth.arenas.pipeline import ArenasConfig, run_arenas
from astra_synth.config import StrictModel
from astra_synth.experiments.learning_signal import (
    LearningSignalConfig,
    LearningSignalResult,
    run_learning_signal,
)
from astra_synth.experiments.steps import Steps
from astra_synth.export.publish import publish
from astra_synth.report.pages import write_report
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.runs.summary import RunSummary
from astra_synth.sandbox import get_executor


class DemoConfig(StrictModel):
    """``examples/demo.yaml`` maps onto this."""

    arenas: ArenasConfig
    experiment: LearningSignalConfig
    executor: str = Field(default="forkserver", description="Sandbox executor for every tool call.")


class DemoSummary(BaseModel):
    run_dir: Path
    arenas: RunSummary = Field(description="The arenas run's summary, after publishing.")
    experiment: LearningSignalResult
    model: Path = Field(description="The SFT+GRPO policy.")
    report: Path


def run_demo(config: DemoConfig, run_dir: Path, console: Console | None = None) -> DemoSummary:
    console = console or Console()
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = Steps(run_dir, console)

    def arenas() -> RunSummary:
        asyncio.run(run_arenas(config.arenas, run_dir / "arenas"))
        return publish(run_dir / "arenas", config.arenas.contamination)

    produced = steps.run("arenas", RunSummary, arenas)
    console.print(f"arenas: {produced.published.rows if produced.published else 0} ({produced.status})")
    with get_executor(config.executor) as sandbox:
        result = run_learning_signal(config.experiment, run_dir, sandbox, console)
    summary = DemoSummary(
        run_dir=run_dir,
        arenas=produced,
        experiment=result,
        model=run_dir / "rl",
        report=run_dir / "report" / "index.html",
    )
    write_json_atomic(run_dir / "summary.json", summary.model_dump(mode="json"))
    write_report(run_dir, progress=True)  # rebuilt every time: it reads whatever the steps left
    return summary
