"""Dedupe: exact and near duplicates within a server, by embeddings or character n-grams."""

from __future__ import annotations

from astra_synth.config import EndpointConfig
from astra_synth.llm.client import LLMClient
from astra_synth.testing.scripted import ScriptedLLM, server_error_reply
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.dedupe import DedupeConfig, char_ngrams, dedupe_tasks, jaccard
from astra_synth.trajectories.records import Task


def _tasks(server: ServerRecord, *questions: str) -> list[Task]:
    return [
        Task(
            server=server,
            mode="server",
            question=q,
            target_tools=["search_notes"],
            chain_origin="server_only",
        )
        for q in questions
    ]


QUESTIONS = (
    "Find my note about the Lisbon trip and share it with Ann.",
    "find my note about the lisbon trip, and share it with ann!",  # exact after normalising
    "Find my notes about the Lisbon trip and share them with Ann.",  # near duplicate
    "Rename the grocery list note to 'Saturday shopping'.",
)


def test_ngram_similarity() -> None:
    a, b = char_ngrams(QUESTIONS[0], 3), char_ngrams(QUESTIONS[2], 3)
    assert jaccard(a, a) == 1.0
    assert 0.7 < jaccard(a, b) < 1.0
    assert jaccard(a, char_ngrams(QUESTIONS[3], 3)) < 0.2


async def test_ngram_dedupe_keeps_first_of_each_group_per_server(notes_server: ServerRecord) -> None:
    other = notes_server.model_copy(update={"id": "other"})
    tasks = _tasks(notes_server, *QUESTIONS) + _tasks(other, QUESTIONS[0])
    result = await dedupe_tasks(tasks, DedupeConfig(method="ngram"), None)
    assert result.method == "ngram"
    assert result.kept == [0, 3, 4]  # the other server's copy is not a duplicate
    assert [(d.index, d.duplicate_of, d.reason) for d in result.dropped] == [(1, 0, "exact"), (2, 0, "ngram")]


async def test_embedding_dedupe_and_fallback(
    scripted_llm: ScriptedLLM, scripted_endpoint: EndpointConfig, notes_server: ServerRecord
) -> None:
    tasks = _tasks(notes_server, *QUESTIONS)
    async with LLMClient(scripted_endpoint) as llm:
        # The scripted server's vectors are hashes of the text: only identical texts are similar.
        result = await dedupe_tasks(tasks, DedupeConfig(method="embedding"), llm)
        assert result.method == "embedding"
        assert result.kept == [0, 2, 3]
        assert [(d.index, d.reason) for d in result.dropped] == [(1, "exact")]
        scripted_llm.fail_next(10, server_error_reply(), path="embeddings")
        fallback = await dedupe_tasks(tasks, DedupeConfig(method="auto"), llm)
    assert fallback.method == "ngram" and fallback.kept == [0, 3]
