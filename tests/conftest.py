"""Shared fixtures."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from astra_synth.config import EndpointConfig
from astra_synth.llm.local import EmbeddedServer


@pytest.fixture(scope="session")
def embedded_endpoint() -> Iterator[EndpointConfig]:
    """One real embedded llama.cpp server (SmolLM2-135M) for the whole session; it serialises requests."""
    with EmbeddedServer() as server:
        yield server.endpoint()
