"""Task deduplication: exact (normalised text) and near-duplicate (embedding cosine, or character n-gram
Jaccard when the endpoint serves no embeddings).

It needs every task at once, so it runs between two runner passes rather than as a per-item stage. It is
deterministic in input order (the first of a group is kept), so a resumed run drops the same tasks. Tasks
are only compared within a server: requests to different services are not duplicates of each other, and
per-server groups keep the quadratic comparison small.
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from collections import defaultdict
from typing import Literal

from pydantic import BaseModel, Field

from astra_synth.config import StrictModel
from astra_synth.llm.client import LLMCallError, LLMClient
from astra_synth.trajectories.records import Task

log = logging.getLogger(__name__)

DedupeMethod = Literal["auto", "embedding", "ngram"]


class DedupeConfig(StrictModel):
    method: DedupeMethod = Field(
        default="auto", description="auto: embeddings if the endpoint serves them, else n-grams."
    )
    embedding_model: str | None = Field(default=None, description="Model name for /embeddings.")
    embedding_threshold: float = Field(default=0.92, gt=0, le=1, description="Cosine ≥ this is a duplicate.")
    ngram_size: int = Field(default=3, ge=1)
    ngram_threshold: float = Field(default=0.7, gt=0, le=1, description="Jaccard ≥ this is a duplicate.")


class Dropped(BaseModel):
    index: int
    duplicate_of: int
    reason: Literal["exact", "embedding", "ngram"]
    similarity: float


class DedupeResult(BaseModel):
    kept: list[int] = Field(description="Indices of kept tasks, in input order.")
    dropped: list[Dropped]
    method: Literal["embedding", "ngram"]


def normalise(text: str) -> str:
    """Case-, accent-width- and whitespace-insensitive form, punctuation dropped."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.sub(r"[^\w\s]", " ", text).split())


def char_ngrams(text: str, n: int) -> set[str]:
    text = normalise(text)
    return {text[i : i + n] for i in range(max(1, len(text) - n + 1))}


def jaccard(a: set[str], b: set[str]) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    norm = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
    return dot / norm if norm else 0.0


async def dedupe_tasks(tasks: list[Task], config: DedupeConfig, llm: LLMClient | None) -> DedupeResult:
    """Which tasks to keep. ``auto`` falls back to n-grams when the embeddings request fails."""
    method: Literal["embedding", "ngram"] = "ngram"
    vectors: list[list[float]] | None = None
    if config.method != "ngram" and tasks:
        if llm is None:
            raise ValueError("embedding dedupe needs an LLM client")
        try:
            vectors = await llm.embed(
                [normalise(t.question) for t in tasks], stage="dedupe", model=config.embedding_model
            )
            method = "embedding"
        except LLMCallError as exc:
            if config.method == "embedding":
                raise
            log.warning("no embeddings (%s); near-duplicates by character n-grams", exc.kind)
    grams = [char_ngrams(t.question, config.ngram_size) for t in tasks]
    by_server: dict[str, list[int]] = defaultdict(list)
    dropped: list[Dropped] = []
    exact: dict[tuple[str, str], int] = {}
    for i, task in enumerate(tasks):
        key = (task.server.id, normalise(task.question))
        if key in exact:
            dropped.append(Dropped(index=i, duplicate_of=exact[key], reason="exact", similarity=1.0))
            continue
        kept_here = by_server[task.server.id]
        match = _nearest(i, kept_here, vectors, grams, config)
        if match is not None:
            dropped.append(Dropped(index=i, duplicate_of=match[0], reason=method, similarity=match[1]))
            continue
        exact[key] = i
        kept_here.append(i)
    kept = sorted(i for group in by_server.values() for i in group)
    return DedupeResult(kept=kept, dropped=dropped, method=method)


def _nearest(
    i: int,
    candidates: list[int],
    vectors: list[list[float]] | None,
    grams: list[set[str]],
    config: DedupeConfig,
) -> tuple[int, float] | None:
    """The first kept task similar enough to task ``i``, with the similarity."""
    for j in candidates:
        if vectors is not None:
            similarity = cosine(vectors[i], vectors[j])
            threshold = config.embedding_threshold
        else:
            similarity = jaccard(grams[i], grams[j])
            threshold = config.ngram_threshold
        if similarity >= threshold:
            return j, round(similarity, 4)
    return None
