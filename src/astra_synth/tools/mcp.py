"""Live MCP servers (stdio or streamable HTTP): list their tools into the registry, call them at rollout.

Built on the official ``mcp`` SDK (2.x ``mcp.Client``). Why the extra layer: rollouts call tools from many
asyncio tasks, need a per-call timeout that leaves the session usable, must survive a server that dies
mid-episode (reconnect once, then a typed failure), and must never leave a server process behind. The SDK's
client lives in anyio task groups that must be entered and exited by one task, so each connection is owned
by a background task; calls from any task go through it, and closing it ends the process (the SDK's stdio
transport closes stdin, then terminates and reaps the process tree).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shlex
import sys
import time
from typing import Any, Literal, Self

import httpx2
import mcp_types
from mcp import Client, MCPError, StdioServerParameters
from mcp.client import Transport
from mcp.client.streamable_http import streamable_http_client
from pydantic import Field

from astra_synth.closing import AsyncClosing
from astra_synth.config import StrictModel
from astra_synth.tools.normalize import (
    FilterConfig,
    ImportReject,
    ImportResult,
    RawServer,
    RawTool,
    filter_server,
    slug,
)
from astra_synth.tools.spec import HttpTransport, StdioTransport

log = logging.getLogger(__name__)

LiveTransport = StdioTransport | HttpTransport
CallErrorKind = Literal["timeout", "unreachable", "protocol"]

_CONNECTION_CLOSED = -32000
_REQUEST_TIMEOUT = -32001
# The SDK's own defaults for streamable HTTP: a server may hold a response stream open for minutes.
_HTTP_TIMEOUT_S = 30.0
_HTTP_READ_TIMEOUT_S = 300.0
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class McpCallError(RuntimeError):
    """A call that got no answer from the server: timed out, server gone, or a protocol error."""

    def __init__(self, kind: CallErrorKind, detail: str) -> None:
        super().__init__(f"MCP call failed ({kind}): {detail}")
        self.kind: CallErrorKind = kind
        self.detail = detail


class McpCallResult(StrictModel):
    """A tool's answer. ``content`` is the text parsed as JSON, else the text (else the structured result).

    The text comes first because it is what the server meant a model to read; SDK servers wrap plain
    return values as ``{"result": ...}`` in the structured form.
    """

    is_error: bool
    content: Any
    text: str = Field(description="The answer's content blocks as text, joined by newlines.")


def describe_transport(transport: LiveTransport) -> str:
    """``stdio: python -m x`` or ``http: URL``: the ``source`` of an imported record."""
    if isinstance(transport, HttpTransport):
        return f"http: {transport.url}"
    return "stdio: " + shlex.join([transport.command, *transport.args])


def resolve_env_refs(values: dict[str, str], what: str) -> dict[str, str]:
    """Replace every ``${NAME}`` in the values with our environment's, so a record never holds a secret.

    A missing variable is an ``unreachable`` error naming it, never an empty string.
    """

    def lookup(ref: re.Match[str]) -> str:
        found = os.environ.get(ref.group(1))
        if found is None:
            raise McpCallError("unreachable", f"environment variable {ref.group(1)} (for {what}) is not set")
        return found

    return {key: _ENV_REF.sub(lookup, value) for key, value in values.items()}


def stdio_parameters(transport: StdioTransport) -> StdioServerParameters:
    """SDK launch parameters. ``python`` means this interpreter, so servers installed beside astra run."""
    command = sys.executable if transport.command in ("python", "python3") else transport.command
    env = resolve_env_refs(transport.env, "variable")
    return StdioServerParameters(command=command, args=transport.args, env=env or None, cwd=transport.cwd)


def _flatten(exc: BaseException) -> str:
    """One line for an exception that may be a (nested) group from the SDK's task groups."""
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(_flatten(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}"


def _result_from_sdk(result: mcp_types.CallToolResult) -> McpCallResult:
    parts: list[str] = []
    for block in result.content:
        if isinstance(block, mcp_types.TextContent):
            parts.append(block.text)
        else:
            parts.append(f"[{block.type} content]")
    text = "\n".join(parts)
    content: Any = text
    if text.strip():
        with contextlib.suppress(ValueError):
            content = json.loads(text)
    elif result.structured_content is not None:
        content = result.structured_content
    return McpCallResult(is_error=result.is_error, content=content, text=text)


class _Connection:
    """One connected ``mcp.Client``, entered and exited by its own task."""

    def __init__(self, transport: LiveTransport, connect_timeout_s: float) -> None:
        self.transport = transport
        self.connect_timeout_s = connect_timeout_s
        self.client: Client | None = None
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> Client:
        ready: asyncio.Future[Client] = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._own(ready), name="mcp-connection")
        try:
            async with asyncio.timeout(self.connect_timeout_s):
                self.client = await asyncio.shield(ready)
        except TimeoutError:
            await self.close()
            raise McpCallError(
                "unreachable", f"no MCP handshake within {self.connect_timeout_s:g}s"
            ) from None
        except McpCallError:
            await self.close()
            raise
        except Exception as exc:
            await self.close()
            raise McpCallError("unreachable", _flatten(exc)) from exc
        return self.client

    async def _own(self, ready: asyncio.Future[Client]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                transport = self.transport
                target: StdioServerParameters | Transport
                if isinstance(transport, HttpTransport):
                    http = httpx2.AsyncClient(
                        headers=resolve_env_refs(transport.headers, "header"),
                        timeout=httpx2.Timeout(_HTTP_TIMEOUT_S, read=_HTTP_READ_TIMEOUT_S),
                    )
                    await stack.enter_async_context(http)
                    target = streamable_http_client(transport.url, http_client=http)
                else:
                    target = stdio_parameters(transport)
                client = await stack.enter_async_context(Client(target))
                ready.set_result(client)
                await self._stop.wait()
        except BaseException as exc:  # the owner must end quietly: failures reach callers through `ready`
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(_flatten(exc)))
            else:
                log.debug("MCP connection closed with %s", _flatten(exc))
            if isinstance(exc, asyncio.CancelledError):
                raise

    async def close(self) -> None:
        """Stop the owner task and wait until the SDK has shut the server down."""
        self._stop.set()
        if self._task is not None:
            await asyncio.wait({self._task})
        self.client = None


class McpSession(AsyncClosing):
    """A live connection to one MCP server: ``async with McpSession(transport) as s: await s.call(...)``.

    ``call`` has a per-call timeout (the session stays usable after one), reconnects once when the
    connection has dropped, and raises :class:`McpCallError` otherwise. Safe to call from many tasks.
    """

    def __init__(
        self, transport: LiveTransport, *, call_timeout_s: float = 30.0, connect_timeout_s: float = 60.0
    ) -> None:
        self.transport = transport
        self.call_timeout_s = call_timeout_s
        self.connect_timeout_s = connect_timeout_s
        self.reconnects = 0
        self._connection: _Connection | None = None
        self._lock = asyncio.Lock()

    async def __aenter__(self) -> Self:
        await self.connect()
        return self

    async def connect(self) -> Client:
        async with self._lock:
            if self._connection is None or self._connection.client is None:
                connection = _Connection(self.transport, self.connect_timeout_s)
                await connection.open()
                self._connection = connection
            assert self._connection.client is not None
            return self._connection.client

    async def _reconnect(self, dropped: _Connection | None) -> Client:
        """Replace the connection that dropped (once, even when many tasks saw it drop together)."""
        async with self._lock:
            if self._connection is dropped:
                self._connection = None
                if dropped is not None:
                    await dropped.close()
                self.reconnects += 1
        return await self.connect()

    async def aclose(self) -> None:
        async with self._lock:
            if self._connection is not None:
                await self._connection.close()
                self._connection = None

    async def list_tools(self) -> list[mcp_types.Tool]:
        """Every tool of the server, following pagination."""
        client = await self.connect()
        tools: list[mcp_types.Tool] = []
        cursor: str | None = None
        try:
            while True:
                page = await client.list_tools(cursor=cursor)
                tools.extend(page.tools)
                cursor = page.next_cursor
                if cursor is None:
                    return tools
        except MCPError as exc:
            raise McpCallError("protocol", f"tools/list failed: {exc.message}") from exc

    async def call(self, name: str, arguments: dict[str, Any]) -> McpCallResult:
        """Call ``name``; a dropped connection is re-opened and the call sent once more."""
        client = await self.connect()
        connection = self._connection
        try:
            return await self._call_once(client, name, arguments)
        except McpCallError as exc:
            if exc.kind != "unreachable":
                raise
            log.info(
                "MCP server %s dropped the connection (%s); reconnecting once", self.transport, exc.detail
            )
        client = await self._reconnect(connection)
        return await self._call_once(client, name, arguments)

    async def _call_once(self, client: Client, name: str, arguments: dict[str, Any]) -> McpCallResult:
        try:
            result = await client.call_tool(name, arguments, read_timeout_seconds=self.call_timeout_s)
        except MCPError as exc:
            if exc.code == _REQUEST_TIMEOUT:
                raise McpCallError("timeout", f"{name}: no answer within {self.call_timeout_s:g}s") from exc
            if exc.code == _CONNECTION_CLOSED:
                raise McpCallError("unreachable", f"{name}: {exc.message}") from exc
            raise McpCallError("protocol", f"{name}: {exc.message} (code {exc.code})") from exc
        except (OSError, RuntimeError) as exc:  # a stream closed under us (anyio raises these)
            raise McpCallError("unreachable", f"{name}: {_flatten(exc)}") from exc
        return _result_from_sdk(result)


async def import_live(
    transport: LiveTransport,
    *,
    server_id: str | None = None,
    domain: str = "general",
    title: str | None = None,
    policy: FilterConfig | None = None,
    connect_timeout_s: float = 60.0,
) -> ImportResult:
    """List a live server's tools and turn them into a filtered :class:`ServerRecord`.

    The id defaults to the server's own name (``serverInfo``). A server that cannot be reached is an
    ``unreachable`` reject, not an exception, so a batch import goes on.
    """
    source = describe_transport(transport)
    policy = policy or FilterConfig()
    fallback_id = server_id or slug(source) or "server"
    started = time.monotonic()
    try:
        async with McpSession(transport, connect_timeout_s=connect_timeout_s) as session:
            client = await session.connect()
            info = client.server_info
            instructions = client.instructions or ""
            tools = await session.list_tools()
    except McpCallError as exc:
        return ImportResult(
            rejects=[ImportReject(source=source, server=fallback_id, reason="unreachable", detail=exc.detail)]
        )
    log.info("listed %d tools from %s in %.1fs", len(tools), source, time.monotonic() - started)
    name = info.name if info is not None else ""
    raw = RawServer(
        id=server_id or slug(name) or fallback_id,
        title=title or (info.title if info is not None and info.title else name) or fallback_id,
        description=(info.description if info is not None and info.description else "") or instructions,
        domain=domain,
        tools=[RawTool(t.name, t.description, t.input_schema) for t in tools],
        transport=transport,
        source=source,
    )
    return filter_server(raw, policy)
