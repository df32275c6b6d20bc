"""The OpenEnv wire records of the arena server, shared by the server and our client.

OpenEnv 0.10's WebSocket protocol (``/ws``): the client sends ``{"type": "reset" | "step" | "state" |
"close", "data": {...}}``; the server answers ``{"type": "observation", "data": {"observation": {...},
"reward": …, "done": …, "metadata": {...}}}``, ``{"type": "state", "data": {...}}`` or ``{"type": "error",
"data": {"message": …, "code": …}}``. The records mirror openenv's ``Action`` / ``Observation`` / ``State``
field for field (``metadata``, ``done``, ``reward``; unknown fields refused), so openenv's own ``EnvClient``
reads them, without our package depending on openenv (its fastmcp pins ``mcp<2``, which clashes with ours).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

ENV_NAME = "astra_arenas"
TOKEN_ENV = "ASTRA_ARENAS_TOKEN"
"""When set, the server requires ``Authorization: Bearer <value>`` and our client sends it."""

ErrorCode = Literal[
    "INVALID_JSON", "UNKNOWN_TYPE", "VALIDATION_ERROR", "EXECUTION_ERROR", "CAPACITY_REACHED", "SESSION_ERROR"
]


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArenaAction(_Wire):
    """One assistant turn: its OpenAI ``tool_calls`` (read by the one parser, malformed ones kept), or none
    and ``content`` as the final answer, which ends the episode."""

    tool_calls: list[Any] = Field(default_factory=list)
    content: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class ArenaObservation(_Wire):
    """After reset: the prompt ``messages`` and the ``tools``; after a step: one tool message per call and
    whether each call worked. ``error`` says why an action was refused (nothing ran, the episode goes on).
    On a server with distractors the reset's ``metadata["distractors"]`` names the drawn tools by band
    (``high`` / ``medium`` / ``low``, a :class:`~astra_synth.arenas.distractors.DistractorDraw`).
    The last observation has ``done`` and ``reward`` (the arena F1); ``metadata["reward"]`` holds the whole
    :class:`~astra_synth.arenas.reward.RewardBreakdown` (recall, precision, calls, solved sub-tasks)."""

    arena_id: str = ""
    messages: list[dict[str, Any]] = Field(default_factory=list)
    tools: list[dict[str, Any]] = Field(default_factory=list)
    call_ok: list[bool] = Field(default_factory=list)
    error: str | None = None
    done: bool = False
    reward: float | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)

    def frame(self) -> dict[str, Any]:
        """The ``observation`` frame (openenv's ``serialize_observation``: reward and done beside it)."""
        body = self.model_dump(exclude={"reward", "done"})
        data: dict[str, Any] = {"observation": body, "reward": self.reward, "done": self.done}
        if self.metadata:
            data["metadata"] = self.metadata
        return {"type": "observation", "data": data}

    @classmethod
    def from_frame(cls, data: dict[str, Any]) -> ArenaObservation:
        return cls.model_validate(
            {**data.get("observation", {}), "reward": data.get("reward"), "done": bool(data.get("done"))}
        )


class ArenaState(_Wire):
    """The session's episode (openenv's ``State``: ``episode_id``, ``step_count``)."""

    episode_id: str | None = None
    step_count: int = 0
    arena_id: str | None = None
    seed: int | None = None
    calls: int = 0
    done: bool = False


class ResetRequest(_Wire):
    """What ``reset`` accepts: an arena by id, by split and index, or by seed alone (arena ``seed`` mod N
    over every split); ``seed`` also orders the tool list. ``episode_id`` is echoed in the state. On a
    server with distractors, ``episode`` picks the draw: (server seed, arena id, episode), as in GRPO."""

    arena_id: str | None = None
    split: str | None = None
    index: int | None = Field(default=None, ge=0)
    seed: int | None = Field(default=None, ge=0)
    episode_id: str | None = Field(default=None, max_length=255)
    episode: int = Field(default=0, ge=0)


def error_frame(message: str, code: ErrorCode) -> dict[str, Any]:
    return {"type": "error", "data": {"message": message, "code": code}}
