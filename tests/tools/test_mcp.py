"""Live MCP servers as real processes: listing into records, calls, timeouts, reconnects, clean shutdown."""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import datetime, timedelta

import pytest

from astra_synth.tools.mcp import McpCallError, McpSession, import_live, stdio_parameters
from astra_synth.tools.normalize import FilterConfig
from astra_synth.tools.spec import HttpTransport, ServerRecord, StdioTransport


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_time_server_has_two_tools_so_it_is_dropped_with_a_reason(time_stdio: StdioTransport) -> None:
    result = await import_live(time_stdio)
    assert result.servers == []
    [reject] = result.rejects
    assert (reject.server, reject.tool, reject.reason) == ("mcp-time", None, "too_few_tools")
    assert reject.detail == "2 usable tool(s) < 3"
    assert reject.source == "stdio: python -m mcp_server_time"


async def test_time_server_is_kept_with_a_lower_minimum(time_stdio: StdioTransport) -> None:
    result = await import_live(time_stdio, domain="time", policy=FilterConfig(min_tools=2))
    [server] = result.servers
    assert result.rejects == []
    assert server.id == "mcp-time" and server.domain == "time"
    assert server.transport == time_stdio
    assert sorted(t.name for t in server.tools) == ["convert_time", "get_current_time"]
    current = server.tool("get_current_time")
    assert current is not None
    assert current.parameters["required"] == ["timezone"]
    assert current.openai()["function"]["parameters"]["properties"]["timezone"]["type"] == "string"
    ServerRecord.model_validate_json(server.model_dump_json())  # the record round-trips


async def test_git_server_lists_its_tools_into_a_valid_record() -> None:
    transport = StdioTransport(command="python", args=["-m", "mcp_server_git"])
    result = await import_live(transport, server_id="git", domain="software")
    [server] = result.servers
    names = {t.name for t in server.tools}
    assert {"git_status", "git_log", "git_diff", "git_commit"} <= names
    assert all(t.description and t.parameters["type"] == "object" for t in server.tools)
    assert all("repo_path" in t.parameters["properties"] for t in server.tools)


async def test_real_call_returns_the_current_time_in_a_timezone(time_stdio: StdioTransport) -> None:
    async with McpSession(time_stdio) as session:
        result = await session.call("get_current_time", {"timezone": "Asia/Tokyo"})
        bad = await session.call("get_current_time", {"timezone": "Nowhere/Atlantis"})
    assert not result.is_error
    assert result.content["timezone"] == "Asia/Tokyo"
    stamp = datetime.fromisoformat(result.content["datetime"])
    assert stamp.utcoffset() == timedelta(hours=9)
    assert abs((stamp - datetime.now(stamp.tzinfo)).total_seconds()) < 120
    assert bad.is_error and "Nowhere/Atlantis" in bad.text


async def test_timeout_leaves_the_session_usable(helper_stdio: StdioTransport) -> None:
    async with McpSession(helper_stdio, call_timeout_s=0.5) as session:
        with pytest.raises(McpCallError) as caught:
            await session.call("sleep_for", {"seconds": 3})
        assert caught.value.kind == "timeout"
        assert (await session.call("echo", {"text": "still here"})).content == "still here"
        assert session.reconnects == 0


async def test_dropped_connection_reconnects_once_and_old_process_is_gone(
    helper_stdio: StdioTransport,
) -> None:
    async with McpSession(helper_stdio) as session:
        first_pid = (await session.call("process_id", {})).content
        # The crash call itself is retried once on a new connection, which it crashes too: a typed error.
        with pytest.raises(McpCallError) as caught:
            await session.call("crash", {})
        assert caught.value.kind == "unreachable"
        assert session.reconnects == 1
        # The next call finds the connection dropped again, reconnects, and succeeds.
        assert (await session.call("add_to_counter", {"amount": 2})).content == {"total": 2}
        assert session.reconnects == 2
        second_pid = (await session.call("process_id", {})).content
    assert first_pid != second_pid
    assert not _alive(first_pid) and not _alive(second_pid)


async def test_concurrent_calls_share_one_server(helper_stdio: StdioTransport) -> None:
    async with McpSession(helper_stdio) as session:
        results = await asyncio.gather(*(session.call("add_to_counter", {"amount": 1}) for _ in range(20)))
    assert sorted(r.content["total"] for r in results) == list(range(1, 21))


async def test_unstartable_server_is_an_unreachable_reject() -> None:
    transport = StdioTransport(command="/nonexistent/mcp-server")
    result = await import_live(transport, server_id="ghost")
    [reject] = result.rejects
    assert (reject.server, reject.reason) == ("ghost", "unreachable")
    with pytest.raises(McpCallError) as caught:
        async with McpSession(transport, connect_timeout_s=5):
            pass
    assert caught.value.kind == "unreachable"


async def test_http_import_and_call(helper_http: HttpTransport) -> None:
    result = await import_live(helper_http, domain="testing")
    [server] = result.servers
    assert server.id == "helper" and server.transport == helper_http
    assert {"echo", "add_to_counter", "sleep_for", "process_id", "crash"} == {t.name for t in server.tools}
    assert server.description.startswith("Test server")  # the server's instructions
    async with McpSession(helper_http) as session:
        assert (await session.call("echo", {"text": "over http"})).content == "over http"


def test_env_refs_are_read_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_TEST_TOKEN", "s3cret")
    transport = StdioTransport(
        command="python", args=["-V"], env={"TOKEN": "${ASTRA_TEST_TOKEN}", "MODE": "x"}
    )
    params = stdio_parameters(transport)
    assert params.env == {"TOKEN": "s3cret", "MODE": "x"}
    assert params.command == sys.executable
    monkeypatch.delenv("ASTRA_TEST_TOKEN")
    with pytest.raises(McpCallError, match="ASTRA_TEST_TOKEN"):
        stdio_parameters(transport)


async def test_http_headers_come_from_env_refs(
    helper_http: HttpTransport, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_header = HttpTransport(
        url=helper_http.url, headers={"Authorization": "Bearer ${ASTRA_TEST_MCP_TOKEN}"}
    )
    monkeypatch.delenv("ASTRA_TEST_MCP_TOKEN", raising=False)
    with pytest.raises(McpCallError, match="ASTRA_TEST_MCP_TOKEN"):
        async with McpSession(with_header):
            pass
    monkeypatch.setenv("ASTRA_TEST_MCP_TOKEN", "t0ken")
    async with McpSession(with_header) as session:
        assert (await session.call("echo", {"text": "authorised"})).content == "authorised"
