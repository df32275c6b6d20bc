"""The learning-signal experiment end to end at tiny size (structure, not numbers; the numbers are the
benchmark's, benchmarks/learning_signal.py), and its split and scoring helpers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from astra_synth.arenas.families import instantiate, load_families
from astra_synth.arenas.records import Arena
from astra_synth.arenas.reward import RewardBreakdown
from astra_synth.errors import InputError
from astra_synth.experiments.learning_signal import (
    LearningSignalConfig,
    quick_config,
    rl_train_arenas,
    run_learning_signal,
    spread,
)
from astra_synth.experiments.scores import gains, paired_gain, score_split
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.training.batching import FillConfig
from astra_synth.training.episodes import EpisodeConfig, TokenEpisode
from astra_synth.training.grpo import RLConfig
from astra_synth.training.sft import SFTConfig

FAMILIES = Path(__file__).resolve().parents[2] / "examples" / "families"
TINY_FILES = [FAMILIES / "travel.yaml", FAMILIES / "finance.yaml", FAMILIES / "library.yaml"]


@pytest.fixture(scope="module")
def executor() -> Iterator[ToolExecutor]:
    with get_executor("forkserver") as sandbox:
        yield sandbox


@pytest.fixture(scope="module")
def travel(executor: ToolExecutor) -> list[Arena]:
    families = load_families([FAMILIES / "travel.yaml"])
    return instantiate(families, per_family=3, seed=0, executor=executor, validate=False)


def test_spread_takes_every_family_in_turn_and_is_seeded(travel: list[Arena]) -> None:
    families = {a.family for a in travel}
    picked = spread(travel, len(families), seed=1)
    assert {a.family for a in picked} == families  # one of each before any family's second
    assert [a.id for a in spread(travel, 5, seed=1)] == [a.id for a in spread(list(reversed(travel)), 5, 1)]
    assert len(spread(travel, 100, seed=1)) == len(travel)


def _episode(arena: Arena, reward: float, recall: float, calls: int) -> TokenEpisode:
    breakdown = RewardBreakdown(
        reward=reward, recall=recall, precision=reward, calls=calls, solved={"t1": recall == 1.0}
    )
    return TokenEpisode(
        arena_id=arena.id,
        family=arena.family,
        prompt_ids=[1],
        completion_ids=[2],
        env_mask=[1],
        messages=[],
        breakdown=breakdown,
    )


def test_a_split_score_has_the_mean_its_interval_and_each_family(travel: list[Arena]) -> None:
    a, b = travel[0], next(x for x in travel if x.family != travel[0].family)
    score = score_split("warm-up", "sft", [_episode(a, 1.0, 1.0, 1), _episode(b, 0.0, 0.0, 3)])
    assert (score.f1, score.success_rate, score.calls_per_arena, score.episodes) == (0.5, 0.5, 2.0, 2)
    assert score.ci95 == pytest.approx(1.96 * 0.7071067811865476 / 2**0.5)
    assert [(f.family, f.f1) for f in score.families] == sorted([(a.family, 1.0), (b.family, 0.0)])


def test_a_gain_pairs_the_same_arenas(travel: list[Arena]) -> None:
    arenas = travel[:6]
    played = [_episode(a, f1, f1, 1) for a, f1 in zip(arenas, [0, 0, 1, 1, 0.5, 0], strict=True)]
    before = score_split("rl", "sft", played)
    improved = [_episode(a, f1, f1, 1) for a, f1 in zip(arenas, [1, 0, 1, 1, 0.5, 0], strict=True)]
    extra = _episode(travel[6], 1.0, 1.0, 1)  # played by one policy only: not paired
    after = score_split("rl", "rl", [extra, *improved])
    gain = paired_gain(before, after)
    assert gain is not None
    assert (gain.split, gain.before, gain.after, gain.episodes, gain.changed) == ("rl", "sft", "rl", 6, 1)
    assert gain.gain == pytest.approx(1 / 6)
    assert gain.ci95 == pytest.approx(1.96 * 0.408248290463863 / 6**0.5)  # stdev of [1, 0, 0, 0, 0, 0]
    assert gain.describe() == "SFT+GRPO − SFT on rl: +0.167 ± 0.327 (paired over 6 arenas, 1 changed)"
    assert gains([after, before]) == [gain]  # only the pairs the experiment compares, both sides present
    assert gains([before]) == []
    assert paired_gain(before.model_copy(update={"arena_f1": {}}), after) is None  # scored before arena_f1


def test_quick_sizes_are_smaller_than_the_full_run() -> None:
    full, quick = LearningSignalConfig(families=[FAMILIES]), quick_config([FAMILIES])
    assert quick.eval_per_split < full.eval_per_split and quick.rl.max_steps < full.rl.max_steps
    assert full.eval_per_split >= 40  # the floor for every reported mean
    # one group per forward/backward pass (its prompt runs once); run_rl refuses a non-divisor
    assert full.rl.step_micro_batch() == full.rl.group_size
    assert quick.rl.step_micro_batch() == quick.rl.group_size


def test_grpo_trains_on_the_chosen_rl_families_and_refuses_unknown_ones(executor: ToolExecutor) -> None:
    families = load_families([FAMILIES])
    quick = quick_config([FAMILIES])
    assert quick.rl_families
    groups = {b.family.id: b.family.group for b in families}
    assert {groups[f] for f in quick.rl_families} == {"rl"}  # never a warm-up or unseen family
    chosen = [b for b in families if b.family.id in quick.rl_families or b.family.id == "finance.convert"]
    arenas = instantiate(chosen, per_family=2, seed=0, executor=executor, validate=False)
    assert {a.family for a in rl_train_arenas(arenas, quick)} == set(quick.rl_families)
    assert len(rl_train_arenas(arenas, LearningSignalConfig(families=[FAMILIES]))) == len(arenas)
    wrong = quick.model_copy(update={"rl_families": ["finance.convert", "travel.nope"]})
    with pytest.raises(InputError, match=r"\['travel.nope'\] are not RL families"):
        rl_train_arenas(arenas, wrong)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # one SFT step, one GRPO step, eight tiny evaluations: ~10 min on 2 loaded cores
def test_instantiate_sft_grpo_eval_end_to_end(tmp_path: Path, executor: ToolExecutor) -> None:
    tiny = EpisodeConfig(max_turns=1, max_new_tokens=8, max_completion_tokens=32, temperature=1.0)
    config = LearningSignalConfig(
        families=TINY_FILES,
        per_family=2,
        sft_per_family=1,
        sft_recovery=1,  # the one conversation a family is a recovery one: that path end to end
        eval_per_split=2,
        sft=SFTConfig(max_steps=1, batch_size=2, max_length=1024),
        rl=RLConfig(
            max_steps=1,
            group_size=2,
            groups_per_device=1,
            learning_rate=1e-5,
            episode=tiny,
            fill=FillConfig(max_rolls=1),
            distractors=None,
            save_steps=1,
        ),
        episode=tiny.model_copy(update={"temperature": 0.0}),
    )
    result = run_learning_signal(config, tmp_path, executor, Console(quiet=True))

    assert set(result.splits) == {
        "warm-up.train.jsonl",
        "warm-up.held-out.jsonl",
        "rl.train.jsonl",
        "rl.held-out.jsonl",
        "unseen.jsonl",
    }
    assert (result.sft_steps, result.rl_steps) == (1, 1)
    assert len(result.sft_losses) == 1 and len(result.rl_rewards) == 1
    assert (tmp_path / "sft" / "config.json").is_file() and (tmp_path / "rl" / "config.json").is_file()
    taught = [json.loads(line) for line in (tmp_path / "golden.warm-up.jsonl").read_text().splitlines()]
    assert taught and all(t["source"] == "arena-recovery" and t["learn_from"] for t in taught)
    rollouts = (tmp_path / "rl" / "rollouts.jsonl").read_text().splitlines()
    assert rollouts and all('"family": "finance.' in line for line in rollouts)  # GRPO saw RL families only
    cells = {(s.stage, s.split) for s in result.scores}
    assert cells == {
        ("base", "warm-up"), ("base", "rl"), ("base", "unseen"),
        ("sft", "warm-up"), ("sft", "rl"), ("sft", "unseen"),
        ("rl", "rl"), ("rl", "unseen"),
    }  # fmt: skip
    for s in result.scores:
        assert s.episodes == 2 and 0.0 <= s.f1 <= 1.0 and s.ci95 >= 0.0
        prefix = {"warm-up": "travel.", "rl": "finance.", "unseen": "library."}[s.split]
        assert all(f.family.startswith(prefix) for f in s.families)
    episodes = (tmp_path / "episodes" / "sft_rl.jsonl").read_text().splitlines()
    assert len(episodes) == 2 and '"messages"' in episodes[0]  # every scored conversation is kept
    line = result.result_line()
    assert (
        line.startswith("RESULT warm_f1_base=")
        and "nan" not in line
        and line.split()[-1].startswith("wall_s=")
    )

    again = run_learning_signal(config, tmp_path, executor, Console(quiet=True))  # every step is stored
    assert again.scores == result.scores and again.rl_rewards == result.rl_rewards
