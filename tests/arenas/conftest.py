"""Fixtures for arena tests: a real sandbox executor, the sample arenas, and small arenas built in a test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from astra_synth.arenas.records import Arena, ToolSource, read_arenas
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"

ArenaFactory = Callable[..., Arena]


@pytest.fixture(scope="session")
def executor() -> Iterator[ToolExecutor]:
    """The default local sandbox (the fork server where built, else the subprocess baseline)."""
    with get_executor("forkserver") as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def sample_arenas() -> dict[str, Arena]:
    return {a.id: a for a in read_arenas(SAMPLE)}


def _schema(name: str, properties: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"Test tool {name}.",
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


def build_arena(
    source: str,
    name: str,
    properties: dict[str, Any],
    arguments: dict[str, Any],
    answer: str,
    required: list[str] | None = None,
) -> Arena:
    """A single-hop arena around one tool: the smallest thing the runtime and the battery accept."""
    return Arena.model_validate(
        {
            "id": f"test-{name}",
            "language": "en",
            "domain": "testing",
            "scenario_type": "single-hop",
            "messages": [{"role": "user", "content": f"Use {name}."}],
            "tools": [_schema(name, properties, list(properties) if required is None else required)],
            "tool_sources": {name: ToolSource.of(source, name).model_dump()},
            "subtasks": [
                {
                    "id": "s1",
                    "question": f"What does {name} say?",
                    "answer": answer,
                    "hop_level": 1,
                    "tool": name,
                    "golden_call": {"name": name, "arguments": arguments},
                }
            ],
            "final_answer": answer,
            "provenance": {"method": "hand-written", "licence": "Apache-2.0"},
        }
    )


@pytest.fixture
def make_arena() -> ArenaFactory:
    return build_arena
