"""The GRPO token loop reads hermes tool calls with the shared parser (see tests/agent/test_chat.py)."""

from __future__ import annotations

import json
from itertools import groupby
from pathlib import Path

import pytest

from astra_synth.agent.chat import Message, parse_hermes_calls
from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.testing.policy import ScriptedPolicy, golden_texts
from astra_synth.training.episodes import EpisodeConfig, EpisodeRunner, _Running
from astra_synth.training.models import load_tokenizer


def test_assistant_turn_as_the_token_loop_records_it() -> None:
    text = 'Let me check.\n<tool_call>{"name": "capital_of", "arguments": {</tool_call>'
    calls = parse_hermes_calls(text)
    message = Message(role="assistant", content="Let me check.", tool_calls=calls).to_openai()
    # A broken block is still a call (it keeps the name it opened with): the env answers it with an error
    # and precision pays for it.
    assert message["tool_calls"] == [
        {"id": "call_0", "type": "function", "function": {"name": "capital_of", "arguments": calls[0].raw}}
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


def test_scripted_episodes_splice_tool_turns_into_the_template_rendering(
    embedded_model: Path, family_arena: Arena, executor: ToolExecutor
) -> None:
    """A golden two-hop episode and a one-turn wrong answer, batched: the token stream is the chat template's
    rendering of the conversation, model tokens (exactly as emitted) are mask 1 and all tool output mask 0."""
    tokenizer = load_tokenizer(str(embedded_model))
    tokenizer.padding_side = "left"
    settings = EpisodeConfig(max_turns=4, max_new_tokens=64, max_completion_tokens=400)
    runner = EpisodeRunner(tokenizer, settings)
    texts = golden_texts(family_arena)
    assert len(texts) == 3  # two tool turns, then the answer
    golden = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    wrong = [tokenizer("I cannot tell.<|im_end|>", add_special_tokens=False)["input_ids"]]
    policy = ScriptedPolicy([golden, wrong])
    _, tools = ArenaEnv(family_arena, executor).reset()
    episodes = runner.play(policy, [(ArenaEnv(family_arena, executor), None) for _ in range(2)])
    good, bad = episodes

    assert [e.breakdown.reward for e in episodes] == [pytest.approx(1.0), 0.0]
    assert [e.arena_id for e in episodes] == [family_arena.id] * 2
    for episode in episodes:
        assert len(episode.env_mask) == len(episode.completion_ids)
        assert not episode.budget_exhausted
        rendered = tokenizer.apply_chat_template(episode.messages, tools=tools, tokenize=False)
        assert tokenizer.decode(episode.prompt_ids + episode.completion_ids) + "\n" == rendered

    model_turns = [i for i, m in enumerate(good.env_mask) if m]
    assert [good.completion_ids[i] for i in model_turns] == [t for turn in golden for t in turn]
    assert bad.completion_ids == wrong[0] and bad.env_mask == [1] * len(wrong[0])
    runs = [(m, len(list(g))) for m, g in groupby(good.env_mask)]
    assert runs[0::2] == [(1, len(turn)) for turn in golden]  # each turn exactly, tool turns between
    assert [m for m, _ in runs[1::2]] == [0, 0]
    model_text = tokenizer.decode([t for t, m in zip(good.completion_ids, good.env_mask, strict=True) if m])
    env_text = tokenizer.decode([t for t, m in zip(good.completion_ids, good.env_mask, strict=True) if not m])
    assert model_text == "".join(texts)
    outputs = [m["content"] for m in good.messages if m["role"] == "tool"]
    assert len(outputs) == 2
    for output in outputs:
        assert output in env_text and output not in model_text
    # what the model was shown before its second turn: the conversation so far, with the generation prompt
    (shown,) = policy.inputs[1]  # the wrong answer ended after turn one: one row left
    before_second = good.messages[: len(family_arena.messages) + 2]
    assert tokenizer.decode(shown) == tokenizer.apply_chat_template(
        before_second, tools=tools, tokenize=False, add_generation_prompt=True
    )


def test_a_small_completion_budget_is_flagged_as_exhausted(
    embedded_model: Path, family_arena: Arena, executor: ToolExecutor
) -> None:
    """The budget counts model and tool tokens: tool results that do not fit end the episode, and so does
    a turn cut off mid-way; both are flagged, and the mask still matches the completion."""
    tokenizer = load_tokenizer(str(embedded_model))
    golden = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in golden_texts(family_arena)]
    first = len(golden[0])
    for budget, kept in ((first + 4, first), (first - 5, first - 5)):
        runner = EpisodeRunner(tokenizer, EpisodeConfig(max_new_tokens=64, max_completion_tokens=budget))
        (episode,) = runner.play(ScriptedPolicy([golden]), [(ArenaEnv(family_arena, executor), None)])
        assert episode.budget_exhausted, budget
        assert episode.completion_ids == golden[0][:kept]
        assert episode.env_mask == [1] * kept
        assert episode.breakdown.reward < 1.0


def test_turns_whose_calls_failed_are_recorded_and_can_leave_the_loss(
    embedded_model: Path, family_arena: Arena, executor: ToolExecutor
) -> None:
    """A first call with a misnamed argument (the runtime's error), then the golden episode: the failed turn's
    token span is recorded, and ``loss_mask(skip_failed_turns=True)`` zeroes exactly its tokens."""
    tokenizer = load_tokenizer(str(embedded_model))
    golden = golden_texts(family_arena)
    (call,) = golden_turns(family_arena)[0]
    arguments = {f"wrong_{k}": v for k, v in json.loads(call["function"]["arguments"]).items()}
    mistake = (
        "<tool_call>\n"
        + json.dumps({"name": call["function"]["name"], "arguments": arguments})
        + "\n</tool_call><|im_end|>"
    )
    turns = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in [mistake, *golden]]
    settings = EpisodeConfig(max_turns=4, max_new_tokens=64, max_completion_tokens=600)
    runner = EpisodeRunner(tokenizer, settings)
    (episode,) = runner.play(ScriptedPolicy([turns]), [(ArenaEnv(family_arena, executor), None)])

    assert episode.breakdown.calls == 3 and episode.breakdown.reward == pytest.approx(0.8)  # P 2/3, R 1
    assert episode.failed_turns == [(0, len(turns[0]))]
    assert episode.loss_mask() == episode.env_mask
    skipped = episode.loss_mask(skip_failed_turns=True)
    assert skipped[: len(turns[0])] == [0] * len(turns[0])
    assert skipped[len(turns[0]) :] == episode.env_mask[len(turns[0]) :]
    kept = [t for t, m in zip(episode.completion_ids, skipped, strict=True) if m]
    assert tokenizer.decode(kept) == "".join(golden)  # the golden turns still train
