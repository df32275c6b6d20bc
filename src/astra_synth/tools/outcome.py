"""What one tool call came back with, whichever way it was served (live, replayed or emulated).

One record for all three routes, so a rollout never needs to know how a tool was reached, and the report
can still show the split (``provenance``) and tell injected failures from real ones.
"""

from __future__ import annotations

import json
from typing import Any, Literal

from pydantic import Field

from astra_synth.config import StrictModel

OutcomeStatus = Literal[
    "ok",  # the tool answered
    "tool_error",  # the tool itself reported an error (MCP ``isError``, an emulated "realistic" error)
    "timeout",  # no answer within the per-call limit
    "rate_limited",  # the service refused for load (only injected by the emulator)
    "invalid_argument",  # arguments do not fit the tool's schema
    "not_found",  # the addressed entity does not exist (only injected by the emulator)
    "server_error",  # the service failed internally
    "unreachable",  # the server could not be started, reached or reconnected
    "unknown_tool",  # the server has no tool of that name
    "emulator_error",  # the emulator's LLM failed or answered garbage
]
Provenance = Literal["real", "replayed", "emulated"]


class ToolOutcome(StrictModel):
    """One tool call and its result. ``content`` is a JSON value (or text); failures carry ``error``."""

    schema_version: Literal[1] = 1
    server_id: str
    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    status: OutcomeStatus
    content: Any = None
    error: str | None = None
    provenance: Provenance
    injected: bool = Field(default=False, description="A failure drawn by the emulator's code, not real.")
    latency_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def message_content(self) -> str:
        """The text of the ``tool`` message a model sees: the result, or a typed error payload."""
        if self.status == "ok":
            if isinstance(self.content, str):
                return self.content
            return json.dumps(self.content, ensure_ascii=False)
        body: dict[str, Any] = {"type": self.status, "message": self.error or self.status}
        if self.content is not None:
            body["detail"] = self.content
        return json.dumps({"error": body}, ensure_ascii=False)
