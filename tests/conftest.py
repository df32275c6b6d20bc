"""Shared fixtures."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from astra_synth.config import EndpointConfig
from astra_synth.llm.local import EmbeddedServer
from astra_synth.testing.scripted import ScriptedLLM
from astra_synth.tools.spec import HttpTransport, StdioTransport

HELPER = Path(__file__).parent / "tools" / "helper_server.py"
"""A small MCP server for tests (tools: echo, add_to_counter, sleep_for, process_id, crash)."""


@pytest.fixture(scope="session")
def embedded_endpoint() -> Iterator[EndpointConfig]:
    """One real embedded llama.cpp server (SmolLM2-135M) for the whole session; it serialises requests."""
    with EmbeddedServer() as server:
        yield server.endpoint()


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A started scripted OpenAI-compatible server (real HTTP on 127.0.0.1); script it with ``.on(...)``."""
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def scripted_endpoint(scripted_llm: ScriptedLLM) -> EndpointConfig:
    """An endpoint aimed at ``scripted_llm``, test-speed backoff; ``scripted_llm.endpoint(**kw)`` for more."""
    return scripted_llm.endpoint()


@pytest.fixture
def helper_stdio() -> StdioTransport:
    """The test helper MCP server over stdio (tools: echo, add_to_counter, sleep_for, process_id, crash)."""
    return StdioTransport(command="python", args=[str(HELPER)])


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
