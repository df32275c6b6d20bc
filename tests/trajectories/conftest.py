"""Fixtures for the trajectory stages: a small tool server and a stage context on a real LLM client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from astra_synth.config import EndpointConfig
from astra_synth.llm.client import LLMClient
from astra_synth.runs.stage import StageContext
from astra_synth.testing import scripts
from astra_synth.tools.spec import ServerRecord


@pytest.fixture
def notes_server() -> ServerRecord:
    return scripts.notes_server()


ContextFactory = Callable[[str], StageContext]


@pytest.fixture
async def llm_client(scripted_endpoint: EndpointConfig) -> AsyncIterator[LLMClient]:
    async with LLMClient(scripted_endpoint) as client:
        yield client


@pytest.fixture
def make_ctx(llm_client: LLMClient) -> ContextFactory:
    """A stage context for one item, with the scripted server as its LLM."""

    def make(stage: str, item: str = "item-1", seed: int = 7) -> StageContext:
        return StageContext(stage=stage, item_id=item, seed=seed, llm=llm_client)

    return make
