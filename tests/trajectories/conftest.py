"""Fixtures for the trajectory stages: a small tool server and a stage context on a real LLM client."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from astra_synth.config import EndpointConfig
from astra_synth.llm.client import LLMClient
from astra_synth.runs.stage import StageContext
from astra_synth.tools.spec import ServerRecord, ToolSpec
from astra_synth.trajectories.judge import DIMENSIONS, DimensionResult, JudgedTrajectory, JudgeReport
from astra_synth.trajectories.records import Rating, Task, TaskScores, Trajectory


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


def make_notes_server() -> ServerRecord:
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


@pytest.fixture
def notes_server() -> ServerRecord:
    return make_notes_server()


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


def _call(call_id: str, name: str, args: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def make_trajectory(
    server: ServerRecord, final: str = "Your Lisbon note says: book the tram tour."
) -> Trajectory:
    messages = [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What does my note about Lisbon say?"},
        {
            "role": "assistant",
            "content": "I'll search.",
            "tool_calls": [_call("c1", "search_notes", '{"query": "Lisbon"}')],
        },
        {"role": "tool", "tool_call_id": "c1", "content": '["n7"]'},
        {"role": "assistant", "content": None, "tool_calls": [_call("c2", "read_note", '{"note_id": "n7"}')]},
        {
            "role": "tool",
            "tool_call_id": "c2",
            "content": '{"title": "Lisbon", "text": "book the tram tour"}',
        },
        {"role": "assistant", "content": final},
    ]
    task = Task(
        server=server,
        mode="chain",
        question=messages[1]["content"],
        target_tools=["search_notes", "read_note"],
        chain=["search_notes", "read_note"],
        chain_origin="walk",
    )
    return Trajectory(
        task=task,
        messages=messages,
        tools=[t.openai() for t in server.tools],
        status="completed",
        llm_calls=3,
        tool_calls=2,
    )


def make_judged(
    server: ServerRecord, final: str = "Your Lisbon note says: book the tram tour."
) -> JudgedTrajectory:
    """A judged trajectory as the export receives it: every score set, one dimension not applicable."""
    trajectory = make_trajectory(server, final)
    trajectory.messages[4]["reasoning_content"] = "The search returned n7; read it."
    trajectory.messages[2]["tool_calls"][0]["function"]["arguments"] = {"query": "Lisbon"}  # an object
    rating = Rating(score=4, level="good")
    task = trajectory.task.model_copy(
        update={"scores": TaskScores(**dict.fromkeys(TaskScores.model_fields, rating))}
    )
    dims = {d: DimensionResult(status="scored", score=1.0) for d in DIMENSIONS}
    dims["tool_context_planning"] = DimensionResult(status="not_applicable")
    judge = JudgeReport(dimensions=dims, overall=1.0, threshold=0.8)
    return JudgedTrajectory(**trajectory.model_dump(exclude={"task"}), task=task, judge=judge)
