"""The multi-process path: `astra train rl` under torchrun (2 CPU ranks, gloo) takes one GRPO step; the
generator is scripted (astra_synth.testing.scripted_rl) so each rank's rewards are known."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from astra_synth.arenas.records import Arena, write_arenas
from astra_synth.training.metrics import read_metrics


@pytest.mark.slow
@pytest.mark.timeout(1200)  # model load in two processes + one step on 2 shared CPU cores
def test_grpo_under_torchrun_with_two_ranks(
    embedded_model: Path, family_arenas: list[Arena], tmp_path: Path
) -> None:
    arenas = tmp_path / "arenas.jsonl"
    write_arenas(arenas, family_arenas)  # one arena per rank and step
    out = tmp_path / "rl"
    torchrun = Path(sys.executable).with_name("torchrun")
    command = [
        str(torchrun), "--standalone", "--nproc_per_node", "2",
        "-m", "astra_synth.testing.scripted_rl", "train", "rl",
        "--arenas", str(arenas), "--model", str(embedded_model),
        "--out", str(out), "--group-size", "2", "--groups", "1", "--max-steps", "1", "--max-rolls", "1",
        "--max-turns", "3", "--max-new-tokens", "64", "--distractors", "0", "--save-steps", "1",
    ]  # fmt: skip
    run = subprocess.run(command, capture_output=True, text=True, timeout=1100, cwd=tmp_path)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    steps = [r for r in read_metrics(out / "metrics.jsonl") if "reward" in r]
    assert [r["step"] for r in steps] == [1]  # one optimiser step, logged once (by rank 0)
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    rewards = {}
    for name in ("rollouts.jsonl", "rollouts.rank1.jsonl"):  # each rank rolled its own group
        episodes = [json.loads(line) for line in (out / name).read_text().splitlines()]
        assert {e["arena_id"] for e in episodes} <= {a.id for a in family_arenas}
        assert {e["family"] for e in episodes} == {"logistics.postcode-rate"}
        rewards[name] = [e["reward"]["reward"] for e in episodes]
    assert rewards == {
        "rollouts.jsonl": [0.0, pytest.approx(1.0)],
        "rollouts.rank1.jsonl": [pytest.approx(1.0)] * 2,
    }
    both = rewards["rollouts.jsonl"] + rewards["rollouts.rank1.jsonl"]
    assert steps[0]["reward"] == pytest.approx(sum(both) / len(both))  # 0.75: gathered over both ranks
    assert steps[0]["grad_norm"] > 0  # rank 0's group [0, 1] reached the loss
