"""Fixtures for the tool layer: real MCP servers as processes, and a guard against orphaned servers."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from astra_synth.tools.spec import HttpTransport, StdioTransport

HELPER = Path(__file__).with_name("helper_server.py")


def child_pids() -> set[int]:
    """Processes whose parent is this test process (live or zombie: both mean a server was not reaped)."""
    me = str(os.getpid())
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[1] == me:  # fields after the name: state, ppid, ...
            found.add(int(entry.name))
    return found


@pytest.fixture(autouse=True)
def no_orphan_servers() -> Iterator[None]:
    """Every test in this folder must leave no server process behind."""
    before = child_pids()
    yield
    deadline = time.monotonic() + 5
    while (left := child_pids() - before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not left, f"server processes left running after the test: {sorted(left)}"


@pytest.fixture
def helper_stdio() -> StdioTransport:
    """The test helper MCP server over stdio (tools: echo, add_to_counter, sleep_for, process_id, crash)."""
    return StdioTransport(command="python", args=[str(HELPER)])


@pytest.fixture
def time_stdio() -> StdioTransport:
    return StdioTransport(command="python", args=["-m", "mcp_server_time"])


@pytest.fixture
def helper_http() -> Iterator[HttpTransport]:
    """The helper server over streamable HTTP, as a real process on a free port."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(HELPER), "--http", str(port)], stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/mcp"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=1)
            except urllib.error.HTTPError:
                break  # the server answers (an MCP endpoint refuses a plain GET)
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("helper HTTP server did not start") from None
                time.sleep(0.1)
            else:
                break
        yield HttpTransport(url=url)
    finally:
        proc.terminate()
        proc.wait(timeout=10)
