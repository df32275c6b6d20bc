"""The one tool-call parser: OpenAI ``tool_calls`` and hermes ``<tool_call>`` text, malformed calls kept."""

from __future__ import annotations

import json

from astra_synth.agent.chat import (
    Message,
    ToolCall,
    content_without_calls,
    parse_hermes_calls,
    parse_openai_call,
    parse_openai_calls,
    unique_call_ids,
)


def _openai(name: object, arguments: object) -> dict[str, object]:
    return {"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}


def test_openai_arguments_as_json_string_or_dict_are_data() -> None:
    assert parse_openai_call(_openai("f", '{"country": "Peru"}')) == ToolCall(
        id="c1", name="f", arguments={"country": "Peru"}, raw='{"country": "Peru"}'
    )
    assert parse_openai_call(_openai("f", {"a": 1})).arguments == {"a": 1}
    for empty in ("", "  ", None):
        call = parse_openai_call(_openai("f", empty))
        assert call.arguments == {} and call.error is None
    assert parse_openai_calls(None) == [] and parse_openai_calls([]) == []


def test_openai_malformed_calls_are_kept_with_an_error() -> None:
    code = parse_openai_call(_openai("f", "__import__('os').system('true')"))
    assert code.name == "f" and code.arguments == {} and "not valid JSON" in (code.error or "")
    assert code.raw == "__import__('os').system('true')"  # kept as written, never evaluated or repaired
    listed = parse_openai_call(_openai("f", "[1, 2]"))
    assert "must be a JSON object, got list" in (listed.error or "")
    for nameless in (_openai("", "{}"), _openai(None, "{}"), {"id": "c9", "type": "function"}, "text"):
        call = parse_openai_call(nameless)
        assert call.name == "" and "malformed tool call" in (call.error or "")
    assert [c.id for c in parse_openai_calls([{"id": "c9"}, "text"])] == ["c9", ""]


def test_hermes_blocks_parse_like_openai_calls() -> None:
    text = (
        "Let me check.\n"
        '<tool_call>\n{"name": "capital_of", "arguments": {"country": "Japan"}}\n</tool_call>\n'
        '<tool_call>{"name": "population_of", "arguments": "{\\"city\\": \\"Tokyo\\"}"}</tool_call>\n'
        '<tool_call>{"name": "now"}</tool_call>'
    )
    calls = parse_hermes_calls(text)
    assert [(c.id, c.name, c.arguments) for c in calls] == [
        ("call_0", "capital_of", {"country": "Japan"}),
        ("call_1", "population_of", {"city": "Tokyo"}),
        ("call_2", "now", {}),
    ]
    assert all(c.error is None for c in calls)
    assert content_without_calls(text) == "Let me check."
    assert parse_hermes_calls("The answer is 42.") == []


def test_hermes_malformed_blocks_are_kept_with_an_error() -> None:
    broken, listed, nameless, bad_args, not_object, cut = parse_hermes_calls(
        '<tool_call>{"name": "capital_of", "arguments": {</tool_call>'
        '<tool_call>["not", "an", "object"]</tool_call>'
        '<tool_call>{"arguments": {}}</tool_call>'
        '<tool_call>{"name": "f", "arguments": "{bad"}</tool_call>'
        '<tool_call>{"name": "f", "arguments": 3}</tool_call>'
        '<tool_call>{"name": "f", "arguments": {"x": '
    )
    assert broken.name == "capital_of" and broken.raw == "{" and "not valid JSON" in (broken.error or "")
    assert listed.name == nameless.name == "" and "malformed tool call" in (listed.error or "")
    assert "malformed tool call" in (nameless.error or "")
    assert bad_args.name == "f" and "not valid JSON" in (bad_args.error or "")
    assert not_object.name == "f" and "must be a JSON object, got int" in (not_object.error or "")
    assert cut.name == "f" and cut.raw == '{"x":' and cut.error  # cut off at the end: emitted, so kept


def test_malformed_calls_survive_the_openai_form_unchanged() -> None:
    """A server emits hermes calls as OpenAI calls; the client's parser must reach the same verdict."""
    text = (
        '<tool_call>{"name": "f", "arguments": [1]}</tool_call><tool_call>{oops</tool_call>'
        '<tool_call>{"name": "f", "arguments": {"x": "é"}}</tool_call>'
    )
    for call in parse_hermes_calls(text):
        again = parse_openai_call(call.to_openai())
        assert (again.name, again.arguments, again.error is None) == (
            call.name,
            call.arguments,
            call.error is None,
        )
    ok = parse_hermes_calls(text)[2].to_openai()
    assert json.loads(ok["function"]["arguments"]) == {"x": "é"}


def test_message_round_trip_and_unique_ids() -> None:
    sent = {
        "role": "assistant",
        "content": None,
        "reasoning_content": "think",
        "tool_calls": [_openai("f", '{"a": 1}'), _openai("g", "{}")],
    }
    message = Message.from_openai(sent)
    assert [c.name for c in message.tool_calls] == ["f", "g"] and message.reasoning_content == "think"
    assert Message.from_openai(message.to_openai()) == message
    assert Message(role="tool", tool_call_id="c1", content="x").to_openai() == {
        "role": "tool",
        "content": "x",
        "tool_call_id": "c1",
    }
    seen: set[str] = set()
    first = unique_call_ids(message.tool_calls, seen, 1)
    assert [c.id for c in first] == ["c1", "call_1_1"]  # a repeated id within the turn is replaced
    assert [c.id for c in unique_call_ids(message.tool_calls, seen, 2)] == ["call_2_0", "call_2_1"]


def test_a_hermes_block_cut_off_in_its_arguments_keeps_its_name() -> None:
    """The token limit cut the block after its name: still malformed (nothing repaired), but the error names
    the tool and the arguments stay as written, so the model learns which call it broke."""
    [call] = parse_hermes_calls('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Par')
    assert call.name == "get_weather" and call.arguments == {}
    assert call.raw == '{"city": "Par' and call.error is not None and "'get_weather'" in call.error
    assert call.to_openai()["function"] == {"name": "get_weather", "arguments": '{"city": "Par'}
    [nameless] = parse_hermes_calls('<tool_call>{"nam')
    assert nameless.name == "" and nameless.raw == '{"nam' and nameless.error is not None
