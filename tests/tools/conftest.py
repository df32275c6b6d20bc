"""Fixtures for the tool layer: real MCP servers as processes, and a guard against orphaned servers."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from astra_synth.tools.spec import StdioTransport


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
def time_stdio() -> StdioTransport:
    return StdioTransport(command="python", args=["-m", "mcp_server_time"])
