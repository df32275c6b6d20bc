"""Augmentation: original once + variations per mode, personas from the shipped file, failures tolerated."""

from __future__ import annotations

from pathlib import Path

import pytest

from astra_synth.errors import InputError
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.augment import AugmentConfig, AugmentStage, load_personas
from astra_synth.trajectories.records import Task

from .conftest import ContextFactory

PERSONAS = Path(__file__).resolve().parents[2] / "examples" / "personas.jsonl"


def _task(server: ServerRecord) -> Task:
    return Task(
        server=server,
        mode="chain",
        question="Find my note about Lisbon and share it with ann@example.org.",
        target_tools=["search_notes", "share_note"],
        chain=["search_notes", "share_note"],
        chain_origin="walk",
    )


def _variations(*questions: str) -> dict[str, object]:
    return {"variations": [{"note": "n", "question": q} for q in questions]}


def test_shipped_personas_load() -> None:
    personas = load_personas(PERSONAS)
    assert len(personas) >= 10 and len({p.id for p in personas}) == len(personas)
    assert "Skills:" in personas[0].render()


def test_bad_persona_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "p.jsonl"
    bad.write_text('{"id": "a", "occupation": "x"}\n{"id": "b"}\n')
    with pytest.raises(InputError, match=r"p\.jsonl:2"):
        load_personas(bad)


async def test_original_once_plus_variations_per_mode(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on("completely different situations", json_reply(_variations("Find my recipe note", "d2")))
    scripted_llm.on("harder versions", json_reply(_variations("c1 by Friday", "use share_note now")))
    scripted_llm.on("as this person would write it", json_reply(_variations("p1", "p2", "p3")))
    stage = AugmentStage(AugmentConfig(personas=PERSONAS))
    out = await stage.process(_task(notes_server), make_ctx("augment"))
    assert out[0] == _task(notes_server)
    got = [(t.augmentation, t.question) for t in out[1:]]
    # The second "complicate" variation names a tool; the third persona variation is beyond the count.
    assert got == [
        ("diverse", "Find my recipe note"),
        ("diverse", "d2"),
        ("complicate", "c1 by Friday"),
        ("persona", "p1"),
        ("persona", "p2"),
    ]
    assert all(t.original_question == out[0].question for t in out[1:])
    persona_ids = {p.id for p in load_personas(PERSONAS)}
    assert out[-1].persona in persona_ids
    prompt = next(r for r in scripted_llm.chat_requests() if "this person" in r["messages"][0]["content"])
    assert "Interests:" in prompt["messages"][0]["content"]
    # An augmented task is not augmented again.
    assert await stage.process(out[1], make_ctx("augment")) == [out[1]]


async def test_the_diverse_prompt_shows_the_tools_the_variations_must_fit(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on("completely different situations", json_reply(_variations("Find my recipe note")))
    stage = AugmentStage(AugmentConfig(modes=["diverse"]))
    await stage.process(_task(notes_server), make_ctx("augment"))
    (prompt,) = [r["messages"][0]["content"] for r in scripted_llm.chat_requests()]
    for tool in notes_server.tools:
        assert f"- {tool.name}: {tool.description}" in prompt


async def test_failed_augmentation_keeps_the_original(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on("completely different situations", invalid_json_reply())
    stage = AugmentStage(AugmentConfig(modes=["diverse"]))
    assert await stage.process(_task(notes_server), make_ctx("augment")) == [_task(notes_server)]


def test_persona_mode_without_personas_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="needs personas"):
        AugmentStage(AugmentConfig(modes=["persona"]))
