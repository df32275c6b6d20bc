"""The demo's steps on reduced sizes: scripted arenas step, one SFT step, one GRPO step, tiny evaluations."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from astra_synth.arenas.seeds import SeedSource
from astra_synth.config import load_config
from astra_synth.demo import DemoConfig, run_demo
from astra_synth.testing.scripted import ScriptedLLM
from astra_synth.testing.scripts import script_arenas

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


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
            "heldout": 2,
            "sft.max_steps": 1,
            "sft.max_length": 768,
            "rl.max_steps": 1,
            "rl.fill.max_rolls": 1,
            "rl.distractors.k_per_band": 1,
            "rl.episode.max_turns": 1,
            "rl.episode.max_new_tokens": 16,
            "rl.episode.max_completion_tokens": 64,
            "eval.agent.max_llm_calls": 1,
            "eval.agent.max_tokens": 16,
        },
    )
    run_dir = tmp_path / "demo"
    summary = run_demo(cfg, run_dir)
    published = summary.arenas.published
    assert published is not None and published.rows == 1  # the scripted arena joined the 12 sample arenas
    assert (run_dir / "arenas" / "README.md").is_file()  # published: the card beside the parquet
    assert summary.train_arenas == 11 and summary.heldout_arenas == 2
    assert summary.golden_conversations == 11
    assert len(summary.sft_losses) == 1 and len(summary.rl_rewards) == 1
    assert set(summary.before) == set(summary.after) >= {"success_rate", "f1"}
    assert (summary.model / "config.json").exists()
    assert summary.report.is_file() and "eval_after" in summary.report.read_text()  # the demo steps shown
    heldout = {json.loads(line)["id"] for line in (run_dir / "heldout.arenas.jsonl").read_text().splitlines()}
    trained_on = {
        json.loads(line)["arena_id"] for line in (run_dir / "golden.jsonl").read_text().splitlines()
    }
    assert not heldout & trained_on  # held-out arenas never reach training
    steps = sorted(p.stem for p in (run_dir / "steps").glob("*.json"))
    assert steps == sorted(["arenas", "split", "golden", "sft", "rl", "eval_before", "eval_after"])

    calls = len(scripted_llm.chat_requests())
    again = run_demo(cfg, run_dir)  # every step is done: nothing runs again
    assert again == summary and len(scripted_llm.chat_requests()) == calls
