"""The GRPO token loop reads hermes tool calls with the shared parser (see tests/agent/test_chat.py)."""

from __future__ import annotations

import json
from pathlib import Path

from astra_synth.agent.chat import Message, parse_hermes_calls
from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.training.episodes import EpisodeRunner, _Running
from astra_synth.training.models import load_tokenizer


def test_assistant_turn_as_the_token_loop_records_it() -> None:
    text = 'Let me check.\n<tool_call>{"name": "capital_of", "arguments": {</tool_call>'
    calls = parse_hermes_calls(text)
    message = Message(role="assistant", content="Let me check.", tool_calls=calls).to_openai()
    # A broken block is still a call: the env answers it with an error and precision pays for it.
    assert message["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "", "arguments": calls[0].raw}}
    ]


def test_token_loop_steps_the_env_with_every_emitted_call(
    embedded_model: Path, short_arenas: list[Arena], executor: ToolExecutor
) -> None:
    """One hand-written assistant turn through the real tokenizer and sandbox: golden calls plus a broken
    block all reach ``ArenaEnv.step``; model tokens are masked 1, the rendered tool results 0."""
    tokenizer = load_tokenizer(str(embedded_model))
    runner = EpisodeRunner(tokenizer)
    arena = short_arenas[0]
    env = ArenaEnv(arena, executor)
    messages, tools = env.reset()
    prompt = tokenizer(
        tokenizer.apply_chat_template(messages, tools=tools, tokenize=False), add_special_tokens=False
    )
    episode = _Running(env=env, tools=tools, messages=messages, prompt_ids=prompt["input_ids"], draw=None)
    blocks = [
        "<tool_call>\n"
        + json.dumps({"name": c["function"]["name"], "arguments": c["function"]["arguments"]})
        + "\n</tool_call>"
        for c in golden_turns(arena)[0]
    ]
    text = "Checking.\n" + "\n".join([*blocks, '<tool_call>{"name": oops</tool_call>']) + "<|im_end|>"
    new_ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    runner._advance(episode, new_ids)
    assert not episode.done
    assert [c.ok for c in env.calls] == [True] * len(blocks) + [False]
    assert episode.messages[-1]["content"].startswith("Error: malformed tool call")
    assert episode.completion_ids[: len(new_ids)] == new_ids
    assert episode.env_mask == [1] * len(new_ids) + [0] * (len(episode.env_mask) - len(new_ids))
    assert len(episode.env_mask) > len(new_ids)
