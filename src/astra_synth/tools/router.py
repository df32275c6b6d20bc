"""One entry point for tool calls at rollout time: live MCP, cassette replay/record, or the emulator.

``ToolRouter.call(server, tool, args, session=...)`` picks the route from the server's transport and the
router's cassette: a live server (stdio/HTTP) is called for real (and recorded when a cassette records) or
replayed from the cassette; a documentation-only server goes to the emulator, with one emulated state per
(session, server). Every answer is a :class:`ToolOutcome` that says whether it was real, replayed or
emulated. Tool failures are outcomes; only a cassette miss in replay mode raises (:class:`CassetteMiss`),
because it means the run cannot be reproduced, which a caller must record, not paper over.
"""

from __future__ import annotations

import time
from typing import Any

from astra_synth.closing import AsyncClosing
from astra_synth.tools.cassette import Cassette
from astra_synth.tools.emulator import EmulatedSession, ToolEmulator
from astra_synth.tools.mcp import CallErrorKind, McpCallError, McpSession
from astra_synth.tools.outcome import OutcomeStatus, ToolOutcome
from astra_synth.tools.spec import EmulatedTransport, ServerRecord

# A protocol error means the server answered nonsense: to the agent that is the server failing.
_CALL_ERROR_STATUS: dict[CallErrorKind, OutcomeStatus] = {
    "timeout": "timeout",
    "unreachable": "unreachable",
    "protocol": "server_error",
}


class ToolRouter(AsyncClosing):
    """Routes calls; owns the live MCP sessions (one per server, opened on first use, closed on exit)."""

    def __init__(
        self,
        *,
        emulator: ToolEmulator | None = None,
        cassette: Cassette | None = None,
        call_timeout_s: float = 30.0,
        connect_timeout_s: float = 60.0,
    ) -> None:
        self.emulator = emulator
        self.cassette = cassette
        self.call_timeout_s = call_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self._live: dict[str, McpSession] = {}
        self._emulated: dict[tuple[str, str], EmulatedSession] = {}

    async def aclose(self) -> None:
        """Shut every live server down and write the cassette's pending recordings."""
        sessions, self._live = list(self._live.values()), {}
        for session in sessions:
            await session.aclose()
        if self.cassette is not None and self.cassette.mode != "replay":
            self.cassette.close()

    def end_session(self, session: str) -> None:
        """Forget the emulated state of an episode (its history is no longer needed)."""
        for key in [k for k in self._emulated if k[0] == session]:
            del self._emulated[key]

    async def call(
        self,
        server: ServerRecord,
        tool: str,
        arguments: dict[str, Any],
        *,
        session: str = "default",
        user_query: str | None = None,
    ) -> ToolOutcome:
        """Call ``tool`` of ``server``. ``session`` scopes the emulator's state (one per episode)."""
        if isinstance(server.transport, EmulatedTransport):
            if self.emulator is None:
                raise ValueError(f"server {server.id!r} is emulated but the router has no emulator")
            key = (session, server.id)
            if key not in self._emulated:
                self._emulated[key] = self.emulator.session(server, session, user_query=user_query)
            return await self._emulated[key].call(tool, arguments)
        if server.tool(tool) is None:
            return ToolOutcome(
                server_id=server.id, tool=tool, arguments=arguments, status="unknown_tool",
                error=f"{server.id} has no tool {tool!r}", provenance="real",
            )  # fmt: skip
        if self.cassette is not None:
            found = self.cassette.lookup(server.id, tool, arguments)
            if found is not None:
                return found
        outcome = await self._call_live(server, tool, arguments)
        if self.cassette is not None:
            self.cassette.record(outcome)
        return outcome

    async def _call_live(self, server: ServerRecord, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        transport = server.transport
        assert not isinstance(transport, EmulatedTransport)
        live = self._live.get(server.id)
        if live is None:
            live = McpSession(
                transport, call_timeout_s=self.call_timeout_s, connect_timeout_s=self.connect_timeout_s
            )
            self._live[server.id] = live
        started = time.monotonic()
        fields: dict[str, Any] = {"server_id": server.id, "tool": tool, "arguments": arguments}
        try:
            result = await live.call(tool, arguments)
        except McpCallError as exc:
            status: OutcomeStatus = _CALL_ERROR_STATUS[exc.kind]
            return ToolOutcome(
                **fields,
                status=status,
                error=exc.detail,
                provenance="real",
                latency_s=time.monotonic() - started,
            )
        return ToolOutcome(
            **fields,
            status="tool_error" if result.is_error else "ok",
            content=None if result.is_error else result.content,
            error=result.text if result.is_error else None,
            provenance="real",
            latency_s=time.monotonic() - started,
        )
