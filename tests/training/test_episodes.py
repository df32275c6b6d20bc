"""Parsing hermes tool calls out of model text: data only, broken blocks still count as calls."""

from __future__ import annotations

import json

from astra_synth.training.episodes import content_without_calls, parse_tool_calls


def test_parses_each_block_into_an_openai_tool_call() -> None:
    text = (
        "Let me check.\n"
        '<tool_call>\n{"name": "capital_of", "arguments": {"country": "Japan"}}\n</tool_call>\n'
        '<tool_call>{"name": "population_of", "arguments": "{\\"city\\": \\"Tokyo\\"}"}</tool_call>'
    )
    calls = parse_tool_calls(text)
    assert [c["function"]["name"] for c in calls] == ["capital_of", "population_of"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"country": "Japan"}
    assert json.loads(calls[1]["function"]["arguments"]) == {"city": "Tokyo"}
    assert [c["id"] for c in calls] == ["call_0", "call_1"]
    assert content_without_calls(text) == "Let me check."


def test_broken_json_becomes_a_nameless_call_and_plain_text_none() -> None:
    calls = parse_tool_calls('<tool_call>{"name": "capital_of", "arguments": {</tool_call>')
    assert len(calls) == 1 and calls[0]["function"]["name"] == ""
    assert parse_tool_calls("The answer is 42.") == []
    assert parse_tool_calls('<tool_call>["not", "an", "object"]</tool_call>')[0]["function"]["name"] == ""
