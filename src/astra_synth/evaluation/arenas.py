"""Held-out arena evaluation: any OpenAI-compatible endpoint plays each arena; the arena F1 scores it.

The agent loop steps ``ArenaEnv`` directly: every call the model emits — unknown tools and malformed calls
included — goes through the env once, the model sees the env's answers, and the score is the reward of the
env it played, so precision counts exactly what the model emitted. Repeats use different seeds; summaries
give the mean and a 95 % interval over repeats. With ``env_url`` the episodes are played through an arena
server (``astra arenas serve``) instead: same env, same seed, same reward, computed there. Episodes the
endpoint failed (status ``llm_error``) are counted as ``errors`` apart from the model's failures
(:mod:`astra_synth.evaluation.endpoint_errors`).
"""

from __future__ import annotations

import asyncio
import math
import statistics
from contextlib import AsyncExitStack
from typing import Any, Literal

from pydantic import BaseModel, Field

from astra_synth.agent.chat import ToolCall
from astra_synth.agent.loop import AgentConfig, Episode, ToolReply, run_agent
from astra_synth.arenas.records import Arena
from astra_synth.arenas.remote import RemoteArenaEnv
from astra_synth.arenas.reward import RewardBreakdown
from astra_synth.arenas.runtime import ArenaEnv, EnvConfig
from astra_synth.config import StrictModel
from astra_synth.evaluation.endpoint_errors import ErrorPolicy
from astra_synth.llm.client import LLMClient
from astra_synth.sandbox.executor import ToolExecutor


class ArenaEvalConfig(StrictModel):
    agent: AgentConfig = Field(default_factory=lambda: AgentConfig(max_llm_calls=12, temperature=0.0))
    env: EnvConfig = Field(default_factory=EnvConfig)
    repeats: int = Field(default=1, ge=1)
    seed: int = 0
    concurrency: int = Field(default=4, ge=1, description="Episodes in flight.")
    executor: Literal["forkserver", "subprocess"] = "forkserver"
    env_url: str | None = Field(
        default=None, description="An arena server (ws://host:port) to play on; its env config applies."
    )
    errors: ErrorPolicy = Field(default_factory=ErrorPolicy)


class EpisodeScore(BaseModel):
    arena_id: str
    repeat: int
    status: str
    reward: float
    recall: float
    precision: float
    calls: int
    turns: int
    solved_all: bool
    error: str | None = None

    @property
    def endpoint_error(self) -> bool:
        """The endpoint failed the episode (after retries): nothing about the model was measured."""
        return self.status == "llm_error"


class Summary(BaseModel):
    """Mean over arenas, then mean and 95 % half-width over repeats (None with one repeat)."""

    mean: float
    ci95: float | None


class ArenaEvalReport(BaseModel):
    model: str
    arenas: int
    repeats: int
    success_rate: Summary
    f1: Summary
    recall: Summary
    precision: Summary
    calls_per_arena: float
    turns_per_arena: float
    errors: int = Field(description="Episodes the endpoint failed (status llm_error).")
    allow_errors: bool = Field(description="Whether those episodes were left out of the scores.")
    error_violation: str | None = Field(
        description="Why the run failed for endpoint reasons (errors above --max-error-rate), else None."
    )
    episodes: list[EpisodeScore]


class EnvSteps:
    """``ArenaEnv`` as the agent loop's executor: each turn's calls go through ``env.step`` once (in a
    thread: the sandbox is synchronous); a reply is ok when the executed call was."""

    def __init__(self, env: ArenaEnv) -> None:
        self.env = env
        self._turn: asyncio.Future[list[dict[str, Any]]] | None = None

    async def step(self, calls: list[ToolCall]) -> list[ToolReply]:
        self._turn = asyncio.ensure_future(asyncio.to_thread(self.env.step, calls))
        messages = await asyncio.shield(self._turn)
        executed = self.env.calls[len(self.env.calls) - len(calls) :]
        return [
            ToolReply(content=m["content"], ok=c.ok, route="sandbox")
            for m, c in zip(messages, executed, strict=True)
        ]

    async def settle(self) -> None:
        """Wait for a turn cut off by the episode's timeout: its calls were emitted and count."""
        if self._turn is not None:
            await self._turn

    async def reward(self, final_message: str | None) -> RewardBreakdown:
        return await asyncio.to_thread(self.env.reward, final_message)


def final_answer(messages: list[dict[str, Any]]) -> str | None:
    """The text of the last assistant turn when it calls no tool (the episode's answer), else None."""
    last = messages[-1] if messages else {}
    if last.get("role") != "assistant" or last.get("tool_calls"):
        return None
    return last.get("content") or None


async def play(
    arena: Arena, llm: LLMClient, executor: ToolExecutor | None, config: ArenaEvalConfig, repeat: int
) -> EpisodeScore:
    seed = config.seed + repeat
    async with AsyncExitStack() as stack:
        steps: EnvSteps | RemoteArenaEnv
        if config.env_url is not None:
            steps = await stack.enter_async_context(RemoteArenaEnv(config.env_url))
            prompt, tools = await steps.reset(arena_id=arena.id, seed=seed)
        elif executor is None:
            raise ValueError("a local arena evaluation needs a sandbox executor (or set env_url)")
        else:
            env = ArenaEnv(arena, executor, config.env, seed=seed)
            prompt, tools = env.reset()
            steps = EnvSteps(env)
        episode: Episode = await run_agent(
            llm, prompt, tools, steps, config.agent, stage="eval_arenas", seed=seed
        )
        await steps.settle()
        score = await steps.reward(final_answer(episode.messages))
    return EpisodeScore(
        arena_id=arena.id,
        repeat=repeat,
        status=episode.status,
        reward=score.reward,
        recall=score.recall,
        precision=score.precision,
        calls=score.calls,
        turns=episode.llm_calls,
        solved_all=score.recall >= 1.0 - 1e-9,
        error=episode.error,
    )


def _summary(episodes: list[EpisodeScore], repeats: int, value: str, allow_errors: bool) -> Summary:
    per_repeat = []
    for r in range(repeats):
        scores = [
            float(getattr(e, value))
            for e in episodes
            if e.repeat == r and not (allow_errors and e.endpoint_error)
        ]
        per_repeat.append(statistics.fmean(scores) if scores else 0.0)
    mean = statistics.fmean(per_repeat)
    if repeats < 2:
        return Summary(mean=mean, ci95=None)
    return Summary(mean=mean, ci95=1.96 * statistics.stdev(per_repeat) / math.sqrt(repeats))


async def evaluate_arenas(
    arenas: list[Arena], llm: LLMClient, executor: ToolExecutor | None, config: ArenaEvalConfig
) -> ArenaEvalReport:
    """Play every arena ``repeats`` times; ``executor`` runs the tools unless ``config.env_url`` is set."""
    gate = asyncio.Semaphore(config.concurrency)

    async def one(arena: Arena, repeat: int) -> EpisodeScore:
        async with gate:
            return await play(arena, llm, executor, config, repeat)

    episodes = list(await asyncio.gather(*(one(a, r) for r in range(config.repeats) for a in arenas)))
    errors = sum(e.endpoint_error for e in episodes)
    policy = config.errors
    scored = [e for e in episodes if not (policy.allow_errors and e.endpoint_error)]
    n = max(len(scored), 1)
    return ArenaEvalReport(
        model=llm.endpoint.model,
        arenas=len(arenas),
        repeats=config.repeats,
        success_rate=_summary(episodes, config.repeats, "solved_all", policy.allow_errors),
        f1=_summary(episodes, config.repeats, "reward", policy.allow_errors),
        recall=_summary(episodes, config.repeats, "recall", policy.allow_errors),
        precision=_summary(episodes, config.repeats, "precision", policy.allow_errors),
        calls_per_arena=sum(e.calls for e in scored) / n,
        turns_per_arena=sum(e.turns for e in scored) / n,
        errors=errors,
        allow_errors=policy.allow_errors,
        error_violation=policy.violation(len(episodes), errors, "episodes"),
        episodes=episodes,
    )
