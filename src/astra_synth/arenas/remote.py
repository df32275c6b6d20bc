"""``RemoteArenaEnv``: one session on an arena server (``astra arenas serve``), as the agent loop's executor.

It has the surface the evaluator uses on a local env (``step`` → one :class:`ToolReply` per call, ``settle``,
``reward`` → :class:`RewardBreakdown`), so an episode plays the same through the server as in process: the
server runs the same ``ArenaEnv`` with the same seed, and its final observation carries the breakdown.
"""

from __future__ import annotations

import asyncio
import json
import os
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import WebSocketException

from astra_synth.agent.chat import ToolCall
from astra_synth.agent.loop import ToolReply
from astra_synth.arenas.distractors import DistractorDraw
from astra_synth.arenas.env_protocol import TOKEN_ENV, ArenaObservation
from astra_synth.arenas.reward import RewardBreakdown


class RemoteEnvError(RuntimeError):
    """The server answered with an error frame or refused the session (not something the model did)."""


def ws_url(url: str) -> str:
    """``ws://host:port`` (or ``http://…``, with or without ``/ws``) as the session endpoint's URL."""
    parts = urlsplit(url)
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    if scheme not in ("ws", "wss"):
        raise ValueError(f"not a ws://, wss://, http:// or https:// URL: {url!r}")
    path = parts.path.rstrip("/")
    return urlunsplit((scheme, parts.netloc, path if path.endswith("/ws") else f"{path}/ws", parts.query, ""))


class RemoteArenaEnv:
    """An async context manager holding one WebSocket session; ``ASTRA_ARENAS_TOKEN`` is sent when set."""

    def __init__(self, url: str, message_timeout_s: float = 300.0) -> None:
        self.url = ws_url(url)
        self.message_timeout_s = message_timeout_s
        self._ws: ClientConnection | None = None
        self._turn: asyncio.Future[list[ToolReply]] | None = None
        self.last: ArenaObservation | None = None
        self.distractors: DistractorDraw | None = None
        """The distractor tools the server drew for the current episode (None: it offers none)."""

    async def __aenter__(self) -> RemoteArenaEnv:
        token = os.environ.get(TOKEN_ENV)
        headers = {"Authorization": f"Bearer {token}"} if token else None
        try:
            self._ws = await connect(self.url, additional_headers=headers, max_size=None, open_timeout=30)
        except (OSError, TimeoutError, WebSocketException) as exc:
            raise RemoteEnvError(f"cannot open an arena session at {self.url}: {exc}") from exc
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    async def _send(self, kind: str, data: dict[str, Any]) -> ArenaObservation:
        if self._ws is None:
            raise RemoteEnvError("the session is not open: use `async with RemoteArenaEnv(url)`")
        await self._ws.send(json.dumps({"type": kind, "data": data}, ensure_ascii=False))
        frame = json.loads(await asyncio.wait_for(self._ws.recv(), self.message_timeout_s))
        if frame.get("type") != "observation":
            detail = frame.get("data", {})
            raise RemoteEnvError(f"arena server: {detail.get('message', frame)} ({detail.get('code', '?')})")
        self.last = ArenaObservation.from_frame(frame["data"])
        return self.last

    async def reset(
        self,
        arena_id: str | None = None,
        seed: int | None = None,
        split: str | None = None,
        index: int | None = None,
        episode: int | None = None,
    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Start an episode; the prompt messages and the tool list (ordered by ``seed``, as locally), with
        the distractors the server draws for ``episode`` (0 when not given) if it offers any."""
        request = {"arena_id": arena_id, "seed": seed, "split": split, "index": index, "episode": episode}
        observation = await self._send("reset", {k: v for k, v in request.items() if v is not None})
        if observation.error is not None:
            raise RemoteEnvError(f"reset refused: {observation.error}")
        drawn = observation.metadata.get("distractors")
        self.distractors = DistractorDraw.model_validate(drawn) if drawn is not None else None
        return observation.messages, observation.tools

    async def step(self, calls: list[ToolCall]) -> list[ToolReply]:
        """One assistant turn's calls, one reply each. A turn cut off by the caller still completes (it
        was sent and counts on the server); :meth:`settle` waits for it."""
        self._turn = asyncio.ensure_future(self._step(calls))
        return await asyncio.shield(self._turn)

    async def _step(self, calls: list[ToolCall]) -> list[ToolReply]:
        observation = await self._send("step", {"tool_calls": [c.to_openai() for c in calls]})
        if observation.error is not None:  # refused whole (e.g. too many calls): every call gets the reason
            return [ToolReply(content=f"Error: {observation.error}", ok=False, route="remote") for _ in calls]
        return [
            ToolReply(content=m["content"], ok=ok, route="remote")
            for m, ok in zip(observation.messages, observation.call_ok, strict=True)
        ]

    async def settle(self) -> None:
        if self._turn is not None:
            await self._turn

    async def reward(self, final_message: str | None = None) -> RewardBreakdown:
        """End the episode with ``final_message`` as the answer; the server's reward breakdown. An episode
        the server already ended (its turn limit) keeps the reward it ended with."""
        last = self.last
        if last is None or not last.done:
            last = await self._send("step", {"tool_calls": [], "content": final_message})
        if not last.done or "reward" not in last.metadata:
            raise RemoteEnvError(f"the episode did not end with a reward: {last.error or last}")
        return RewardBreakdown.model_validate(last.metadata["reward"])
