"""The GRPO token loop reads hermes tool calls with the shared parser (see tests/agent/test_chat.py)."""

from __future__ import annotations

from astra_synth.agent.chat import Message, parse_hermes_calls


def test_assistant_turn_as_the_token_loop_records_it() -> None:
    text = 'Let me check.\n<tool_call>{"name": "capital_of", "arguments": {</tool_call>'
    calls = parse_hermes_calls(text)
    message = Message(role="assistant", content="Let me check.", tool_calls=calls).to_openai()
    # A broken block is still a call: the env answers it with an error and precision pays for it.
    assert message["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "", "arguments": calls[0].raw}}
    ]
