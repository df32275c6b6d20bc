"""Fixtures for the trajectory stages: a small tool server and a stage context on a real LLM client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from astra_synth.config import EndpointConfig
from astra_synth.llm.client import LLMClient
from astra_synth.runs.stage import StageContext
from astra_synth.tools.spec import ServerRecord, ToolSpec


def _tool(name: str, description: str, **params: str) -> ToolSpec:
    required = [p for p in params if not p.startswith("opt_")]
    return ToolSpec(
        name=name,
        description=description,
        parameters={
            "type": "object",
            "properties": {p: {"type": "string", "description": d} for p, d in params.items()},
            "required": required,
        },
    )


@pytest.fixture
def notes_server() -> ServerRecord:
    """A four-tool note-taking service: search → read → update/share is a natural chain."""
    return ServerRecord(
        id="notes",
        title="Notes",
        description="A personal note-taking service.",
        domain="productivity",
        tools=[
            _tool("search_notes", "Find notes whose text matches a query; returns note ids.", query="Words"),
            _tool("read_note", "Return the title and text of a note.", note_id="Id from search_notes"),
            _tool("update_note", "Replace the text of a note.", note_id="Note id", text="New text"),
            _tool("share_note", "Share a note with a person by email.", note_id="Note id", email="Address"),
        ],
    )


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
