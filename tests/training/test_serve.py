"""``astra serve``: tool-call parsing, and the embedded checkpoint answering the OpenAI client."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

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


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_embedded_checkpoint_answers_the_openai_client_with_a_parsed_tool_call() -> None:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "astra_synth.cli",
            "serve",
            "--model",
            "embedded",
            "--port",
            str(port),
            "--max-new-tokens",
            "48",
        ],
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
        client = openai.OpenAI(base_url=base, api_key="x", timeout=600)
        reply = client.chat.completions.create(
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
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
