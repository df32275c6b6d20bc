"""``SyncRemoteArenaEnv``: one arena episode on an arena server with ``ArenaEnv``'s synchronous surface.

Trainers step environments synchronously (our episode runner, TRL's tool loop), while the client of
``astra arenas serve`` (:class:`RemoteArenaEnv`) is async. This drives it on one background event loop per
process (a daemon thread, started on first use), so ``reset`` / ``step`` / ``reward`` behave as on a local
``ArenaEnv`` with the same seed: the server runs that very env and sends back its messages and reward.
The seed is also the episode number of the server's distractor draw, as GRPO draws locally
(``sampler.sample(arena, episode=seed)``), so a server started with ``--distractors K --distractor-seed S``
over the same arenas offers the tools ``astra train rl --distractors K --seed S`` would draw in process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from astra_synth.agent.chat import Message, ToolCall, parse_openai_call
from astra_synth.arenas.distractors import DistractorDraw
from astra_synth.arenas.records import Arena
from astra_synth.arenas.remote import RemoteArenaEnv
from astra_synth.arenas.reward import ExecutedCall, RewardBreakdown

_T = TypeVar("_T")
_loop: asyncio.AbstractEventLoop | None = None
_loop_lock = threading.Lock()


def _run(coro: Coroutine[Any, Any, _T]) -> _T:
    """Run ``coro`` on the module's background loop and wait for its result."""
    global _loop
    with _loop_lock:
        if _loop is None:
            _loop = asyncio.new_event_loop()
            threading.Thread(target=_loop.run_forever, name="astra-remote-arenas", daemon=True).start()
    return asyncio.run_coroutine_threadsafe(coro, _loop).result()


class SyncRemoteArenaEnv:
    """``arena`` played on the server at ``url`` with ``seed`` (the tool order, as ``ArenaEnv(seed=…)``).
    The session opens on the first ``reset``, serves every later one, and closes with :meth:`close`."""

    def __init__(self, url: str, arena: Arena, seed: int = 0) -> None:
        self.arena = arena
        self.seed = seed
        self._client = RemoteArenaEnv(url)
        self._open = False
        self._calls: list[ExecutedCall] = []

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        if not self._open:
            _run(self._client.__aenter__())
            self._open = True
        self._calls = []
        return _run(self._client.reset(arena_id=self.arena.id, seed=self.seed, episode=self.seed))

    @property
    def distractors(self) -> DistractorDraw | None:
        """The server's distractor draw for the current episode (None: it offers none)."""
        return self._client.distractors

    def step(self, tool_calls: list[ToolCall] | list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One assistant turn's calls; one tool message per call, in order."""
        calls = [c if isinstance(c, ToolCall) else parse_openai_call(c) for c in tool_calls]
        replies = _run(self._client.step(calls))
        self._calls += [ExecutedCall(name=c.name, ok=r.ok) for c, r in zip(calls, replies, strict=True)]
        return [
            Message(role="tool", tool_call_id=c.id, content=r.content).to_openai()
            for c, r in zip(calls, replies, strict=True)
        ]

    @property
    def calls(self) -> list[ExecutedCall]:
        """This episode's calls as the server ran them: name and whether each ran (results stay there)."""
        return list(self._calls)

    def reward(self, final_message: str | None = None) -> RewardBreakdown:
        """End the episode with ``final_message`` as the answer: the server's reward breakdown."""
        return _run(self._client.reward(final_message))

    def close(self) -> None:
        if self._open:
            _run(self._client.__aexit__(None, None, None))
            self._open = False
