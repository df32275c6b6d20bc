"""``astra serve``: tool-call parsing, the embedded checkpoint answering the OpenAI client, and the server's
defences: body limit (413), context check (400), max_tokens clamp, bounded queue (429), SIGTERM
mid-generation."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from astra_synth.agent.chat import parse_openai_call, parse_openai_calls
from astra_synth.llm.local import free_port
from astra_synth.training.serve import parse_tool_calls

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather of a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def test_parse_hermes_calls_into_openai_tool_calls() -> None:
    text = 'Let me check.\n<tool_call>\n{"name": "get_weather", "arguments": {"city": "Paris"}}\n</tool_call>'
    content, calls = parse_tool_calls(text)
    assert content == "Let me check."
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Paris"}


def test_every_block_is_a_call_as_written_for_the_client_to_judge() -> None:
    text = '<tool_call>\n{"name": "rm_rf", "arguments": {}}\n</tool_call>'
    content, calls = parse_tool_calls(text)
    assert content == "" and calls[0]["function"]["name"] == "rm_rf"  # the client answers "unknown tool"
    content, calls = parse_tool_calls("<tool_call>\nnot json at all")
    assert content == "" and calls[0]["function"] == {"name": "", "arguments": "not json at all"}
    assert parse_openai_call(calls[0]).error is not None


def test_truncated_call_is_not_repaired() -> None:
    _, calls = parse_tool_calls('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Oslo"')
    assert len(calls) == 1 and parse_openai_call(calls[0]).error is not None


@contextmanager
def astra_serve(*args: str) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A real ``astra serve --model embedded`` process on a free port, up and answering; killed after."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "astra_synth.cli", "serve", "--model", "embedded", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
    )
    try:
        base = f"http://127.0.0.1:{port}/v1"
        deadline = time.monotonic() + 600
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:] if proc.stderr else ""
            try:
                if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "astra serve did not come up"
            time.sleep(1)
        yield proc, base
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def rss_mb(pid: int) -> float:
    """Resident memory of a process (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def chat(base: str, content: str, **fields: Any) -> httpx.Response:
    body = {"model": "embedded", "messages": [{"role": "user", "content": content}], **fields}
    return httpx.post(f"{base}/chat/completions", json=body, timeout=600)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_embedded_checkpoint_answers_the_openai_client_with_a_parsed_tool_call() -> None:
    with astra_serve("--max-new-tokens", "48") as (_, base):
        client = openai.OpenAI(base_url=base, api_key="x", timeout=600)
        reply = client.chat.completions.create(  # type: ignore[call-overload]  # plain dicts, not the SDK TypedDicts
            model="embedded",
            messages=[
                {"role": "system", "content": "You are a helpful assistant."},
                {"role": "user", "content": "What is the weather in Paris?"},
            ],
            tools=[WEATHER],
            tool_choice={"type": "function", "function": {"name": "get_weather"}},
            max_tokens=48,
        )
        message = reply.choices[0].message
        assert reply.choices[0].finish_reason == "tool_calls"
        assert message.tool_calls and message.tool_calls[0].function.name == "get_weather"
        # Arguments come as the model wrote them (48 tokens may cut them off): the one parser reads them,
        # keeping the forced tool's name whether or not they are whole JSON.
        [call] = parse_openai_calls([message.tool_calls[0].model_dump()])
        assert call.name == "get_weather" and (call.error is None or "'get_weather'" in call.error)
        assert reply.usage is not None and reply.usage.completion_tokens > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_oversized_requests_are_refused_fast_and_max_tokens_is_clamped() -> None:
    with astra_serve("--max-new-tokens", "8", "--context", "512") as (proc, base):
        chat(base, "Hi")  # warm: the first generation allocates what every later one reuses
        idle = rss_mb(proc.pid)
        started = time.monotonic()
        huge = chat(base, "x" * 5_000_000)
        assert time.monotonic() - started < 1.0
        assert huge.status_code == 413 and "1048576 bytes" in huge.json()["error"]["message"]
        assert rss_mb(proc.pid) < idle + 20

        long_prompt = chat(base, "word " * 2000)  # 10 kB: under the body limit, over the context
        message = long_prompt.json()["error"]["message"]
        assert long_prompt.status_code == 400 and "context is 512 tokens" in message
        assert "the prompt is" in message

        absurd = chat(base, "Hi", max_tokens=100_000_000)
        message = absurd.json()["error"]["message"]
        assert absurd.status_code == 400 and "max_tokens (100000000)" in message and "512" in message
        assert chat(base, "Hi", max_tokens="many").status_code == 400

        clamped = chat(base, "Hi", max_tokens=50)
        assert clamped.status_code == 200
        usage = clamped.json()["usage"]
        assert usage["max_tokens"] == 8 and usage["max_tokens_requested"] == 50
        assert usage["completion_tokens"] <= 8
        assert rss_mb(proc.pid) < idle + 50


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_full_queue_gets_429_and_sigterm_stops_a_generation_in_progress() -> None:
    with astra_serve("--max-new-tokens", "100000", "--max-queue", "1") as (proc, base):
        answers: dict[str, httpx.Response | Exception] = {}

        def ask(name: str) -> None:
            try:
                answers[name] = chat(base, "Count to a million.", max_tokens=4000, ignore_eos=True)
            except httpx.HTTPError as exc:
                answers[name] = exc

        running = threading.Thread(target=ask, args=("running",))
        running.start()
        time.sleep(3)  # generating now: 4000 tokens take minutes on a CPU
        waiting = threading.Thread(target=ask, args=("waiting",))
        waiting.start()
        time.sleep(1)
        full = chat(base, "Hi")
        assert full.status_code == 429 and full.headers["Retry-After"] == "5"
        assert "limit 1 waiting" in full.json()["error"]["message"]

        started = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        assert time.monotonic() - started < 10
        running.join(timeout=10)
        waiting.join(timeout=10)
        for name in ("running", "waiting"):
            answer = answers[name]
            # The request in flight is told (503); one whose connection closed first sees an HTTP error.
            assert isinstance(answer, Exception) or answer.status_code == 503, (name, answer)


def test_serving_in_process_is_an_endpoint_for_the_block(embedded_model: Path) -> None:
    """``astra.serving`` (docs/python_api.md): a checkpoint answers on a loopback endpoint inside the block,
    passes the pre-flight check there, and the same check fails loudly once the block has ended."""
    import asyncio

    import astra_synth as astra

    with astra.serving(str(embedded_model), astra.ServeConfig(max_new_tokens=4)) as endpoint:
        asyncio.run(astra.check_endpoint(endpoint))
        reply = httpx.post(
            f"{endpoint.base_url}/chat/completions",
            json={"model": endpoint.model, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 50},
            timeout=120,
        )
        assert reply.status_code == 200
        assert reply.json()["usage"]["completion_tokens"] <= 4  # the config's cap
    with pytest.raises(astra.EndpointUnavailable, match="cannot connect"):
        asyncio.run(astra.check_endpoint(endpoint))
