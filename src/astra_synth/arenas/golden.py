"""Golden episodes: an arena's golden calls played through ``ArenaEnv`` one DAG layer per turn.

Replay (does the arena reach reward 1?) and the golden SFT set (a verified warm-up conversation per arena)
are the same episode; this module plays it once for both.
"""

from __future__ import annotations

from typing import Any

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
