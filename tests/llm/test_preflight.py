"""The pre-flight request: a dead URL, a refused key or a server error fails loudly, naming the URL."""

from __future__ import annotations

import time

import pytest

from astra_synth.config import EndpointConfig
from astra_synth.llm.preflight import EndpointUnavailable, check_endpoint
from astra_synth.runs.session import RunSession
from astra_synth.testing.scripted import ScriptedLLM

DEAD = "http://127.0.0.1:9/v1"


async def test_live_endpoint_passes_without_a_chat_request(scripted_llm: ScriptedLLM) -> None:
    await check_endpoint(scripted_llm.endpoint())
    assert scripted_llm.chat_requests() == []  # GET /models only: no scripted answer is used up


async def test_dead_url_names_the_url_and_what_to_check() -> None:
    started = time.monotonic()
    with pytest.raises(EndpointUnavailable) as caught:
        await check_endpoint(EndpointConfig(base_url=DEAD, model="x"))
    assert time.monotonic() - started < 5
    message = str(caught.value)
    assert DEAD in message and "cannot connect" in message and "--base-url" in message


async def test_wrong_prefix_falls_back_to_a_chat_probe_and_says_what_to_check(
    scripted_llm: ScriptedLLM,
) -> None:
    base = scripted_llm.base_url.removesuffix("/v1")  # no /models and no /chat/completions there
    with pytest.raises(EndpointUnavailable, match=r"HTTP 404.*ends with the API prefix \(usually /v1\)"):
        await check_endpoint(scripted_llm.endpoint(base_url=base))


async def test_run_session_checks_before_anything_else() -> None:
    with pytest.raises(EndpointUnavailable, match=r"127\.0\.0\.1:9/v1"):
        async with RunSession(EndpointConfig(base_url=DEAD, model="x"), executor="forkserver"):
            pytest.fail("the session must not open")
