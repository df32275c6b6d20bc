"""structured_chat against scripted answers: constrain, validate, repair, re-ask, reject."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from pydantic import BaseModel, Field

from astra_synth.errors import Rejection
from astra_synth.llm.cache import ResponseCache
from astra_synth.llm.client import LLMCallError, LLMClient
from astra_synth.llm.structured import (
    CallCap,
    ReasoningTruncated,
    StructuredOutputRejected,
    parse_structured,
    structured_chat,
)
from astra_synth.testing.scripted import (
    Reply,
    ScriptedLLM,
    error_reply,
    invalid_json_reply,
    json_reply,
    length_reply,
    reasoning_overflow_reply,
    wrong_schema_reply,
)

SYSTEM = "You extract cities."
MESSAGES = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Paris has 3 museums."}]
GOOD = {"city": "Paris", "count": 3}


class CityCount(BaseModel):
    city: str = Field(max_length=40)
    count: int = Field(ge=0, le=1000)
    tags: list[str] = Field(default_factory=list, max_length=5)


async def _ask(llm: ScriptedLLM, mode: str = "openai", **kw: int) -> CityCount:
    async with LLMClient(llm.endpoint(schema_mode=mode)) as client:
        return await structured_chat(client, MESSAGES, CityCount, stage="extract", **kw)


async def test_valid_answer_in_one_call(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("extract cities", json_reply(GOOD))
    assert await _ask(scripted_llm) == CityCount(city="Paris", count=3)
    assert len(scripted_llm.requests) == 1


@pytest.mark.parametrize("mode", ["openai", "auto"])
async def test_openai_mode_sends_json_schema(scripted_llm: ScriptedLLM, mode: str) -> None:
    scripted_llm.on("extract cities", json_reply(GOOD))
    await _ask(scripted_llm, mode)
    fmt = scripted_llm.chat_requests()[0]["response_format"]
    assert fmt == {
        "type": "json_schema",
        "json_schema": {"name": "CityCount", "schema": CityCount.model_json_schema()},
    }


async def test_llama_cpp_mode_sends_json_object_with_schema(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("extract cities", json_reply(GOOD))
    await _ask(scripted_llm, "llama_cpp")
    fmt = scripted_llm.chat_requests()[0]["response_format"]
    assert fmt == {"type": "json_object", "schema": CityCount.model_json_schema()}


async def test_none_mode_puts_the_schema_in_the_system_prompt(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("extract cities", json_reply(GOOD))
    await _ask(scripted_llm, "none")
    sent = scripted_llm.chat_requests()[0]
    assert "response_format" not in sent
    system = sent["messages"][0]
    assert system["role"] == "system" and system["content"].startswith(SYSTEM)
    assert json.dumps(CityCount.model_json_schema(), separators=(",", ":")) in system["content"]
    assert sent["messages"][1:] == MESSAGES[1:]


async def test_truncated_json_is_repaired_without_a_reask(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("extract cities", Reply(content='Here you go: {"city": "Paris", "count": 3'))
    assert await _ask(scripted_llm) == CityCount(city="Paris", count=3)
    assert len(scripted_llm.requests) == 1


async def test_answer_cut_at_max_tokens_is_reasked_not_repaired(scripted_llm: ScriptedLLM) -> None:
    cut = length_reply({**GOOD, "tags": ["a", "b", "c"]})
    scripted_llm.on("extract cities", cut, json_reply(GOOD))
    assert await _ask(scripted_llm) == CityCount(city="Paris", count=3)
    first, second = scripted_llm.chat_requests()
    reask = second["messages"][-1]
    assert reask["role"] == "user" and "cut off at the token limit" in reask["content"]
    assert second["messages"][-2] == {"role": "assistant", "content": cut.content}
    assert second["messages"][: len(first["messages"])] == first["messages"]


async def test_invalid_json_is_reasked(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("extract cities", invalid_json_reply("I think the city is Paris."), json_reply(GOOD))
    assert await _ask(scripted_llm) == CityCount(city="Paris", count=3)
    assert len(scripted_llm.requests) == 2
    assert "not a JSON object" in scripted_llm.chat_requests()[1]["messages"][-1]["content"]


async def test_wrong_schema_is_reasked_with_the_validation_error(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("extract cities", json_reply({"city": "Paris", "count": "many"}), json_reply(GOOD))
    assert await _ask(scripted_llm) == CityCount(city="Paris", count=3)
    reask = scripted_llm.chat_requests()[1]["messages"][-1]["content"]
    assert "does not match the schema" in reask and "count: Input should be a valid integer" in reask


async def test_persistent_garbage_is_rejected_with_reason(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("extract cities", wrong_schema_reply())
    with pytest.raises(StructuredOutputRejected) as info:
        await _ask(scripted_llm, max_reasks=2)
    err = info.value
    assert isinstance(err, Rejection)
    assert err.reason == "structured_output_invalid" and err.attempts == 3
    assert "city: Field required" in err.detail and '"unexpected": "shape"' in err.detail
    assert len(scripted_llm.requests) == 3


async def test_transport_failure_is_not_a_rejection(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.fail_next(1, error_reply(401))
    with pytest.raises(LLMCallError):
        await _ask(scripted_llm)


async def test_reasks_replay_from_the_cache(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    """A resumed run walks the same invalid → re-ask path from the cache, with zero calls."""
    scripted_llm.on("extract cities", invalid_json_reply(), json_reply(GOOD))
    path = tmp_path / "c.sqlite"
    for _ in range(2):
        async with LLMClient(scripted_llm.endpoint(), cache=ResponseCache(path)) as client:
            result = await structured_chat(client, MESSAGES, CityCount, stage="extract")
        assert result == CityCount(city="Paris", count=3)
    assert len(scripted_llm.requests) == 2


def test_parse_structured_repairs_fenced_and_trailing_comma_json() -> None:
    raw = '```json\n{"city": "Rome", "count": 2, "tags": ["old",],}\n```'
    assert parse_structured(raw, CityCount) == CityCount(city="Rome", count=2, tags=["old"])


@pytest.mark.parametrize("opening", ["<think>\n", ""])
def test_parse_structured_skips_a_think_block_before_the_answer(opening: str) -> None:
    """Qwen3 on vLLM without a reasoning parser sends its thinking inline, drafts of JSON included (and its
    chat template may have opened the block already, so only the closing tag arrives)."""
    thinking = f'{opening}Draft: {{"city": "Pari"}} then count them: 3.\n</think>\n\n'
    assert parse_structured(thinking + json.dumps(GOOD), CityCount) == CityCount(**GOOD)
    inside = {"city": "Paris </think>", "count": 1}  # an answer is never cut at a tag inside it
    assert parse_structured(json.dumps(inside), CityCount).city == "Paris </think>"


def test_parse_structured_refuses_to_repair_a_cut_answer() -> None:
    with pytest.raises(ValueError, match="cut off"):
        parse_structured('{"city": "Rome", "count": 2', CityCount, truncated=True)
    complete = json.dumps({"city": "Rome", "count": 2})
    assert parse_structured(complete, CityCount, truncated=True).city == "Rome"


def test_parse_structured_rejects_bounds_violations() -> None:
    with pytest.raises(ValueError, match="tags"):
        parse_structured(json.dumps({"city": "R", "count": 1, "tags": ["x"] * 6}), CityCount)


def test_rejection_survives_pickling() -> None:
    err = StructuredOutputRejected("count: missing", attempts=3)
    back = pickle.loads(pickle.dumps(err))
    assert (back.reason, back.detail, back.attempts) == ("structured_output_invalid", "count: missing", 3)


async def test_call_cap_is_shared_across_requests_and_reasks(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on("extract cities", invalid_json_reply(), json_reply(GOOD))
    cap = CallCap(3)
    async with LLMClient(scripted_llm.endpoint()) as client:
        await structured_chat(client, MESSAGES, CityCount, stage="extract", cap=cap)  # 2 calls: bad, good
        await structured_chat(
            client, [*MESSAGES, {"role": "user", "content": "again"}], CityCount, stage="extract", cap=cap
        )
        with pytest.raises(Rejection) as info:
            await structured_chat(
                client, [*MESSAGES, {"role": "user", "content": "more"}], CityCount, stage="extract", cap=cap
            )
    assert info.value.reason == "llm_call_cap" and cap.used == 3
    assert len(scripted_llm.requests) == 3


async def test_reasoning_overflow_is_asked_again_with_a_larger_cap_not_told_to_be_shorter(
    scripted_llm: ScriptedLLM,
) -> None:
    scripted_llm.on(SYSTEM, reasoning_overflow_reply(), json_reply(GOOD))
    assert await _ask(scripted_llm, max_tokens=300) == CityCount(**GOOD)
    first, second = scripted_llm.chat_requests()
    assert (first["max_tokens"], second["max_tokens"]) == (300, 600)
    assert second["messages"] == first["messages"]  # no "keep it shorter" re-ask, no empty answer replayed


async def test_reasoning_overflow_every_time_is_its_own_reject_reason(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on(SYSTEM, reasoning_overflow_reply())
    with pytest.raises(ReasoningTruncated) as info:
        await _ask(scripted_llm, max_tokens=300, max_reasks=2)
    assert info.value.reason == "truncated_by_reasoning" and info.value.attempts == 3
    assert "max_tokens 1200" in info.value.detail
    assert [r["max_tokens"] for r in scripted_llm.chat_requests()] == [300, 600, 1200]
    assert isinstance(pickle.loads(pickle.dumps(info.value)), ReasoningTruncated)


async def test_reasoning_overflow_without_a_cap_is_not_repeated(scripted_llm: ScriptedLLM) -> None:
    scripted_llm.on(SYSTEM, reasoning_overflow_reply())
    with pytest.raises(ReasoningTruncated):
        await _ask(scripted_llm, max_reasks=2)
    assert len(scripted_llm.chat_requests()) == 1


async def test_reasoning_next_to_json_content_is_not_parsed(scripted_llm: ScriptedLLM) -> None:
    thought = 'The city is {"city": "Lyon"}? No: Paris, 3.'
    scripted_llm.on(SYSTEM, Reply(content=json.dumps(GOOD), reasoning_content=thought))
    assert await _ask(scripted_llm) == CityCount(**GOOD)


async def test_hidden_reasoning_that_fills_the_cap_counts_as_reasoning_overflow() -> None:
    """OpenAI reasoning models send no reasoning text, only its size in usage; the cut is still theirs."""
    with ScriptedLLM(thinking_tokens=500, openai_reasoning=True) as server:
        server.on(SYSTEM, json_reply(GOOD))
        endpoint = server.endpoint(schema_mode="openai")
        async with LLMClient(endpoint) as client:
            answer = await structured_chat(client, MESSAGES, CityCount, stage="extract", max_tokens=300)
        assert answer == CityCount(**GOOD)
        sent = [(r.status, r.body.get("max_completion_tokens")) for r in server.requests]
        assert sent == [(400, None), (400, 300), (200, 300), (200, 600)]
