"""GRPO on arenas: masked groups never reach the loss; real steps through the sandbox; resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from astra_synth.arenas.distractors import DistractorConfig
from astra_synth.arenas.records import Arena
from astra_synth.arenas.reward import RewardBreakdown
from astra_synth.errors import InputError
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.testing.policy import ScriptedPolicy, golden_texts
from astra_synth.training.batching import FillConfig, FillResult, Group
from astra_synth.training.episodes import EpisodeConfig, EpisodeRunner, TokenEpisode
from astra_synth.training.grpo import (
    ArenaRollouts,
    RLConfig,
    RolloutState,
    arena_f1,
    rollout_state_path,
    run_rl,
)
from astra_synth.training.metrics import read_metrics
from astra_synth.training.models import load_tokenizer
from astra_synth.training.sft import SFTResult


def _episode(reward: float, failed_turns: list[tuple[int, int]] | None = None) -> TokenEpisode:
    breakdown = RewardBreakdown(reward=reward, recall=reward, precision=reward, calls=1, solved={}, turns=1)
    return TokenEpisode(
        arena_id="a",
        prompt_ids=[1, 2],
        completion_ids=[3, 4, 5],
        env_mask=[1, 0, 1],
        messages=[],
        breakdown=breakdown,
        failed_turns=failed_turns or [],
    )


def test_masked_groups_carry_no_loss_tokens(
    embedded_model: Path, short_arenas: list[Arena], executor: ToolExecutor
) -> None:
    settings = RLConfig(group_size=2, groups_per_device=2)
    rollouts = ArenaRollouts(
        short_arenas, executor, EpisodeRunner(load_tokenizer(str(embedded_model))), settings, None, None
    )
    valid = Group(key="v", rewards=[0.0, 1.0], payload=[_episode(0.0), _episode(1.0)])
    flat = Group(key="f", rewards=[0.5, 0.5], payload=[_episode(0.5), _episode(0.5)], masked=True)
    fill = FillResult(
        groups=[valid, flat], rolls=4, rolled=8, zero_variance=7, from_buffer=0, padded=1, buffered=0
    )
    out = rollouts._as_trl(fill)
    assert out["env_mask"] == [[1, 0, 1], [1, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert out["f1"] == [0.0, 1.0, 0.5, 0.5]
    assert out["fill_frac_zero_variance"] == 7 / 8 and out["fill_padded"] == 1

    logged: dict[str, float] = {}
    rewards = arena_f1(
        completions=[""] * 4,
        f1=out["f1"],
        recall=out["recall"],
        precision=out["precision"],
        calls=out["calls"],
        turns=out["turns"],
        log_metric=logged.__setitem__,
        fill_frac_zero_variance=out["fill_frac_zero_variance"],
    )
    assert rewards == [0.0, 1.0, 0.5, 0.5]
    assert logged["arena/calls"] == 1.0 and logged["fill/frac_zero_variance"] == 7 / 8


@pytest.mark.parametrize("skip", [False, True])
def test_failed_turns_leave_the_loss_only_where_the_episode_beat_its_group(
    embedded_model: Path, short_arenas: list[Arena], executor: ToolExecutor, skip: bool
) -> None:
    """With ``mask_rewarded_failures`` a failed turn of an above-mean episode (a recovered mistake) is not
    reinforced; a failed turn of a below-mean episode keeps its negative advantage; without it all train."""
    settings = RLConfig(group_size=3, groups_per_device=1, mask_rewarded_failures=skip)
    rollouts = ArenaRollouts(
        short_arenas, executor, EpisodeRunner(load_tokenizer(str(embedded_model))), settings, None, None
    )
    members = [_episode(0.0, [(0, 1)]), _episode(0.8, [(0, 1)]), _episode(0.5, [])]  # mean 0.433
    group = Group(key="g", rewards=[0.0, 0.8, 0.5], payload=members)
    fill = FillResult(groups=[group], rolls=1, rolled=1, zero_variance=0, from_buffer=0, padded=0, buffered=0)
    masks = rollouts._as_trl(fill)["env_mask"]
    assert masks == [[1, 0, 1], [0, 0, 1] if skip else [1, 0, 1], [1, 0, 1]]


def test_too_few_arenas_for_a_step_fail_before_training(
    family_arena: Arena, executor: ToolExecutor, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each group of a step needs its own arena; TRL would otherwise train 0 steps and say nothing."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(InputError, match=r"at least 2 arenas \(1 groups per step × 2 processes.*got 1"):
        run_rl([family_arena], executor, tmp_path, RLConfig(groups_per_device=1))
    assert not any(tmp_path.iterdir())


def test_a_micro_batch_must_divide_the_step_before_training(
    family_arenas: list[Arena], executor: ToolExecutor, tmp_path: Path
) -> None:
    """Gradient accumulation splits a step's episodes into equal passes; 3 does not split 2 × 4."""
    settings = RLConfig(groups_per_device=2, group_size=4, micro_batch=3)
    with pytest.raises(InputError, match="micro_batch 3 must divide the 8 episodes of a step"):
        run_rl(family_arenas, executor, tmp_path, settings)
    assert not any(tmp_path.iterdir())


def test_rollout_state_round_trips_the_buffer_and_the_arena_draws(
    embedded_model: Path, short_arenas: list[Arena], executor: ToolExecutor
) -> None:
    def rollouts() -> ArenaRollouts:
        runner = EpisodeRunner(load_tokenizer(str(embedded_model)))
        return ArenaRollouts(short_arenas, executor, runner, RLConfig(seed=7), None, None)

    first = rollouts()
    first._rng.random()  # some draws already happened
    first._groups = 5
    first.filler.buffer.append(Group(key="a#3", rewards=[0.0, 1.0], payload=[_episode(0.0), _episode(1.0)]))
    saved = first.state().model_dump_json()

    second = rollouts()
    second.restore(RolloutState.model_validate_json(saved))
    assert [g.key for g in second.filler.buffer] == ["a#3"]
    (group,) = second.filler.buffer
    assert group.rewards == [0.0, 1.0] and [e.breakdown.reward for e in group.payload] == [0.0, 1.0]
    assert second._groups == 5
    assert [second._rng.random() for _ in range(3)] == [first._rng.random() for _ in range(3)]


def test_arenas_are_drawn_by_signal_or_by_the_trainers_schedule(
    embedded_model: Path, sample_arenas: list[Arena], executor: ToolExecutor
) -> None:
    """``signal``: families whose groups carried a signal are drawn more; ``schedule``: TRL's ids on a step's
    first roll, uniform draws for its refills."""
    runner = EpisodeRunner(load_tokenizer(str(embedded_model)))
    signal = ArenaRollouts(sample_arenas, executor, runner, RLConfig(), None, None)
    learnable, stuck = sample_arenas[0].id, sample_arenas[1].id
    for _ in range(8):
        signal.picker.record(learnable, True)
        signal.picker.record(stuck, False)
    drawn = signal.draw(600, [learnable])
    assert drawn.count(learnable) > 3 * drawn.count(stuck) > 0
    assert set(drawn) == {a.id for a in sample_arenas}  # untried families keep their chance

    settings = RLConfig(fill=FillConfig(pick="schedule"))
    schedule = ArenaRollouts(sample_arenas, executor, runner, settings, None, None)
    scheduled = [stuck, stuck]
    assert schedule.draw(2, scheduled) == [stuck, stuck] and scheduled == []
    refills = schedule.draw(300, scheduled)
    assert set(refills) == {a.id for a in sample_arenas}


def _script_episodes(monkeypatch: pytest.MonkeyPatch, model: Path, golden_of: Arena | None = None) -> None:
    """Every group's generator becomes scripted: a wrong answer (reward 0) in every episode, or — with
    ``golden_of`` — a wrong answer, then that arena's golden episode (reward 1)."""
    tokenizer = load_tokenizer(str(model))
    wrong = [tokenizer("I cannot tell.<|im_end|>", add_special_tokens=False)["input_ids"]]
    golden = (
        [tokenizer(t, add_special_tokens=False)["input_ids"] for t in golden_texts(golden_of)]
        if golden_of
        else []
    )
    play = EpisodeRunner.play

    def scripted(runner: EpisodeRunner, policy: object, envs: list[Any]) -> list[TokenEpisode]:
        scripts = [wrong, golden] if golden else [wrong] * len(envs)
        return play(runner, ScriptedPolicy(scripts), envs)

    monkeypatch.setattr(EpisodeRunner, "play", scripted)


def _differing_tensors(start: Path, end: Path) -> list[str]:
    from safetensors import safe_open

    with safe_open(start, "pt") as a, safe_open(end, "pt") as b:
        names = set(a.keys())
        assert names == set(b.keys())
        return [k for k in sorted(names) if not a.get_tensor(k).equal(b.get_tensor(k))]


@pytest.mark.slow
@pytest.mark.timeout(600)  # model load + one real GRPO step (two short episodes) + a checkpoint
def test_one_group_with_rewards_0_and_1_moves_the_weights(
    embedded_model: Path,
    family_arena: Arena,
    executor: ToolExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The rollout's generator is scripted (a wrong answer, then the golden episode), everything else is real:
    runner, sandbox, F1 reward, TRL's loss and optimiser. A group with rewards [0, 1] must reach the loss."""
    _script_episodes(monkeypatch, embedded_model, family_arena)
    settings = RLConfig(
        model=str(embedded_model),
        max_steps=1,
        group_size=2,
        groups_per_device=1,
        learning_rate=1e-5,
        episode=EpisodeConfig(max_turns=3, max_new_tokens=64, max_completion_tokens=320),
        distractors=None,
        fill=FillConfig(max_rolls=1),
    )  # no checkpoint folder (optimiser state is a GB to write): the policy saved at the end is compared
    out = tmp_path / "rl"
    result = run_rl([family_arena], executor, out, settings)

    played = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert [p["reward"]["reward"] for p in played] == [0.0, pytest.approx(1.0)]
    assert [p["masked"] for p in played] == [False, False]
    assert {(p["arena_id"], p["family"]) for p in played} == {(family_arena.id, "logistics.postcode-rate")}
    (step,) = [r for r in read_metrics(out / "metrics.jsonl") if "reward" in r]
    assert step["reward"] == pytest.approx(0.5) and result.rewards == [step["reward"]]
    assert step["frac_reward_zero_std"] == 0.0
    assert step["grad_norm"] > 0
    assert "kl" not in step  # beta 0: no reference model, no KL term
    changed = _differing_tensors(embedded_model / "model.safetensors", out / "model.safetensors")
    assert "model.layers.0.self_attn.q_proj.weight" in changed, changed


@pytest.mark.slow
@pytest.mark.timeout(600)  # model load + two real GRPO steps (two short episodes each), scripted
def test_the_kl_term_holds_the_policy_to_where_it_started(
    embedded_model: Path,
    family_arena: Arena,
    executor: ToolExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``beta`` > 0 TRL keeps the starting policy as reference: the first step's KL is 0 (same weights),
    the second step's is positive (the first moved them)."""
    _script_episodes(monkeypatch, embedded_model, family_arena)
    settings = RLConfig(
        model=str(embedded_model),
        max_steps=2,
        group_size=2,
        groups_per_device=1,
        learning_rate=1e-4,
        beta=0.1,
        episode=EpisodeConfig(max_turns=3, max_new_tokens=64, max_completion_tokens=320),
        distractors=None,
        fill=FillConfig(max_rolls=1),
        save_steps=10,
    )
    run_rl([family_arena], executor, tmp_path / "rl", settings)
    kl = [r["kl"] for r in read_metrics(tmp_path / "rl" / "metrics.jsonl") if "reward" in r]
    assert kl[0] == pytest.approx(0.0, abs=1e-6) and kl[1] > 1e-6, kl


@pytest.mark.slow
@pytest.mark.timeout(600)  # model load + four real GRPO steps of four one-turn scripted episodes
def test_the_schedule_plays_every_arena_once_per_epoch(
    embedded_model: Path,
    family_arenas: list[Arena],
    short_arenas: list[Arena],
    executor: ToolExecutor,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``pick="schedule"`` with 4 arenas and 2 groups a step: steps 1–2 and steps 3–4 each play all four, so
    the training rewards of an epoch compare with the next one's on the same arenas (``--quick`` relies on
    it). Generation is scripted (one wrong answer per episode); TRL's sampler and trainer are real."""
    _script_episodes(monkeypatch, embedded_model)
    arenas = [*family_arenas, *short_arenas[:2]]
    settings = RLConfig(
        model=str(embedded_model),
        max_steps=4,
        group_size=2,
        groups_per_device=2,
        episode=EpisodeConfig(max_turns=1, max_new_tokens=16, max_completion_tokens=16),
        distractors=None,
        fill=FillConfig(max_rolls=1, pick="schedule"),
        save_steps=10,
    )
    run_rl(arenas, executor, tmp_path / "rl", settings)
    played = [json.loads(line) for line in (tmp_path / "rl" / "rollouts.jsonl").read_text().splitlines()]
    by_step: dict[int, list[str]] = {}
    for episode in played:
        by_step.setdefault(episode["step"], []).append(episode["arena_id"])
    assert sorted(by_step) == [0, 1, 2, 3]
    every = sorted(a.id for a in arenas)
    for first, second in ((0, 1), (2, 3)):
        assert sorted(set(by_step[first]) | set(by_step[second])) == every, by_step
    assert all(len(ids) == 4 and len(set(ids)) == 2 for ids in by_step.values()), by_step


@pytest.mark.slow
@pytest.mark.timeout(1500)  # SFT warm-up fixture + 2 real GRPO steps on 2 shared CPU cores
def test_grpo_steps_through_the_sandbox_then_resume(
    sft_result: SFTResult, short_arenas: list[Arena], executor: ToolExecutor, tmp_path: Path
) -> None:
    settings = RLConfig(
        model=str(sft_result.out),
        max_steps=1,
        group_size=2,
        groups_per_device=2,
        learning_rate=1e-5,
        episode=EpisodeConfig(max_turns=2, max_new_tokens=64, max_completion_tokens=200),
        distractors=DistractorConfig(k_per_band=1),
        fill=FillConfig(max_rolls=1),  # extra rolls are covered by test_batching; keep CPU steps short
        save_steps=1,
    )
    out = tmp_path / "rl"
    result = run_rl(short_arenas, executor, out, settings)
    assert result.steps == 1
    logged = read_metrics(out / "metrics.jsonl")
    steps = [r for r in logged if "reward" in r]
    assert [r["step"] for r in steps] == [1]
    for key in ("arena/recall", "arena/precision", "arena/calls", "arena/turns", "fill/frac_zero_variance"):
        assert all(key in r for r in steps), key
    assert all(0 < r["fill/rollout_s"] < r["step_time"] for r in steps)  # rollouts are part of the step
    assert result.rewards == [r["reward"] for r in steps]
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    state = RolloutState.model_validate_json(rollout_state_path(out / "checkpoint-1", 0).read_text())
    assert state.groups >= 2  # the groups played in step 1 were counted, and the count was saved
    assert sum(len(seen) for seen in state.picker.values()) == state.groups  # each group's validity, saved

    played = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert len(played) == 2 * 2  # two groups × two episodes (one roll: max_rolls=1)
    assert {p["arena_id"] for p in played} <= {a.id for a in short_arenas}
    assert all(p["distractors"] is not None for p in played)
    by_group: dict[str, list[float]] = {}
    for p in played:
        by_group.setdefault(p["group"], []).append(p["reward"]["reward"])
    for p in played:
        if p["masked"]:
            assert len(set(by_group[p["group"]])) == 1

    resumed = run_rl(short_arenas, executor, out, settings.model_copy(update={"max_steps": 2}), resume=True)
    assert resumed.steps == 2
    state = json.loads((out / "checkpoint-2" / "trainer_state.json").read_text())
    assert [h["step"] for h in state["log_history"] if "reward" in h] == [1, 2]
    replayed = [json.loads(line) for line in (out / "rollouts.jsonl").read_text().splitlines()]
    assert {p["step"] for p in replayed[len(played) :]} == {1}  # only the missing step was rolled
