"""Golden episodes: an arena's golden calls played through ``ArenaEnv`` one DAG layer per turn.

Replay (does the arena reach reward 1?) and the golden SFT set (a verified warm-up conversation per arena)
are the same episode; this module plays it once for both. A *recovery* example opens with the mistake a small
policy makes on unfamiliar tools (an argument named after another tool's parameter, or a required one left
out), answered by the runtime's real error, and then plays the golden turns, so that a policy can learn to
read the error and retry; the mistaken turn stays context only (``learn_from``). What it did to SFT and to
GRPO after it is measured in docs/training.md ("Recovery conversations in the warm-up SFT").
"""

from __future__ import annotations

import json
import random
from typing import Any

from pydantic import Field

from astra_synth.arenas.records import Arena
from astra_synth.arenas.reward import RewardBreakdown
from astra_synth.arenas.runtime import ArenaEnv, EnvConfig
from astra_synth.config import StrictModel
from astra_synth.sandbox.executor import ToolExecutor


def golden_turns(arena: Arena) -> list[list[dict[str, Any]]]:
    """The golden tool calls grouped by hop level: calls of one layer are independent, so run in parallel."""
    turns = []
    for layer in sorted({s.hop_level for s in arena.subtasks}):
        calls = [
            s.golden_call.as_tool_call(f"call_{s.id}")
            for s in arena.subtasks
            if s.hop_level == layer and s.golden_call is not None
        ]
        if calls:
            turns.append(calls)
    return turns


def play_golden(env: ArenaEnv) -> RewardBreakdown:
    """Replay the golden turns through ``env`` (``env.exchanged`` then holds the messages exchanged)."""
    return env.replay(golden_turns(env.arena))


class SFTExample(StrictModel):
    """One OpenAI-format conversation with its tools (tool-call arguments are JSON strings)."""

    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    source: str
    arena_id: str
    reward: float
    learn_from: int | None = Field(
        default=None,
        ge=1,
        description="Index of the first message the loss may cover: earlier assistant turns (a recovered "
        "mistake) are context only. None: every assistant turn is learned.",
    )


def golden_example(arena: Arena, executor: ToolExecutor, config: EnvConfig | None = None) -> SFTExample:
    """The arena's golden conversation with *real* tool outputs from the sandbox and the final answer.

    Raises ValueError when the golden episode does not reach reward 1 (such an arena must not be taught).
    """
    env = ArenaEnv(arena, executor, config)
    prompt, tools = env.reset()
    reward = play_golden(env).reward
    if reward < 1.0 - 1e-6:
        raise ValueError(f"arena {arena.id}: golden episode reaches reward {reward:.3f}, not 1")
    exchanged = env.exchanged
    answers = [m for m in exchanged if m["role"] == "tool"]
    failed = [m for m, call in zip(answers, env.calls, strict=True) if not call.ok]
    if failed:
        raise ValueError(f"arena {arena.id}: a golden call failed: {failed[0]['content'][:200]}")
    final = {"role": "assistant", "content": arena.final_answer}
    return SFTExample(
        messages=[*prompt, *exchanged, final],
        tools=tools,
        source="arena-golden",
        arena_id=arena.id,
        reward=reward,
    )


def mistaken_call(arena: Arena, call: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    """``call`` (an OpenAI tool call) with one argument renamed to another arena tool's parameter, or with
    a required argument left out when no other tool has a parameter of another name."""
    spec = arena.tool_schema(call["function"]["name"])
    arguments = json.loads(call["function"]["arguments"])
    own = set(spec.properties)
    foreign = sorted(
        {p for t in arena.tools for p in t.function.properties if t.function.name != spec.name} - own
    )
    present = sorted(arguments)
    if foreign and present:
        old = rng.choice(present)
        arguments[rng.choice(foreign)] = arguments.pop(old)
    else:
        required = [name for name in spec.required if name in arguments]
        if not required:
            raise ValueError(f"arena {arena.id}: no mistake to make in a call of {spec.name}")
        del arguments[rng.choice(required)]
    function = {"name": spec.name, "arguments": json.dumps(arguments, ensure_ascii=False)}
    return {"id": "call_mistake", "type": "function", "function": function}


def recovery_example(
    arena: Arena, executor: ToolExecutor, seed: int = 0, config: EnvConfig | None = None
) -> SFTExample:
    """The golden conversation after one mistaken first call and the runtime's error for it; the loss
    covers only what follows the error (``learn_from``).

    Raises ValueError when the mistaken call does not fail or the golden turns then leave a sub-task
    unsolved.
    """
    turns = golden_turns(arena)
    if not turns:
        raise ValueError(f"arena {arena.id}: no golden call to get wrong")
    rng = random.Random(f"{seed}:{arena.id}")
    env = ArenaEnv(arena, executor, config)
    prompt, tools = env.reset()
    breakdown = env.replay([[mistaken_call(arena, turns[0][0], rng)], *turns])
    first, *rest = env.calls
    if first.ok:
        raise ValueError(f"arena {arena.id}: the mistaken call did not fail")
    if breakdown.recall < 1.0 - 1e-6 or not all(c.ok for c in rest):
        raise ValueError(f"arena {arena.id}: after the mistake the golden turns solve {breakdown.recall:.0%}")
    final = {"role": "assistant", "content": arena.final_answer}
    return SFTExample(
        messages=[*prompt, *env.exchanged, final],
        tools=tools,
        source="arena-recovery",
        arena_id=arena.id,
        reward=breakdown.reward,
        learn_from=len(prompt) + 2,  # after the mistaken turn and its error
    )
