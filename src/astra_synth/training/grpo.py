"""Multi-turn GRPO on arenas with TRL's ``GRPOTrainer`` (ASTRA §C.1–C.4): DAPO token loss, no KL, F1 reward.

Why ``rollout_func`` and not ``environment_factory``: TRL reads an environment's tools from its *class*, so
thousands of synthesized arenas (each with its own tools plus per-episode distractors) would need one
generated class per arena; and the trainer's built-in loop can neither drop zero-variance groups nor roll
extra prompts. A ``rollout_func`` owns the whole episode instead: it plays the scheduled arenas through
:class:`~astra_synth.training.episodes.EpisodeRunner` (sandboxed ``ArenaEnv``, distractors per episode;
or sessions on an arena server, ``env_url``),
fills the batch adaptively (:mod:`~astra_synth.training.batching`: buffered valid groups first, extra arenas
rolled until the batch holds only groups with reward std > δ, a bounded number of times) and returns token
ids with an ``env_mask`` so tool output never enters the loss. The F1 reward and its parts travel as extra
fields to one reward function, which also logs recall, precision, calls, turns and the fill statistics.
The loss forward runs each distinct prompt of a micro-batch once (:mod:`~astra_synth.training.shared_prompt`).

The dataset column ``prompt`` is the arena id (TRL's sampler schedules arenas; the rollout renders the
chat). With ``fill.pick="signal"`` (the default) the rollout draws its own arenas instead, families weighted
by how often their recent groups carried a signal (:mod:`~astra_synth.training.arena_picker`); with
``"schedule"`` it plays TRL's schedule first. Either way ``rollouts.jsonl`` records what was actually played
(arena and its family, distractors, reward breakdown, whether the group was masked).
Resume restores model, optimiser, scheduler and RNG state from a checkpoint, and each rank's rollout state
(carry-over buffer, arena sampler RNG, group counter, the picker's record) from
``rollout_state.rank<R>.json`` saved beside it, so buffered groups survive an interruption and a resumed run
draws the arenas an uninterrupted one would.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field
from transformers import TrainerCallback

from astra_synth.arenas.distractors import (
    DistractorConfig,
    DistractorDraw,
    DistractorSampler,
    local_samplers,
)
from astra_synth.arenas.records import Arena
from astra_synth.arenas.runtime import ArenaEnv, EnvConfig, ExtraTool
from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.training.arena_picker import ArenaPicker
from astra_synth.training.batching import BatchFiller, FillConfig, FillResult, Group
from astra_synth.training.episodes import EpisodeConfig, EpisodeEnv, EpisodeRunner, TokenEpisode
from astra_synth.training.lm_head import labelled_positions_only
from astra_synth.training.metrics import JsonlMetrics
from astra_synth.training.models import (
    LoraConfig,
    Precision,
    cpu_autocast,
    hardware_args,
    load_tokenizer,
    lora_config,
    resolve_model,
)
from astra_synth.training.remote_env import SyncRemoteArenaEnv


class RLConfig(StrictModel):
    """What ``astra train rl`` runs. Paper values where published: lr 2e-6, no KL, token-level loss."""

    model: str = "embedded"
    max_steps: int = Field(default=100, ge=1)
    group_size: int = Field(default=4, ge=2, description="Rollouts per arena (GRPO group).")
    groups_per_device: int = Field(default=2, ge=1, description="Arena groups per optimiser step and device.")
    learning_rate: float = Field(default=2e-6, gt=0)
    micro_batch: int | None = Field(
        default=None,
        ge=1,
        description="Episodes per forward/backward pass (None, or more than a step has: the whole step). "
        "A step's episodes are accumulated over several passes (one generation, one optimiser step): "
        "it bounds activation memory.",
    )
    epsilon: float = Field(default=0.2, gt=0, description="PPO clip range.")
    beta: float = Field(
        default=0.0,
        ge=0,
        description="KL coefficient to the starting policy (0, the paper's: no reference model; > 0 costs "
        "a reference forward per step). TRL computes it on the step's own completions only, so it does not "
        "hold families a step does not draw (docs/training.md, run C).",
    )
    mask_rewarded_failures: bool = Field(
        default=False,
        description="Leave out of the loss the turns whose calls failed in episodes that score above their "
        "group's mean. The F1 reward is per trajectory, so a failed call followed by a fixed one (0.67) "
        "beats a failure (0) and GRPO would reinforce the mistake with the fix; below the mean, failed "
        "turns keep their (negative) advantage.",
    )
    episode: EpisodeConfig = Field(default_factory=EpisodeConfig)
    env: EnvConfig = Field(default_factory=EnvConfig)
    fill: FillConfig = Field(default_factory=FillConfig)
    distractors: DistractorConfig | None = Field(default_factory=DistractorConfig)
    embedder: Literal["local"] = "local"
    lora: LoraConfig | None = None
    precision: Precision = "auto"
    seed: int = 0
    save_steps: int = Field(default=50, ge=1)
    save_total_limit: int = Field(default=2, ge=1)
    logging_steps: int = Field(default=1, ge=1)

    def step_micro_batch(self) -> int:
        """Episodes per forward/backward pass: ``micro_batch``, capped at a step's episodes, dividing them."""
        episodes = self.groups_per_device * self.group_size
        micro = min(self.micro_batch or episodes, episodes)
        if episodes % micro:
            raise InputError(f"micro_batch {micro} must divide the {episodes} episodes of a step")
        return micro


class RLResult(BaseModel):
    """Where the policy went and the per-step rewards that were logged."""

    out: Path
    steps: int
    rewards: list[float]


class BufferedGroup(BaseModel):
    key: str
    rewards: list[float]
    masked: bool
    episodes: list[TokenEpisode]


class RolloutState(BaseModel):
    """One rank's rollout state in a checkpoint: ``random.Random`` state, group counter, carry-over buffer,
    and the arena picker's per-family record of valid groups."""

    rng: list[Any]
    groups: int
    buffer: list[BufferedGroup]
    picker: dict[str, list[bool]] = Field(default_factory=dict)


def rollout_state_path(checkpoint: Path, rank: int) -> Path:
    return checkpoint / f"rollout_state.rank{rank}.json"


class SaveRolloutState(TrainerCallback):
    """Writes each rank's rollout state into the checkpoint folder the trainer just saved."""

    def __init__(self, rollouts: ArenaRollouts, out: Path, rank: int) -> None:
        self.rollouts = rollouts
        self.out = out
        self.rank = rank

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        checkpoint = self.out / f"checkpoint-{state.global_step}"
        if checkpoint.is_dir():
            path = rollout_state_path(checkpoint, self.rank)
            write_json_atomic(path, self.rollouts.state().model_dump(mode="json"))


class ArenaRollouts:
    """TRL ``rollout_func``: plays arena groups with batch filling; one instance per trainer process."""

    def __init__(
        self,
        arenas: Sequence[Arena],
        executor: ToolExecutor | None,
        runner: EpisodeRunner,
        settings: RLConfig,
        sampler: DistractorSampler | None,
        log_path: Path | None,
        env_url: str | None = None,
    ) -> None:
        if (executor is None) == (env_url is None):
            raise ValueError("episodes run on a local sandbox executor or an arena server url: give one")
        self.arenas = {a.id: a for a in arenas}
        self.executor = executor
        self.env_url = env_url
        self.runner = runner
        self.settings = settings
        self.sampler = sampler
        self.log_path = log_path
        self.filler: BatchFiller[list[TokenEpisode]] = BatchFiller(
            target=settings.groups_per_device, config=settings.fill
        )
        self.picker = ArenaPicker.of(arenas, settings.fill.window)
        self._rng = random.Random(settings.seed)
        self._groups = 0
        self.last_fill: FillResult[list[TokenEpisode]] | None = None

    def state(self) -> RolloutState:
        """What a checkpoint needs to continue this rank's rollouts exactly."""
        version, internal, gauss = self._rng.getstate()
        return RolloutState(
            rng=[version, list(internal), gauss],
            groups=self._groups,
            buffer=[
                BufferedGroup(key=g.key, rewards=g.rewards, masked=g.masked, episodes=g.payload)
                for g in self.filler.buffer
            ],
            picker=self.picker.state(),
        )

    def restore(self, state: RolloutState) -> None:
        version, internal, gauss = state.rng
        self._rng.setstate((version, tuple(internal), gauss))
        self._groups = state.groups
        self.filler.buffer.clear()
        self.filler.buffer.extend(
            Group(key=g.key, rewards=g.rewards, payload=g.episodes, masked=g.masked) for g in state.buffer
        )
        self.picker.restore(state.picker)

    def play_groups(self, model: Any, arena_ids: list[str]) -> list[Group[list[TokenEpisode]]]:
        """One group of ``group_size`` episodes per arena id, all generated in one batch per turn.

        A group shares one seed, so its episodes see the same prompt (tool order and distractors): GRPO's
        advantage compares rollouts of one prompt, and the shared prompt is prefilled once."""
        envs: list[tuple[EpisodeEnv, DistractorDraw | None]] = []
        for arena_id in arena_ids:
            arena = self.arenas[arena_id]
            seed = self._rng.randrange(1 << 30)
            draw = self.sampler.sample(arena, episode=seed) if self.sampler else None
            extra = self.sampler.extra_tools(draw) if self.sampler and draw else None
            for _ in range(self.settings.group_size):
                envs.append((self._env(arena, extra, seed), draw))
        try:
            episodes = self.runner.play(model, envs)
        finally:
            for env, _ in envs:
                if isinstance(env, SyncRemoteArenaEnv):
                    env.close()
        size = self.settings.group_size
        groups = []
        for i, arena_id in enumerate(arena_ids):
            members = episodes[i * size : (i + 1) * size]
            rewards = [e.breakdown.reward for e in members]
            self._groups += 1
            groups.append(Group(key=f"{arena_id}#{self._groups}", rewards=rewards, payload=members))
        return groups

    def draw(self, count: int, scheduled: list[str]) -> list[str]:
        """Arena ids for ``count`` new groups: the picker's (``fill.pick="signal"``); else TRL's scheduled ids
        on a step's first roll (``scheduled`` is then emptied) and uniform draws for refills."""
        if self.settings.fill.pick == "signal":
            return self.picker.draw(self._rng, count)
        if scheduled and count == len(scheduled):
            ids = list(scheduled)
            scheduled.clear()
            return ids
        return self._rng.choices(sorted(self.arenas), k=count)

    def _env(self, arena: Arena, extra: list[ExtraTool] | None, seed: int) -> EpisodeEnv:
        """The episode's environment: a session on the arena server, else an ``ArenaEnv`` in the sandbox."""
        if self.env_url is not None:
            return SyncRemoteArenaEnv(self.env_url, arena, seed=seed)
        assert self.executor is not None  # one of the two, checked in __init__
        return ArenaEnv(arena, self.executor, self.settings.env, extra, seed=seed)

    def __call__(self, prompts: list[Any], trainer: Any) -> dict[str, Any]:
        from trl.models.utils import unwrap_model_for_generation

        size = self.settings.group_size
        scheduled = [str(p) for p in prompts[::size]]
        with unwrap_model_for_generation(trainer.model_wrapped, trainer.accelerator) as model:
            was_training = model.training
            model.eval()

            def roll(count: int) -> list[Group[list[TokenEpisode]]]:
                ids = self.draw(count, scheduled)
                groups = self.play_groups(model, ids)
                for arena_id, group in zip(ids, groups, strict=True):
                    self.picker.record(arena_id, self.filler.is_valid(group))
                return groups

            self.filler.target = len(scheduled)
            began = time.perf_counter()
            fill = self.filler.fill(roll)
            rolled_s = time.perf_counter() - began
            if was_training:
                model.train()
        self.last_fill = fill
        self._log(fill, trainer.state.global_step)
        return {**self._as_trl(fill), "fill_rollout_s": rolled_s}

    def _as_trl(self, fill: FillResult[list[TokenEpisode]]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "prompt_ids": [],
            "completion_ids": [],
            "logprobs": None,
            "env_mask": [],
            "f1": [],
            "recall": [],
            "precision": [],
            "calls": [],
            "turns": [],
            "played_arena": [],
        }
        for group in fill.groups:
            mean = sum(group.rewards) / len(group.rewards)
            for ep in group.payload:
                out["prompt_ids"].append(ep.prompt_ids)
                # An empty completion cannot be padded into a batch; one EOS keeps the row (masked below).
                completion = ep.completion_ids or [self.runner.tokenizer.eos_token_id]
                skip = self.settings.mask_rewarded_failures and ep.breakdown.reward > mean
                mask = ep.loss_mask(skip_failed_turns=skip) or [0]
                out["completion_ids"].append(completion)
                out["env_mask"].append([0] * len(mask) if group.masked else mask)
                out["f1"].append(ep.breakdown.reward)
                out["recall"].append(ep.breakdown.recall)
                out["precision"].append(ep.breakdown.precision)
                out["calls"].append(ep.breakdown.calls)
                out["turns"].append(ep.breakdown.turns)
                out["played_arena"].append(ep.arena_id)
        out["fill_frac_zero_variance"] = fill.frac_zero_variance
        out["fill_rolls"] = fill.rolls
        out["fill_padded"] = fill.padded
        out["fill_from_buffer"] = fill.from_buffer
        out["fill_buffered"] = fill.buffered
        return out

    def _log(self, fill: FillResult[list[TokenEpisode]], step: int) -> None:
        if self.log_path is None:
            return
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("a", encoding="utf-8") as fh:
            for group in fill.groups:
                for ep in group.payload:
                    record = {
                        "step": step,
                        "group": group.key,
                        "masked": group.masked,
                        "arena_id": ep.arena_id,
                        "family": ep.family,
                        "reward": ep.breakdown.model_dump(),
                        "distractors": ep.distractors.model_dump() if ep.distractors else None,
                        "completion_tokens": len(ep.completion_ids),
                        "budget_exhausted": ep.budget_exhausted,
                        "failed_turns": len(ep.failed_turns),
                        "messages": ep.messages,
                    }
                    fh.write(json.dumps(record, ensure_ascii=False) + "\n")


_FILL_KEYS = (
    "fill_frac_zero_variance",
    "fill_rolls",
    "fill_padded",
    "fill_from_buffer",
    "fill_buffered",
    "fill_rollout_s",  # the step's rollouts (all its rolls); TRL's step_time includes them and the update
)


def arena_f1(
    completions: list[Any],
    f1: list[float],
    recall: list[float],
    precision: list[float],
    calls: list[int],
    turns: list[int],
    log_metric: Callable[[str, float], None] | None = None,
    **kwargs: Any,
) -> list[float | None]:
    """The reward TRL optimises: each episode's F1, computed in the rollout from executed tool calls."""
    if log_metric is not None:
        n = max(1, len(f1))
        log_metric("arena/recall", sum(recall) / n)
        log_metric("arena/precision", sum(precision) / n)
        log_metric("arena/calls", sum(calls) / n)
        log_metric("arena/turns", sum(turns) / n)
        for key in _FILL_KEYS:
            values = kwargs.get(key)
            value = values[0] if isinstance(values, list) else values
            if value is not None:
                log_metric(f"fill/{key.removeprefix('fill_')}", float(value))
    return [float(x) for x in f1]


def _latest_checkpoint(out: Path) -> str | None:
    found = sorted(out.glob("checkpoint-*"), key=lambda p: int(p.name.rsplit("-", 1)[1]))
    return str(found[-1]) if found else None


def run_rl(
    arenas: Sequence[Arena],
    executor: ToolExecutor | None,
    out: Path,
    settings: RLConfig | None = None,
    resume: bool | Path = False,
    env_url: str | None = None,
) -> RLResult:
    """Train with GRPO on ``arenas``; ``resume=True`` continues from the newest checkpoint in ``out``.

    Tool calls run in ``executor``, or — with ``executor=None`` and ``env_url`` — on an arena server
    (``astra arenas serve`` over the same arenas; its env config applies and its ``--distractors`` draw the
    irrelevant tools, so ``settings.distractors`` must be None)."""
    from datasets import Dataset  # type: ignore[import-untyped]
    from trl.trainer.grpo_config import GRPOConfig

    from astra_synth.training.shared_prompt import SharedPromptGRPOTrainer

    settings = settings or RLConfig()
    if settings.episode.temperature <= 0:
        raise ValueError("GRPO samples its groups: episode.temperature must be > 0")
    processes = int(os.environ.get("WORLD_SIZE", "1"))  # set by torchrun/accelerate
    needed = settings.groups_per_device * processes
    if len(arenas) < needed:  # TRL's sampler would yield no batch: 0 steps, no error
        raise InputError(
            f"GRPO needs at least {needed} arenas ({settings.groups_per_device} groups per step × "
            f"{processes} processes, each a different arena); got {len(arenas)}"
        )
    if env_url is not None and settings.distractors is not None and settings.distractors.k_per_band > 0:
        raise InputError(
            "with an arena server the server draws the distractors (astra arenas serve --distractors K): "
            "set distractors to none here"
        )
    episodes = settings.groups_per_device * settings.group_size
    micro = settings.step_micro_batch()
    model_path = resolve_model(settings.model)
    tokenizer = load_tokenizer(model_path)
    tokenizer.padding_side = "left"
    sampler = None
    if settings.distractors is not None and settings.distractors.k_per_band > 0:
        sampler = local_samplers({"train": arenas}, settings.distractors)["train"]
    rank = int(os.environ.get("RANK", "0"))  # torchrun/accelerate set it before the process group exists
    log_name = "rollouts.jsonl" if rank == 0 else f"rollouts.rank{rank}.jsonl"
    rollouts = ArenaRollouts(
        arenas,
        executor,
        EpisodeRunner(tokenizer, settings.episode, bf16=cpu_autocast(settings.precision)),
        settings,
        sampler,
        out / log_name,
        env_url=env_url,
    )
    args = GRPOConfig(
        output_dir=str(out),
        max_steps=settings.max_steps,
        learning_rate=settings.learning_rate,
        lr_scheduler_type="constant",
        per_device_train_batch_size=micro,
        gradient_accumulation_steps=episodes // micro,  # TRL generates once per optimiser step
        num_generations=settings.group_size,
        max_completion_length=settings.episode.max_completion_tokens,
        temperature=settings.episode.temperature,  # TRL scales logits by it when scoring tokens
        loss_type="dapo",
        beta=settings.beta,
        epsilon=settings.epsilon,
        seed=settings.seed,
        logging_steps=settings.logging_steps,
        save_steps=settings.save_steps,
        save_total_limit=settings.save_total_limit,
        report_to=["tensorboard"],  # event files under out/runs/
        **hardware_args(settings.precision),
    )
    trainer = SharedPromptGRPOTrainer(
        model=model_path,
        reward_funcs=[arena_f1],
        args=args,
        train_dataset=Dataset.from_list([{"prompt": a.id} for a in arenas]),
        processing_class=tokenizer,
        peft_config=lora_config(settings.lora),
        rollout_func=rollouts,
        callbacks=[JsonlMetrics(out / "metrics.jsonl"), SaveRolloutState(rollouts, out, rank)],
    )
    checkpoint: str | None = None
    if resume:
        checkpoint = str(resume) if isinstance(resume, Path) else _latest_checkpoint(out)
        if checkpoint is None:
            raise FileNotFoundError(f"--resume: no checkpoint-* folder in {out}")
        saved = rollout_state_path(Path(checkpoint), rank)
        if saved.is_file():  # checkpoints written before rollout state was saved start with an empty buffer
            rollouts.restore(RolloutState.model_validate_json(saved.read_text(encoding="utf-8")))
    with labelled_positions_only():  # padding positions skip the LM head
        trainer.train(resume_from_checkpoint=checkpoint)
    trainer.save_model(str(out))
    tokenizer.save_pretrained(str(out))
    from astra_synth.training.metrics import read_metrics

    rewards = [float(r["reward"]) for r in read_metrics(out / "metrics.jsonl") if r.get("reward") is not None]
    return RLResult(out=out, steps=trainer.state.global_step, rewards=rewards)
