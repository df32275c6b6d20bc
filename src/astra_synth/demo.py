"""``astra demo``: the whole loop on the embedded default, small enough for 2 CPU cores.

Steps (each one resumable: a finished step leaves ``steps/<name>.json`` and is skipped on a re-run):
arenas (pipeline B on the bundled seeds, then published) → split (sample + synthesized arenas into train and
held-out) → golden (verified SFT conversations from the train arenas) → sft → rl (a few GRPO steps) →
eval_before / eval_after (held-out arenas, base model vs trained model, through ``astra serve``) → summary.
A 135M model makes poor data and learns little in a few CPU steps: the demo shows every part running for
real, not a good model.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, Field, ValidationError, ValidationInfo, field_validator
from rich.console import Console

from astra_synth.arenas.golden import golden_example
from astra_synth.arenas.pipeline import ArenasConfig, run_arenas
from astra_synth.arenas.records import Arena, read_arenas, write_arenas
from astra_synth.config import StrictModel
from astra_synth.experiments.steps import Steps
from astra_synth.evaluation.arenas import ArenaEvalConfig, ArenaEvalReport, evaluate_arenas
from astra_synth.evaluation.endpoint_errors import EndpointErrors
from astra_synth.export.publish import publish
from astra_synth.report.pages import write_report
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.runs.session import RunSession
from astra_synth.runs.summary import RunSummary
from astra_synth.sandbox import get_executor
from astra_synth.training.grpo import RLConfig, run_rl
from astra_synth.training.serve import ServeConfig, serving
from astra_synth.training.sft import SFTConfig, run_sft

class DemoConfig(StrictModel):
    """``examples/demo.yaml`` maps onto this."""

    arenas: ArenasConfig
    sample_arenas: Path = Field(description="Hand-written arenas that join the synthesized ones.")
    heldout: int = Field(default=4, ge=1, description="Arenas kept out of training for evaluation.")
    seed: int = 0
    sft: SFTConfig = Field(default_factory=SFTConfig)
    rl: RLConfig = Field(default_factory=RLConfig)
    eval: ArenaEvalConfig = Field(default_factory=ArenaEvalConfig)

    @field_validator("sample_arenas")
    @classmethod
    def _resolve(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("config_dir")
        return Path(base) / value if base and not value.is_absolute() else value


class StepResult(BaseModel):
    name: str
    data: dict[str, Any]


class Split(BaseModel):
    train: Path
    heldout: Path
    train_ids: list[str]
    heldout_ids: list[str]


class Golden(BaseModel):
    path: Path
    conversations: int


class Trained(BaseModel):
    out: Path
    steps: int
    curve: list[float]


def split_arenas(arenas: list[Arena], heldout: int, seed: int, run_dir: Path) -> Split:
    """Seeded split; the held-out arenas never reach SFT or RL."""
    order = sorted(arenas, key=lambda a: a.id)
    random.Random(seed).shuffle(order)
    held, train = order[:heldout], order[heldout:]
    write_arenas(run_dir / "train.arenas.jsonl", train)
    write_arenas(run_dir / "heldout.arenas.jsonl", held)
    return Split(
        train=run_dir / "train.arenas.jsonl",
        heldout=run_dir / "heldout.arenas.jsonl",
        train_ids=[a.id for a in train],
        heldout_ids=[a.id for a in held],
    )


def write_golden(arenas: list[Arena], out: Path, executor_kind: str) -> Golden:
    count = 0
    with get_executor(executor_kind) as sandbox, out.open("w", encoding="utf-8") as fh:
        for arena in arenas:
            try:
                fh.write(golden_example(arena, sandbox).model_dump_json() + "\n")
                count += 1
            except ValueError:
                continue  # an arena whose golden episode does not reach reward 1 is not taught
    return Golden(path=out, conversations=count)


def evaluate_model(model: str, arenas: list[Arena], config: ArenaEvalConfig) -> ArenaEvalReport:
    """Held-out arenas against ``model`` served in this process; raises ``EndpointUnavailable`` when the
    server does not answer and :class:`EndpointErrors` when it failed episodes beyond the policy."""

    async def main() -> ArenaEvalReport:
        with serving(model, ServeConfig(max_new_tokens=config.agent.max_tokens or 256)) as endpoint:
            async with RunSession(endpoint, executor=config.executor) as session:
                return await evaluate_arenas(arenas, session.llm, session.sandbox, config)

    report = asyncio.run(main())
    if report.error_violation is not None:
        raise EndpointErrors(f"evaluating {model}: {report.error_violation}")
    return report


class DemoSummary(BaseModel):
    run_dir: Path
    arenas: RunSummary = Field(description="The arenas run's summary, after publishing.")
    train_arenas: int
    heldout_arenas: int
    golden_conversations: int
    sft_losses: list[float]
    rl_rewards: list[float]
    before: dict[str, float]
    after: dict[str, float]
    model: Path
    report: Path


def _scores(report: ArenaEvalReport) -> dict[str, float]:
    return {
        "success_rate": report.success_rate.mean,
        "f1": report.f1.mean,
        "recall": report.recall.mean,
        "precision": report.precision.mean,
        "calls_per_arena": report.calls_per_arena,
    }


def run_demo(config: DemoConfig, run_dir: Path, console: Console | None = None) -> DemoSummary:
    console = console or Console()
    run_dir.mkdir(parents=True, exist_ok=True)
    steps = Steps(run_dir, console)

    def arenas() -> RunSummary:
        asyncio.run(run_arenas(config.arenas, run_dir / "arenas"))
        return publish(run_dir / "arenas", config.arenas.contamination)

    produced = steps.run("arenas", RunSummary, arenas)
    console.print(f"arenas: {produced.published.rows if produced.published else 0} ({produced.status})")
    synthesized = read_arenas(run_dir / "arenas" / "arenas.jsonl")
    pool = read_arenas(config.sample_arenas) + synthesized
    split = steps.run("split", Split, lambda: split_arenas(pool, config.heldout, config.seed, run_dir))
    train, heldout = read_arenas(split.train), read_arenas(split.heldout)
    console.print(f"{len(train)} train arenas, {len(heldout)} held out")
    golden = steps.run(
        "golden", Golden, lambda: write_golden(train, run_dir / "golden.jsonl", config.eval.executor)
    )

    def sft() -> Trained:
        result = run_sft([golden.path], run_dir / "sft", config.sft)
        return Trained(out=result.out, steps=result.steps, curve=result.losses)

    sft_done = steps.run("sft", Trained, sft)

    def rl() -> Trained:
        settings = config.rl.model_copy(update={"model": str(sft_done.out)})
        with get_executor(config.eval.executor) as sandbox:
            resume = any((run_dir / "rl").glob("checkpoint-*"))  # an interrupted demo continues its RL
            result = run_rl(train, sandbox, run_dir / "rl", settings, resume=resume)
        return Trained(out=result.out, steps=result.steps, curve=result.rewards)

    rl_done = steps.run("rl", Trained, rl)

    class Scores(BaseModel):
        scores: dict[str, float]

    before = steps.run(
        "eval_before",
        Scores,
        lambda: Scores(scores=_scores(evaluate_model(config.sft.model, heldout, config.eval))),
    )
    after = steps.run(
        "eval_after",
        Scores,
        lambda: Scores(scores=_scores(evaluate_model(str(rl_done.out), heldout, config.eval))),
    )
    summary = DemoSummary(
        run_dir=run_dir,
        arenas=produced,
        train_arenas=len(train),
        heldout_arenas=len(heldout),
        golden_conversations=golden.conversations,
        sft_losses=sft_done.curve,
        rl_rewards=rl_done.curve,
        before=before.scores,
        after=after.scores,
        model=rl_done.out,
        report=run_dir / "report" / "index.html",
    )
    write_json_atomic(run_dir / "summary.json", summary.model_dump(mode="json"))
    write_report(run_dir, progress=True)  # rebuilt every time: it reads whatever the steps left
    return summary
