"""The benchmark side of the firewall: one index of every benchmark item's keys, built once per input
content and cached on disk, and the text embedder it is compared with."""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from astra_synth.config import ContaminationConfig
from astra_synth.firewall.benchmarks import (
    BenchmarkItem,
    BenchmarkSource,
    ToolDoc,
    load_benchmark_file,
    load_bfcl_multi_turn,
)
from astra_synth.firewall.signals import (
    call_grams,
    name_words,
    schema_signature,
    sha_digest,
    tool_signature,
    word_ngrams,
)
from astra_synth.llm.embeddings import Embedder, LocalEmbedder
from astra_synth.runs.jsonl import write_bytes_atomic

INDEX_VERSION = 3
"""Bump when the index layout or a normalisation changes: it is part of the index cache key."""


class BenchmarkIndex(BaseModel):
    """Everything the check looks up, keyed by hashes; built once per (sources, settings) and cached."""

    key: str
    sources: list[str]
    items: list[str] = Field(description="'label#id' per item; the lists below refer to these positions.")
    ngrams: dict[str, list[int]] = Field(description="Word n-gram hash → the texts holding it.")
    texts: list[str] = Field(description="Distinct benchmark texts (one per turn, instruction, question).")
    text_items: list[int] = Field(description="Per text, the first item it belongs to.")
    text_ngrams: list[int] = Field(description="Per text, how many distinct n-grams it has.")
    signatures: dict[str, str] = Field(description="Signature of a distinctive tool → 'label#tool'.")
    schemas: dict[str, str]
    overlap: dict[str, list[int]] = Field(
        description="Multi-word name or generic tool signature → positions in ``sources``."
    )
    calls: dict[str, int] = Field(description="Call n-gram hash → item.")

    @classmethod
    def build(cls, sources: Sequence[BenchmarkSource], config: ContaminationConfig) -> BenchmarkIndex:
        index = cls(
            key=index_key(sources, config),
            sources=[s.label for s in sources],
            items=[],
            ngrams={},
            texts=[],
            text_items=[],
            text_ngrams=[],
            signatures={},
            schemas={},
            overlap={},
            calls={},
        )
        ngrams: defaultdict[str, list[int]] = defaultdict(list)
        seen_texts: set[str] = set()
        for position, source in enumerate(sources):
            for item in source.items:
                i = len(index.items)
                index.items.append(f"{source.label}#{item.id}")
                for text in item.texts:
                    if text not in seen_texts:
                        seen_texts.add(text)
                        grams = word_ngrams(text, config.ngram)
                        for gram in grams:
                            ngrams[gram].append(len(index.texts))
                        index.texts.append(text)
                        index.text_items.append(i)
                        index.text_ngrams.append(len(grams))
                index._add_tools(item, position, config)
                for digest, _ in call_grams(item.calls, config.call_sequence):
                    index.calls.setdefault(digest, i)
        index.ngrams = dict(ngrams)
        return index

    def _add_tools(self, item: BenchmarkItem, position: int, config: ContaminationConfig) -> None:
        for tool in item.tools:
            ref = f"{item.benchmark}#{tool.name}"
            schema = schema_signature(tool, config.schema_min_properties)
            if schema is not None:
                self.schemas.setdefault(schema, ref)
            if schema is not None or len(name_words(tool.name)) >= 2:
                self.signatures.setdefault(tool_signature(tool), ref)
            for key in overlap_keys(tool):
                owners = self.overlap.setdefault(key, [])
                if position not in owners:
                    owners.append(position)


def overlap_keys(tool: ToolDoc) -> list[str]:
    """How a tool counts towards ``tool_overlap``: its multi-word name, else its full signature."""
    words = name_words(tool.name)
    return ["name:" + "_".join(words)] if len(words) >= 2 else ["sig:" + tool_signature(tool)]


def index_key(sources: Sequence[BenchmarkSource], config: ContaminationConfig) -> str:
    settings = [config.ngram, config.call_sequence, config.schema_min_properties]
    return sha_digest(str(INDEX_VERSION), json.dumps(settings), *(f"{s.label}={s.sha256}" for s in sources))


def cached_index(
    sources: Sequence[BenchmarkSource], config: ContaminationConfig, folder: Path
) -> BenchmarkIndex:
    """The index for these inputs, from ``folder`` when built before (its file name is the content key)."""
    path = folder / f"index-{index_key(sources, config)}.json"
    if path.is_file():
        try:
            return BenchmarkIndex.model_validate_json(path.read_bytes())
        except ValueError:
            path.unlink(missing_ok=True)  # a stale or damaged cache entry is rebuilt
    index = BenchmarkIndex.build(sources, config)
    folder.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(path, index.model_dump_json().encode())
    return index


def load_sources(config: ContaminationConfig) -> list[BenchmarkSource]:
    sources = [load_bfcl_multi_turn()] if config.bfcl else []
    sources += [load_benchmark_file(p) for p in config.benchmarks]
    if not sources:
        raise ValueError(
            "contamination: nothing to compare against (bfcl is off and no benchmarks are given)"
        )
    return sources


@functools.cache
def _local_embedder() -> LocalEmbedder:
    """One model per process: loading it costs seconds, and a process may export more than once."""
    return LocalEmbedder()


def make_embedder(choice: Literal["auto", "local", "none"]) -> Embedder | None:
    """The text embedder of ``choice``; ``auto`` falls back to n-grams only without sentence-transformers."""
    if choice == "none":
        return None
    try:
        return _local_embedder()
    except ImportError:
        if choice == "local":
            raise
        return None
