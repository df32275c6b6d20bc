"""LLMClient against the scripted server over real HTTP: retries, timeouts, cache, budget, concurrency."""

from __future__ import annotations

import asyncio
import json
import pickle
import socket
import time
from pathlib import Path

import pytest

from astra_synth.config import BudgetConfig
from astra_synth.llm.cache import ResponseCache
from astra_synth.llm.client import ChatResult, LLMCallError, LLMClient
from astra_synth.llm.ledger import BudgetExceeded, Ledger
from astra_synth.testing.scripted import (
    Reply,
    ScriptedLLM,
    error_reply,
    garbage_body_reply,
    hang_reply,
    hash_embedding,
    rate_limit_reply,
    reasoning_overflow_reply,
    server_error_reply,
    text_reply,
    tool_call_reply,
)

USER = [{"role": "user", "content": "hello"}]


def _ask(i: int) -> list[dict[str, str]]:
    return [{"role": "user", "content": f"question {i}"}]


async def test_plain_chat_returns_assistant_message_and_usage(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("hello", text_reply("hi there", reasoning="thinking"))
    ledger = Ledger()
    async with LLMClient(scripted_llm.endpoint(), ledger=ledger) as client:
        result = await client.chat(USER, stage="greet", max_tokens=16, seed=7)
    assert result.message == {"role": "assistant", "content": "hi there", "reasoning_content": "thinking"}
    assert result.finish_reason == "stop" and not result.cached
    assert result.usage.prompt_tokens > 0 and result.usage.completion_tokens > 0
    sent = scripted_llm.chat_requests()[0]
    assert sent["max_tokens"] == 16 and sent["seed"] == 7 and "top_p" not in sent
    usage = ledger.by_stage()["greet"]
    assert usage.calls == 1 and usage.prompt_tokens == result.usage.prompt_tokens


async def test_429_is_retried_after_the_servers_retry_after(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail_next(2, rate_limit_reply(retry_after_s=0.3))
    scripted_llm.on("hello", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint(backoff_max_s=0.01)) as client:
        started = time.monotonic()
        result = await client.chat(USER, stage="s")
        elapsed = time.monotonic() - started
    assert result.message["content"] == "ok"
    assert [r.status for r in scripted_llm.requests] == [429, 429, 200]
    assert client.calls_made == 3
    assert elapsed >= 0.6  # two waits of Retry-After, although the own backoff is capped at 10 ms


async def test_retry_after_ms_is_honoured(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail_next(1, Reply(status=503, headers={"retry-after-ms": "400"}))
    scripted_llm.on("hello", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint(backoff_max_s=0.01)) as client:
        started = time.monotonic()
        await client.chat(USER, stage="s")
    assert time.monotonic() - started >= 0.4


async def test_a_body_that_is_not_an_openai_response_is_a_typed_error(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail_next(1, garbage_body_reply())
    scripted_llm.fail_next(5, Reply(raw_body='{"choices": []}'))
    async with LLMClient(scripted_llm.endpoint(max_retries=3)) as client:
        with pytest.raises(LLMCallError) as info:
            await client.chat(USER, stage="s")
    assert (info.value.kind, info.value.attempts) == ("bad_response", 4)
    assert "choices" in info.value.detail
    scripted_llm.on("hello", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint(max_retries=3)) as client:
        assert (await client.chat(USER, stage="s")).message["content"] == "ok"  # 2 garbage answers, then ok


async def test_500_then_success(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail_next(1, server_error_reply())
    scripted_llm.on("hello", text_reply("ok"))
    ledger = Ledger()
    async with LLMClient(scripted_llm.endpoint(), ledger=ledger) as client:
        result = await client.chat(USER, stage="s")
    assert result.message["content"] == "ok"
    assert [r.status for r in scripted_llm.requests] == [500, 200]
    assert ledger.by_stage()["s"].failed_calls == 0


async def test_hang_past_the_timeout_is_retried(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail_next(1, hang_reply(60))
    scripted_llm.on("hello", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint(timeout_s=2.0)) as client:
        started = time.monotonic()
        result = await client.chat(USER, stage="s")
        elapsed = time.monotonic() - started
    assert result.message["content"] == "ok"
    assert len(scripted_llm.requests) == 2
    assert 2.0 <= elapsed < 30


async def test_exhausted_retries_raise_a_typed_error(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail_next(10, error_reply(503))
    ledger = Ledger()
    async with LLMClient(scripted_llm.endpoint(max_retries=2), ledger=ledger) as client:
        with pytest.raises(LLMCallError) as info:
            await client.chat(USER, stage="s")
    err = info.value
    assert (err.kind, err.status, err.attempts) == ("server_error", 503, 3)
    assert "scripted HTTP 503" in err.detail
    assert len(scripted_llm.requests) == 3
    assert ledger.by_stage()["s"].failed_calls == 1


@pytest.mark.parametrize("status", [408, 409, 502, 503, 504])
async def test_retryable_statuses(scripted_llm: ScriptedLLM, status: int) -> None:
    scripted_llm.fail_next(1, error_reply(status))
    scripted_llm.on("hello", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint()) as client:
        assert (await client.chat(USER, stage="s")).message["content"] == "ok"
    assert [r.status for r in scripted_llm.requests] == [status, 200]


async def test_400_is_not_retried(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail_next(1, error_reply(400))
    async with LLMClient(scripted_llm.endpoint(max_retries=5)) as client:
        with pytest.raises(LLMCallError) as info:
            await client.chat(USER, stage="s")
    assert (info.value.kind, info.value.status, info.value.attempts) == ("client_error", 400, 1)
    assert len(scripted_llm.requests) == 1


async def test_unreachable_server_is_a_connection_error(scripted_llm: ScriptedLLM) -> None:
    with socket.socket() as sock:  # a port that was free a moment ago and has no listener now
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    endpoint = scripted_llm.endpoint(base_url=f"http://127.0.0.1:{port}/v1", max_retries=1)
    async with LLMClient(endpoint) as client:
        with pytest.raises(LLMCallError) as info:
            await client.chat(USER, stage="s")
    assert (info.value.kind, info.value.attempts) == ("connection", 2)


async def test_tool_calls_come_back_with_json_string_arguments(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("weather", tool_call_reply(("get_weather", {"city": "Paris", "days": 2})))
    tools = [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
            },
        }
    ]
    async with LLMClient(scripted_llm.endpoint()) as client:
        result = await client.chat(
            [{"role": "user", "content": "weather in Paris?"}], stage="s", tools=tools, tool_choice="auto"
        )
    assert result.finish_reason == "tool_calls"
    (call,) = result.message["tool_calls"]
    assert call["type"] == "function" and call["function"]["name"] == "get_weather"
    assert isinstance(call["function"]["arguments"], str)
    assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "days": 2}
    sent = scripted_llm.chat_requests()[0]
    assert sent["tools"] == tools and sent["tool_choice"] == "auto"


async def test_concurrency_limit_holds_at_the_server(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.latency_s = 0.1
    scripted_llm.on("question", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint(max_concurrency=3)) as client:
        results = await asyncio.gather(*(client.chat(_ask(i), stage="s") for i in range(12)))
    assert len(results) == 12
    assert scripted_llm.peak_in_flight == 3  # the cap is reached and never passed


async def test_a_high_cap_is_spread_over_pools_and_still_holds(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.latency_s = 0.5
    scripted_llm.on("question", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint(max_concurrency=40)) as client:
        results = await asyncio.gather(*(client.chat(_ask(i), stage="s") for i in range(100)))
    assert len(results) == 100
    assert 8 < scripted_llm.peak_in_flight <= 40  # more than one pool of 8 carries requests; the cap holds


async def test_budget_cap_stops_before_sending(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("question", text_reply("ok"))
    ledger = Ledger(BudgetConfig(max_calls=2))
    async with LLMClient(scripted_llm.endpoint(), ledger=ledger) as client:
        await client.chat(_ask(1), stage="s")
        await client.chat(_ask(2), stage="s")
        with pytest.raises(BudgetExceeded):
            await client.chat(_ask(3), stage="s")
    assert len(scripted_llm.requests) == 2


async def test_concurrent_calls_cannot_overshoot_the_call_cap(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.latency_s = 0.1
    scripted_llm.on("question", text_reply("ok"))
    ledger = Ledger(BudgetConfig(max_calls=5))
    async with LLMClient(scripted_llm.endpoint(max_concurrency=8), ledger=ledger) as client:
        outcomes = await asyncio.gather(
            *(client.chat(_ask(i), stage="s") for i in range(20)), return_exceptions=True
        )
    assert sum(isinstance(o, ChatResult) for o in outcomes) == 5
    assert sum(isinstance(o, BudgetExceeded) for o in outcomes) == 15
    assert len(scripted_llm.requests) == 5 and ledger.total().calls == 5


async def test_cost_uses_the_endpoints_prices(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("hello", text_reply("ok"))
    ledger = Ledger(BudgetConfig(max_cost_usd=1e-9))
    endpoint = scripted_llm.endpoint(usd_per_1k_prompt_tokens=2.0, usd_per_1k_completion_tokens=10.0)
    async with LLMClient(endpoint, ledger=ledger) as client:
        result = await client.chat(USER, stage="s")
        with pytest.raises(BudgetExceeded, match="cost budget"):
            await client.chat(_ask(9), stage="s")
    expected = (result.usage.prompt_tokens * 2.0 + result.usage.completion_tokens * 10.0) / 1000
    assert ledger.total().cost_usd == pytest.approx(expected)
    assert len(scripted_llm.requests) == 1


async def test_cache_hit_makes_no_call_even_from_a_new_client(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    scripted_llm.on("hello", text_reply("cached answer"))
    path = tmp_path / "llm.sqlite"
    ledger = Ledger()
    async with LLMClient(scripted_llm.endpoint(), ledger=ledger, cache=ResponseCache(path)) as client:
        first = await client.chat(USER, stage="s")
        again = await client.chat(USER, stage="s")
    async with LLMClient(scripted_llm.endpoint(), cache=ResponseCache(path)) as fresh:
        reopened = await fresh.chat(USER, stage="s")
    assert len(scripted_llm.requests) == 1 and fresh.calls_made == 0
    assert not first.cached and again.cached and reopened.cached
    for hit in (again, reopened):
        assert hit.model_dump(exclude={"latency_s", "cached"}) == first.model_dump(
            exclude={"latency_s", "cached"}
        )
    assert ledger.by_stage()["s"].cached_calls == 1 and ledger.by_stage()["s"].calls == 1


async def test_sample_index_and_params_change_the_key(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.on("hello", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint(), cache=ResponseCache(tmp_path / "c.sqlite")) as client:
        await client.chat(USER, stage="s", temperature=0.7, sample_index=0)
        await client.chat(USER, stage="s", temperature=0.7, sample_index=1)
        await client.chat(USER, stage="s", temperature=0.7, sample_index=1)
        await client.chat(USER, stage="s", temperature=0.8, sample_index=1)
    assert len(scripted_llm.requests) == 3
    assert all("sample_index" not in body for body in scripted_llm.chat_requests())


async def test_embeddings_in_order_and_cached(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    ledger = Ledger()
    cache = ResponseCache(tmp_path / "c.sqlite")
    async with LLMClient(scripted_llm.endpoint(), ledger=ledger, cache=cache) as client:
        vectors = await client.embed(["alpha", "beta", "alpha"], stage="emb")
        again = await client.embed(["beta", "alpha"], stage="emb")
        mixed = await client.embed(["gamma", "alpha"], stage="emb")
        assert await client.embed([], stage="emb") == []
    dim = scripted_llm.embedding_dim
    assert vectors == [
        hash_embedding("alpha", dim),
        hash_embedding("beta", dim),
        hash_embedding("alpha", dim),
    ]
    assert again == [vectors[1], vectors[0]]
    assert mixed == [hash_embedding("gamma", dim), vectors[0]]
    sent = [r.body["input"] for r in scripted_llm.requests]
    assert sent == [["alpha", "beta"], ["gamma"]]  # duplicates and cached texts are never sent
    usage = ledger.by_stage()["emb"]
    assert usage.calls == 2 and usage.cached_calls == 1


async def test_large_embedding_inputs_are_split_into_batches(scripted_llm: ScriptedLLM) -> None:
    texts = [f"doc {i}" for i in range(300)]
    async with LLMClient(scripted_llm.endpoint()) as client:
        vectors = await client.embed(texts, stage="emb")
    assert vectors == [hash_embedding(t, scripted_llm.embedding_dim) for t in texts]
    assert sorted(len(r.body["input"]) for r in scripted_llm.requests) == [44, 128, 128]


async def test_every_request_ends_in_a_result_or_a_typed_error(scripted_llm: ScriptedLLM) -> None:
    """Under a storm of seeded faults nothing is lost: each call returns or raises LLMCallError."""
    scripted_llm.fail_randomly(
        0.5, server_error_reply(), rate_limit_reply(0.01), error_reply(400), hang_reply(30), seed=3
    )
    scripted_llm.on("question", text_reply("ok"))
    endpoint = scripted_llm.endpoint(max_retries=1, timeout_s=1.0, max_concurrency=16)
    async with LLMClient(endpoint) as client:
        outcomes = await asyncio.gather(
            *(client.chat(_ask(i), stage="s") for i in range(40)), return_exceptions=True
        )
    assert all(isinstance(o, ChatResult | LLMCallError) for o in outcomes), outcomes
    errors = [o for o in outcomes if isinstance(o, LLMCallError)]
    assert 0 < len(errors) < 40
    assert {e.kind for e in errors} <= {"server_error", "rate_limited", "client_error", "timeout"}
    # A 400 ends the call at once; any other fault is retried once (max_retries=1) before giving up.
    assert all(e.attempts == 2 for e in errors if e.kind != "client_error")
    assert all(e.attempts in (1, 2) for e in errors)
    # On a loaded machine an attempt can time out before the server has read it, never the reverse.
    assert len(scripted_llm.requests) <= client.calls_made


async def test_identical_requests_in_flight_are_sent_once(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.latency_s = 0.2
    scripted_llm.on("hello", text_reply("shared"))
    ledger = Ledger()
    async with LLMClient(scripted_llm.endpoint(), ledger=ledger) as client:
        results = await asyncio.gather(*(client.chat(USER, stage="s") for _ in range(5)))
    assert len(scripted_llm.requests) == 1
    assert {r.message["content"] for r in results} == {"shared"}
    assert sorted(r.cached for r in results) == [False, True, True, True, True]
    assert (ledger.by_stage()["s"].calls, ledger.by_stage()["s"].cached_calls) == (1, 4)


async def test_a_shared_failure_reaches_every_twin(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.latency_s = 0.1
    scripted_llm.fail_next(1, error_reply(422))
    async with LLMClient(scripted_llm.endpoint()) as client:
        outcomes = await asyncio.gather(
            *(client.chat(USER, stage="s") for _ in range(3)), return_exceptions=True
        )
    assert [type(o) for o in outcomes] == [LLMCallError] * 3
    assert len(scripted_llm.requests) == 1


async def test_a_cancelled_leader_does_not_cancel_its_twins(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.latency_s = 1.0
    scripted_llm.on("hello", text_reply("ok"))
    async with LLMClient(scripted_llm.endpoint()) as client:
        leader = asyncio.create_task(client.chat(USER, stage="s"))
        await asyncio.sleep(0.05)
        twin = asyncio.create_task(client.chat(USER, stage="s"))
        await asyncio.sleep(0.05)
        leader.cancel()
        result = await twin
    assert result.message["content"] == "ok" and not result.cached
    assert leader.cancelled()


def test_call_error_survives_pickling() -> None:
    err = LLMCallError("rate_limited", status=429, detail="slow down", attempts=4)
    back = pickle.loads(pickle.dumps(err))
    assert (back.kind, back.status, back.detail, back.attempts) == ("rate_limited", 429, "slow down", 4)
    assert str(back) == str(err)


def test_endpoint_without_base_url_is_refused(scripted_llm: ScriptedLLM) -> None:
    with pytest.raises(ValueError, match="base_url"):
        LLMClient(scripted_llm.endpoint(base_url=None))


# --- thinking models and endpoints that want another request form -------------------------------------------


async def test_think_block_in_content_moves_to_reasoning(scripted_llm: ScriptedLLM) -> None:
    """A server without a reasoning parser sends Qwen3's thoughts inside content: only the answer stays."""
    scripted_llm.on("hello", text_reply('<think>\nThe user greets me.\n</think>\n\n{"a": 1}'))
    scripted_llm.on("tail", text_reply('Prompt opened the block.</think>{"a": 2}'))
    scripted_llm.on("cut", Reply(content="<think>still thinking", finish_reason="length"))
    async with LLMClient(scripted_llm.endpoint()) as client:
        closed = await client.chat(USER, stage="s")
        tail = await client.chat([{"role": "user", "content": "tail"}], stage="s")
        cut = await client.chat([{"role": "user", "content": "cut"}], stage="s")
    assert closed.message["content"] == '{"a": 1}'
    assert closed.message["reasoning_content"] == "The user greets me."
    assert tail.message == {
        "role": "assistant",
        "content": '{"a": 2}',
        "reasoning_content": "Prompt opened the block.",
    }
    assert cut.message["content"] == "" and cut.cut_while_reasoning


async def test_reasoning_is_not_sent_back(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("hello", text_reply("ok"))
    history = [*USER, {"role": "assistant", "content": "hi", "reasoning_content": "hm", "reasoning": "hm"}]
    async with LLMClient(scripted_llm.endpoint()) as client:
        await client.chat([*history, {"role": "user", "content": "again"}], stage="s")
    sent = scripted_llm.chat_requests()[0]["messages"][1]
    assert sent == {"role": "assistant", "content": "hi"}


async def test_extra_body_and_thinking_go_into_every_request(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("hello", text_reply("ok"))
    extra = {"top_k": 20, "chat_template_kwargs": {"custom": 1}}
    async with LLMClient(scripted_llm.endpoint(extra_body=extra, thinking="off")) as client:
        await client.chat(USER, stage="s", max_tokens=100)
    async with LLMClient(scripted_llm.endpoint(thinking="on")) as client:
        await client.chat(USER, stage="s", max_tokens=100)
    off, on = scripted_llm.chat_requests()
    assert off["top_k"] == 20 and off["max_tokens"] == 100
    assert off["chat_template_kwargs"] == {"enable_thinking": False, "custom": 1}
    assert on["chat_template_kwargs"] == {"enable_thinking": True}
    assert on["max_tokens"] == 100 + 4096  # the reasoning allowance comes on top of the stage's cap


async def test_thinking_is_part_of_the_cache_key(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.on("hello", text_reply("ok"))
    cache = ResponseCache(tmp_path / "c.sqlite")
    for thinking in ("on", "off", "on"):
        async with LLMClient(scripted_llm.endpoint(thinking=thinking), cache=cache) as client:
            await client.chat(USER, stage="s")
    cache.close()
    assert len(scripted_llm.chat_requests()) == 2


async def test_max_completion_tokens_after_the_endpoint_refuses_max_tokens(scripted_llm: ScriptedLLM) -> None:
    """OpenAI reasoning models answer 400 to max_tokens and to a temperature: switch once, for good."""
    refusal = (
        "Unsupported parameter: 'max_tokens' is not supported with this model. "
        "Use 'max_completion_tokens' instead."
    )
    temperature = (
        "Unsupported value: 'temperature' does not support 0.0 with this model. "
        "Only the default (1) value is supported."
    )

    def answer(body: dict[str, object]) -> Reply:
        if "max_tokens" in body:
            return Reply(status=400, content=refusal)
        if "temperature" in body:
            return Reply(status=400, content=temperature)
        return text_reply("ok")

    scripted_llm.on("question", answer)
    ledger = Ledger()
    async with LLMClient(scripted_llm.endpoint(), ledger=ledger) as client:
        first = await client.chat(_ask(1), stage="s", max_tokens=50, temperature=0.0)
        second = await client.chat(_ask(2), stage="s", max_tokens=60, temperature=0.0)
    assert first.message["content"] == second.message["content"] == "ok"
    statuses = [r.status for r in scripted_llm.requests]
    assert statuses == [400, 400, 200, 200]  # the second request went out in the accepted form at once
    last = scripted_llm.chat_requests()[-1]
    assert last["max_completion_tokens"] == 60 and "max_tokens" not in last and "temperature" not in last
    assert ledger.by_stage()["s"].failed_calls == 2


async def test_configured_request_form_needs_no_refusal(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("hello", text_reply("ok"))
    endpoint = scripted_llm.endpoint(token_limit_param="max_completion_tokens", temperature_param="omit")
    async with LLMClient(endpoint) as client:
        await client.chat(USER, stage="s", max_tokens=10, temperature=0.7, top_p=0.9)
    [sent] = scripted_llm.chat_requests()
    assert sent["max_completion_tokens"] == 10
    assert not {"max_tokens", "temperature", "top_p"} & set(sent)


async def test_another_400_is_not_adapted(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("hello", Reply(status=400, content="max_tokens is too large: 99999"))
    async with LLMClient(scripted_llm.endpoint()) as client:
        with pytest.raises(LLMCallError) as info:
            await client.chat(USER, stage="s", max_tokens=99999)
    assert info.value.status == 400 and len(scripted_llm.chat_requests()) == 1


async def test_the_ledger_counts_calls_cut_off_while_reasoning(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("hello", reasoning_overflow_reply(), text_reply("ok"))
    ledger = Ledger()
    async with LLMClient(scripted_llm.endpoint(), ledger=ledger) as client:
        await client.chat(USER, stage="s", max_tokens=10)
        await client.chat(USER, stage="s", max_tokens=20)
    usage = ledger.by_stage()["s"]
    assert (usage.calls, usage.reasoning_cut_calls) == (2, 1)
