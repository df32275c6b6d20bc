"""Real run directories for the report: pipelines A and B on the scripted endpoint, a demo-shaped run, an
empty folder. Built once per session (about ten seconds) and shared by the render and browser tests."""

from __future__ import annotations

import asyncio
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel
from rich.console import Console

from astra_synth.arenas.pipeline import run_arenas
from astra_synth.config import load_config
from astra_synth.export.publish import publish
from astra_synth.report.pages import write_report
from astra_synth.testing.scripted import Reply, ScriptedLLM, text_reply
from astra_synth.testing.scripts import (
    answer_trajectories,
    arenas_config,
    notes_server,
    script_arenas,
    trajectories_config,
)
from astra_synth.trajectories.pipeline import TrajectoriesConfig, run_trajectories

HOSTILE = '<script>console.error("injected")</script><img src="missing.png">'
"""Model text that would run a script and fetch a file if the report pasted it in unescaped."""


def _hostile_agent(body: dict[str, Any]) -> Reply | dict[str, Any]:
    """The scripted pipeline-A model, whose final answers carry markup (a report must show it as text)."""
    reply = answer_trajectories(body)
    agent = body["messages"][0]["content"].startswith("You are a capable assistant")
    if agent and isinstance(reply, Reply) and reply.content and not reply.tool_calls:
        return text_reply(HOSTILE + reply.content)
    return reply


@dataclass(frozen=True)
class Runs:
    pipelines: Path  # traj/ (pipeline A) and arenas/ (pipeline B)
    demo: Path
    empty: Path


class _Trained(BaseModel):
    out: Path
    steps: int
    curve: list[float]


def _demo_shaped(demo: Path, arenas_run: Path) -> None:
    """The demo's layout with the real step writers: pipeline B under arenas/, step markers (training and
    the learning-signal scores), and metrics.jsonl written by the trainers' JsonlMetrics callback (values
    chosen here: no model is trained)."""
    from transformers import TrainerControl, TrainerState

    from astra_synth.experiments.scores import FamilyScore, SplitScore
    from astra_synth.experiments.steps import Steps
    from astra_synth.training.metrics import JsonlMetrics

    shutil.copytree(arenas_run, demo / "arenas")
    steps = Steps(demo, Console(quiet=True))
    logs = {
        "sft": [{"loss": 2.4}, {"loss": 1.9}, {"loss": 1.5}],
        "rl": [
            {
                "reward": 0.1,
                "arena/recall": 0.2,
                "arena/precision": 0.3,
                "arena/calls": 2.0,
                "fill/frac_zero_variance": 0.5,
            },
            {
                "reward": 0.3,
                "arena/recall": 0.4,
                "arena/precision": 0.35,
                "arena/calls": 1.5,
                "fill/frac_zero_variance": 0.25,
            },
        ],
    }
    for name, records in logs.items():
        callback = JsonlMetrics(demo / name / "metrics.jsonl")
        for step, record in enumerate(records, start=1):
            callback.on_log(None, TrainerState(global_step=step), TrainerControl(), logs=record)
        curve = [r.get("loss", r.get("reward", 0.0)) for r in records]
        steps.run(name, _Trained, lambda n=name, c=curve: _Trained(out=demo / n, steps=len(c), curve=c))
    for stage, f1 in (("base", 0.1), ("sft", 0.2), ("rl", 0.4)):
        family = FamilyScore(family="finance.convert", episodes=40, f1=f1, success_rate=f1 / 2)
        score = SplitScore(
            split="rl",
            stage=stage,
            episodes=40,
            f1=f1,
            ci95=0.05,
            success_rate=f1 / 2,
            calls_per_arena=1.0,
            clipped=0.0,
            families=[family],
            arena_f1={"finance.convert-a": f1, "finance.convert-b": f1 / 2},
        )
        steps.run(f"eval_{stage}_rl", SplitScore, lambda s=score: s)


@pytest.fixture(scope="session")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    root = tmp_path_factory.mktemp("runs")
    pipelines, work = root / "pipelines", root / "work"
    work.mkdir()
    with ScriptedLLM() as llm:
        llm.handler = _hostile_agent
        path = trajectories_config(work, notes_server())
        cfg = load_config(TrajectoriesConfig, path, {"endpoint": llm.endpoint().model_dump()})
        asyncio.run(run_trajectories(cfg, pipelines / "traj", progress=False))
    publish(pipelines / "traj", cfg.contamination, parquet=cfg.parquet)
    with ScriptedLLM() as llm:
        script_arenas(llm)
        arenas_cfg = arenas_config(llm, work)
        asyncio.run(run_arenas(arenas_cfg, pipelines / "arenas", progress=False))
    publish(pipelines / "arenas", arenas_cfg.contamination)
    _demo_shaped(root / "demo", pipelines / "arenas")
    (root / "empty").mkdir()
    return Runs(pipelines=pipelines, demo=root / "demo", empty=root / "empty")


@pytest.fixture(scope="session")
def reports(runs: Runs) -> dict[str, Path]:
    """The rendered report folder of each run."""
    return {name: write_report(getattr(runs, name)).parent for name in ("pipelines", "demo", "empty")}
