"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from astra_synth.config import EndpointConfig
from astra_synth.llm.local import EmbeddedServer
from astra_synth.testing.scripted import ScriptedLLM


@pytest.fixture(scope="session")
def embedded_endpoint() -> Iterator[EndpointConfig]:
    """One real embedded llama.cpp server (SmolLM2-135M) for the whole session; it serialises requests."""
    with EmbeddedServer() as server:
        yield server.endpoint()


@pytest.fixture
def scripted_llm() -> Iterator[ScriptedLLM]:
    """A started scripted OpenAI-compatible server (real HTTP on 127.0.0.1); script it with ``.on(...)``."""
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def scripted_endpoint(scripted_llm: ScriptedLLM) -> EndpointConfig:
    """An endpoint aimed at ``scripted_llm``, test-speed backoff; ``scripted_llm.endpoint(**kw)`` for more."""
    return scripted_llm.endpoint()
