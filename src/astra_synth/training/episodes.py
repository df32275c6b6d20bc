"""The multi-turn agent loop of RL and held-out evaluation: a HF model playing ``ArenaEnv`` episodes.

Per turn every unfinished episode of the batch is generated at once (left-padded); the new text's
``<tool_call>{json}</tool_call>`` blocks are parsed by the shared parser (:mod:`astra_synth.agent.chat`:
data, never evaluated; malformed blocks kept as calls) and handed to ``ArenaEnv.step``, which executes them
in the sandbox. Tool results enter the token stream as the chat template renders them:
the template is prefix-preserving, so the tokens to append are the text the template adds after the
assistant turn, and the model's own tokens are never re-tokenised. ``env_mask`` marks model tokens 1 and
template/tool tokens 0, which is exactly what the GRPO loss must see. An episode ends when the model stops
calling tools, after ``max_turns``, or when the completion budget (model + tool tokens, as in TRL) is spent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

from astra_synth.agent.chat import Message, ToolCall, content_without_calls, parse_hermes_calls
from astra_synth.arenas.distractors import DistractorDraw
from astra_synth.arenas.reward import RewardBreakdown
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.config import StrictModel
from astra_synth.training.remote_env import SyncRemoteArenaEnv
from astra_synth.training.turn_cache import TurnCache

EpisodeEnv = ArenaEnv | SyncRemoteArenaEnv
"""What an episode plays on: an ``ArenaEnv`` in the local sandbox, or the same env on an arena server."""


class EpisodeConfig(StrictModel):
    """Sampling and the limits of one episode (ASTRA: max turns / max sequence length)."""

    max_turns: int = Field(default=4, ge=1, description="Assistant turns per episode.")
    max_new_tokens: int = Field(default=128, ge=1, description="Tokens per assistant turn.")
    max_completion_tokens: int = Field(default=512, ge=8, description="Model + tool tokens per episode.")
    temperature: float = Field(default=1.0, ge=0, description="0 = greedy.")
    top_p: float = Field(default=1.0, gt=0, le=1)


class TokenEpisode(BaseModel):
    """One finished GRPO episode: the tokens to train on, the conversation and its reward breakdown."""

    arena_id: str
    family: str | None = None
    prompt_ids: list[int]
    completion_ids: list[int]
    env_mask: list[int]
    messages: list[dict[str, Any]]
    breakdown: RewardBreakdown
    distractors: DistractorDraw | None = None
    final_message: str = ""
    budget_exhausted: bool = False
    failed_turns: list[tuple[int, int]] = Field(
        default_factory=list,
        description="[start, end) in completion_ids of each model turn with a call that failed (tool error, "
        "invalid arguments, unknown tool, malformed block).",
    )

    def loss_mask(self, skip_failed_turns: bool = False) -> list[int]:
        """``env_mask``, with the failed turns' tokens 0 as well when ``skip_failed_turns``."""
        mask = list(self.env_mask)
        if skip_failed_turns:
            for start, end in self.failed_turns:
                mask[start:end] = [0] * (end - start)
        return mask


@dataclass
class _Running:
    env: EpisodeEnv
    tools: list[dict[str, Any]]
    messages: list[dict[str, Any]]
    prompt_ids: list[int]
    draw: DistractorDraw | None
    completion_ids: list[int] = field(default_factory=list)
    env_mask: list[int] = field(default_factory=list)
    final: str = ""
    done: bool = False
    budget_exhausted: bool = False
    failed_turns: list[tuple[int, int]] = field(default_factory=list)

    def step(self, calls: list[ToolCall], turn: tuple[int, int]) -> list[dict[str, Any]]:
        """Run one turn's calls; ``turn`` (its token span) is recorded as failed if any call failed."""
        before = len(self.env.calls)
        messages = self.env.step(calls)
        if not all(c.ok for c in self.env.calls[before:]):
            self.failed_turns.append(turn)
        return messages


class EpisodeRunner:
    """Plays batches of episodes with one model and tokenizer (whose chat template renders tools)."""

    def __init__(self, tokenizer: Any, settings: EpisodeConfig | None = None, bf16: bool = False) -> None:
        self.tokenizer = tokenizer
        self.settings = settings or EpisodeConfig()
        self.bf16 = bf16  # generate under CPU bfloat16 autocast (see training.models.cpu_bf16)
        self._eos_text: str = tokenizer.eos_token
        self._eos_ids = {tokenizer.eos_token_id, tokenizer.convert_tokens_to_ids("<|im_end|>")} - {None}

    def _render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]], generation: bool) -> str:
        text: str = self.tokenizer.apply_chat_template(
            messages, tools=tools, tokenize=False, add_generation_prompt=generation
        )
        return text

    def _ids(self, text: str) -> list[int]:
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def play(self, model: Any, envs: list[tuple[EpisodeEnv, DistractorDraw | None]]) -> list[TokenEpisode]:
        """Run one episode per env to the end; results in input order."""
        running = []
        for env, draw in envs:
            messages, tools = env.reset()
            prompt = self._ids(self._render(messages, tools, generation=True))
            running.append(_Running(env=env, tools=tools, messages=messages, prompt_ids=prompt, draw=draw))
        turns = TurnCache(self.tokenizer.pad_token_id, self._eos_ids) if _caches(model) else None
        for _ in range(self.settings.max_turns):
            active = [i for i, r in enumerate(running) if not r.done]
            if not active:
                break
            rows = [running[i] for i in active]
            outputs = self._generate(model, active, rows, turns)
            for episode, new_ids in zip(rows, outputs, strict=True):
                self._advance(episode, new_ids)
        for episode in running:
            episode.done = True
        return [self._finish(r) for r in running]

    def _budget(self, episode: _Running) -> int:
        return self.settings.max_completion_tokens - len(episode.completion_ids)

    def _generate(
        self, model: Any, keys: list[int], active: list[_Running], turns: TurnCache | None
    ) -> list[list[int]]:
        """One turn for every active episode, each cut at its end of turn and its remaining budget."""
        import torch

        sequences = [r.prompt_ids + r.completion_ids for r in active]
        budget = min(self.settings.max_new_tokens, max(self._budget(r) for r in active))
        sampling: dict[str, Any] = (
            {"do_sample": True, "temperature": self.settings.temperature, "top_p": self.settings.top_p}
            if self.settings.temperature > 0
            else {"do_sample": False}
        )
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            if turns is not None:
                rows = turns.generate(model, keys, sequences, budget, sampling)
            else:
                rows = self._generate_uncached(model, sequences, budget, sampling)
        results = []
        for row, episode in zip(rows, active, strict=True):
            row = row[: self._budget(episode)]
            end = next((i for i, t in enumerate(row) if t in self._eos_ids), None)
            results.append(row[: end + 1] if end is not None else row)
        return results

    def _generate_uncached(
        self, model: Any, sequences: list[list[int]], budget: int, sampling: dict[str, Any]
    ) -> list[list[int]]:
        """A plain left-padded ``generate`` over whole conversations (a scripted policy has no cache)."""
        import torch

        width = max(len(s) for s in sequences)
        pad = self.tokenizer.pad_token_id
        device = next(model.parameters()).device
        input_ids = torch.tensor([[pad] * (width - len(s)) + s for s in sequences], device=device)
        attention = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in sequences], device=device)
        with torch.no_grad():
            out = model.generate(
                input_ids=input_ids,
                attention_mask=attention,
                max_new_tokens=budget,
                pad_token_id=pad,
                eos_token_id=sorted(self._eos_ids),
                **sampling,
            )
        rows: list[list[int]] = out[:, width:].tolist()
        return rows

    def _advance(self, episode: _Running, new_ids: list[int]) -> None:
        """Append one assistant turn; run its tool calls and append their rendering, or end the episode."""
        turn = (len(episode.completion_ids), len(episode.completion_ids) + len(new_ids))
        episode.completion_ids += new_ids
        episode.env_mask += [1] * len(new_ids)
        text = self.tokenizer.decode(new_ids, skip_special_tokens=True)
        calls = parse_hermes_calls(text)
        assistant = Message(
            role="assistant", content=content_without_calls(text), tool_calls=calls
        ).to_openai()
        episode.messages.append(assistant)
        ended = not new_ids or new_ids[-1] not in self._eos_ids
        if not calls or ended:
            episode.final = assistant["content"]
            episode.done = True
            episode.budget_exhausted = ended and self._budget(episode) <= 0
            if calls:  # cut off mid-turn: the calls were emitted, they count
                episode.step(calls, turn)
            return
        tool_messages = episode.step(calls, turn)
        before = self._render(episode.messages, episode.tools, generation=False)
        after = self._render([*episode.messages, *tool_messages], episode.tools, generation=True)
        tail = before[before.rfind(self._eos_text) + len(self._eos_text) :]
        env_ids = self._ids(tail + after[len(before) :])
        episode.messages.extend(tool_messages)
        if len(env_ids) >= self._budget(episode):
            episode.done = True  # the tool results do not fit: the episode ends here, as in TRL
            episode.budget_exhausted = True
            return
        episode.completion_ids += env_ids
        episode.env_mask += [0] * len(env_ids)

    def _finish(self, episode: _Running) -> TokenEpisode:
        return TokenEpisode(
            arena_id=episode.env.arena.id,
            family=episode.env.arena.family,
            prompt_ids=episode.prompt_ids,
            completion_ids=episode.completion_ids,
            env_mask=episode.env_mask,
            messages=episode.messages,
            breakdown=episode.env.reward(episode.final),
            distractors=episode.draw or _server_draw(episode.env),
            final_message=episode.final,
            budget_exhausted=episode.budget_exhausted,
            failed_turns=episode.failed_turns,
        )


def _server_draw(env: EpisodeEnv) -> DistractorDraw | None:
    """On an arena server the server draws the distractors: record what it offered."""
    return env.distractors if isinstance(env, SyncRemoteArenaEnv) else None


def _caches(model: Any) -> bool:
    """A transformers model (or a peft wrapper of one) keeps its KV cache between turns; a scripted policy
    (tests) has none."""
    return getattr(model, "generation_config", None) is not None
