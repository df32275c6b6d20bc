"""The demo's steps on reduced sizes: scripted arenas step, then the learning-signal experiment with one SFT
step, one GRPO step and tiny evaluations on three families files."""

from __future__ import annotations

from pathlib import Path

import pytest

from astra_synth.arenas.seeds import SeedSource
from astra_synth.config import load_config
from astra_synth.demo import DemoConfig, run_demo
from astra_synth.testing.scripted import ScriptedLLM
from astra_synth.testing.scripts import script_arenas

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
TINY_FAMILY_FILES = ("travel.yaml", "finance.yaml", "library.yaml")  # one domain per family group


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_demo_runs_every_step_and_resumes(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    script_arenas(
        scripted_llm
    )  # the arena step gets a scripted model; training and evaluation use the real one
    cfg = load_config(
        DemoConfig,
        EXAMPLES / "demo.yaml",
        {
            "arenas.endpoint": scripted_llm.endpoint(schema_mode="llama_cpp").model_dump(),
            "arenas.cache_path": str(tmp_path / "cache.sqlite"),
            "arenas.qa.sources": [
                SeedSource(mode="plain", domain="Travel", min_hops=3, max_hops=3).model_dump()
            ],
            "experiment.families": [str(EXAMPLES / "families" / f) for f in TINY_FAMILY_FILES],
            "experiment.per_family": 2,
            "experiment.sft_per_family": 1,
            "experiment.eval_per_split": 2,
            "experiment.sft.max_steps": 1,
            "experiment.sft.max_length": 768,
            "experiment.rl.max_steps": 1,
            "experiment.rl.group_size": 2,
            "experiment.rl.groups_per_device": 1,
            "experiment.rl.fill.max_rolls": 1,
            "experiment.rl.episode.max_turns": 1,
            "experiment.rl.episode.max_new_tokens": 8,
            "experiment.rl.episode.max_completion_tokens": 32,
            "experiment.episode.max_turns": 1,
            "experiment.episode.max_new_tokens": 8,
        },
    )
    run_dir = tmp_path / "demo"
    summary = run_demo(cfg, run_dir)
    published = summary.arenas.published
    assert published is not None and published.rows == 1
    assert (run_dir / "arenas" / "README.md").is_file()  # published: the card beside the parquet
    result = summary.experiment
    assert (result.sft_steps, result.rl_steps) == (1, 1)
    assert {(s.stage, s.split) for s in result.scores} >= {("base", "rl"), ("sft", "rl"), ("rl", "rl")}
    assert (summary.model / "config.json").exists()
    page = summary.report.read_text()
    assert "Learning signal" in page and "Per family" in page and "finance." in page  # the story, by family
    paired = [(g.split, g.before, g.after, g.episodes) for g in result.gains()]  # same arenas, both policies
    assert paired == [("warm-up", "base", "sft", 2), ("rl", "sft", "rl", 2), ("unseen", "sft", "rl", 2)]
    assert all(g.describe() in page for g in result.gains())
    steps = sorted(p.stem for p in (run_dir / "steps").glob("*.json"))
    stages = [("base", "warm-up"), ("base", "rl"), ("base", "unseen"), ("sft", "warm-up"), ("sft", "rl"),
              ("sft", "unseen"), ("rl", "rl"), ("rl", "unseen")]  # fmt: skip
    assert steps == sorted(["arenas", "instantiate", "sft", "rl", *(f"eval_{a}_{b}" for a, b in stages)])

    calls = len(scripted_llm.chat_requests())
    again = run_demo(cfg, run_dir)  # every step is done: nothing runs again
    same = again.experiment.model_copy(update={"wall_s": result.wall_s})  # wall time is this session's
    assert same == result and again.arenas == summary.arenas
    assert len(scripted_llm.chat_requests()) == calls
