"""The scripted server itself: rule order, handler fallback, seeded faults, embeddings, parallelism."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import openai
import pytest

from astra_synth.llm.client import LLMCallError, LLMClient
from astra_synth.testing.scripted import (
    ScriptedLLM,
    hash_embedding,
    json_reply,
    rate_limit_reply,
    server_error_reply,
    text_reply,
    tool_call_reply,
)


def _msgs(system: str, user: str = "go") -> list[dict[str, str]]:
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


async def _contents(llm: ScriptedLLM, *conversations: list[dict[str, str]]) -> list[Any]:
    async with LLMClient(llm.endpoint(max_retries=0)) as client:
        return [(await client.chat(c, stage="t")).message["content"] for c in conversations]


async def test_rules_answer_in_order_and_the_last_reply_repeats(scripted_llm: ScriptedLLM) -> None:
    judge = scripted_llm.on(r"^You are a judge", text_reply("wrong"), text_reply("right"))
    scripted_llm.on(r"decompose", json_reply({"steps": []}))
    answers = await _contents(
        scripted_llm,
        _msgs("You are a judge"),
        _msgs("Please decompose"),
        _msgs("You are a judge"),
        _msgs("You are a judge"),
    )
    assert answers == ["wrong", '{"steps": []}', "right", "right"]
    assert judge.hits == 3


async def test_rule_on_last_message_and_callable_reply(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on(r"invalid", text_reply("fixed"), where="last")
    scripted_llm.on(r"echo", lambda body: {"echo": body["messages"][-1]["content"]})
    answers = await _contents(scripted_llm, _msgs("echo", "ping"), _msgs("echo", "your answer was invalid"))
    assert answers == ['{"echo": "ping"}', "fixed"]


async def test_unmatched_requests_fail_loudly_until_a_handler_answers(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("special", text_reply("rule"))
    with pytest.raises(LLMCallError) as info:
        await _contents(scripted_llm, _msgs("nothing matches"))
    assert info.value.status == 400 and "no scripted reply matches" in info.value.detail
    assert "nothing matches" in info.value.detail
    scripted_llm.handler = lambda body: f"handled {len(body['messages'])}"
    assert await _contents(scripted_llm, _msgs("nothing matches"), _msgs("special")) == ["handled 2", "rule"]


async def test_seeded_fault_rate_is_reproducible() -> None:
    statuses = []
    for _ in range(2):
        with ScriptedLLM(handler=lambda body: "ok") as llm:
            llm.fail_randomly(0.4, server_error_reply(), rate_limit_reply(), seed=11)
            async with LLMClient(llm.endpoint(max_retries=0)) as client:
                for i in range(20):
                    with contextlib.suppress(LLMCallError):
                        await client.chat(_msgs(str(i)), stage="t")
            statuses.append([r.status for r in llm.requests])
    assert statuses[0] == statuses[1]
    assert {429, 500, 200} <= set(statuses[0])


async def test_queued_faults_only_hit_their_path(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.handler = lambda body: "ok"
    scripted_llm.fail_next(1, server_error_reply(), path="embeddings")
    async with LLMClient(scripted_llm.endpoint(max_retries=1)) as client:
        assert (await client.chat(_msgs("a"), stage="t")).message["content"] == "ok"
        await client.embed(["x"], stage="t")
    assert [(r.path, r.status) for r in scripted_llm.requests] == [
        ("chat", 200),
        ("embeddings", 500),
        ("embeddings", 200),
    ]


async def test_plain_openai_sdk_works_including_base64_embeddings(scripted_llm: ScriptedLLM) -> None:
    """The server speaks the protocol the SDK expects, not just the subset our client uses."""
    sdk = openai.AsyncOpenAI(base_url=scripted_llm.base_url, api_key="test", max_retries=0)
    try:
        models = await sdk.models.list()
        embedded = await sdk.embeddings.create(model="scripted", input=["hello", "world"])
    finally:
        await sdk.close()
    assert [m.id for m in models.data] == ["scripted"]
    expected = hash_embedding("world", scripted_llm.embedding_dim)
    assert embedded.data[1].embedding == pytest.approx(expected, abs=1e-6)
    assert scripted_llm.requests[-1].body.get("encoding_format") == "base64"


async def test_latency_does_not_serialise_requests() -> None:
    with ScriptedLLM(handler=lambda body: "ok", latency_s=0.5) as llm:
        async with LLMClient(llm.endpoint(max_concurrency=64)) as client:
            await asyncio.gather(*(client.chat(_msgs(str(i)), stage="t") for i in range(64)))
        assert llm.peak_in_flight > 32  # serialised, it would be 1


async def test_reset_forgets_rules_faults_and_records(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("a", text_reply("x"))
    scripted_llm.fail_next(3, server_error_reply())
    scripted_llm.reset()
    scripted_llm.handler = lambda body: "after reset"
    assert scripted_llm.requests == []
    assert await _contents(scripted_llm, _msgs("a")) == ["after reset"]


def test_fail_after_breaks_the_server_mid_run(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on(".*", text_reply("ok"))
    scripted_llm.fail_after(2, server_error_reply())
    statuses = [
        httpx.post(
            f"{scripted_llm.base_url}/chat/completions",
            json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
        ).status_code
        for _ in range(4)
    ]
    assert statuses == [200, 200, 500, 500]
    assert httpx.get(f"{scripted_llm.base_url}/models").status_code == 200  # only chat is broken


async def test_streamed_requests_get_the_same_answer_as_chunks(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on(r"weather", tool_call_reply(("get_weather", {"city": "Porto"}), ("get_time", {})))
    async with openai.AsyncOpenAI(base_url=scripted_llm.base_url, api_key="x") as sdk:
        stream = await sdk.chat.completions.create(
            model="m",
            messages=_msgs("weather?"),
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
    deltas = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or []]
    assert [(d.index, d.function.name, d.function.arguments) for d in deltas if d.function] == [
        (0, "get_weather", '{"city": "Porto"}'),
        (1, "get_time", "{}"),
    ]
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    usage = chunks[-1].usage
    assert usage is not None and usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
