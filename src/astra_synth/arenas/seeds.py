"""Seed inputs for QA generation, in every mode of the paper's code — with its file-name bugs fixed.

Modes: ``domains`` (a domain list; one seed per hop count in the range), ``corpus`` (a knowledge card
per line; the model picks the hop count within the range), ``questions`` (decompose a given question),
``taxonomy`` (leaves of a nested taxonomy; one example query per leaf as the corpus, masked at a seeded
rate) and ``plain`` (no seed data: a domain name and a hop count). Each mode works in English and Chinese.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationInfo, field_validator, model_validator

from astra_synth.arenas.instance import Language
from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.runs.jsonl import read_jsonl

Mode = Literal["domains", "corpus", "questions", "taxonomy", "plain"]


class QASeed(StrictModel):
    """One request to the QA generator: everything the prompt is conditioned on."""

    mode: Mode
    language: Language
    domain: str = Field(min_length=1)
    knowledge_corpus: str | None = None
    question: str | None = None
    min_hops: int = Field(ge=1)
    max_hops: int = Field(ge=1)
    repeat: int = Field(default=0, ge=0, description="Index among repeats of the same seed.")
    source: str = Field(default="", description="Where the seed came from (file:line).")

    @model_validator(mode="after")
    def _hop_range(self) -> QASeed:
        if self.max_hops < self.min_hops:
            raise ValueError(f"max_hops {self.max_hops} < min_hops {self.min_hops}")
        return self


class DomainRecord(BaseModel):
    domain: str = Field(min_length=1)
    knowledge_corpus: str | None = None


class QuestionRecord(BaseModel):
    question: str = Field(min_length=1)
    domain: str = Field(default="general", min_length=1)


class SeedSource(StrictModel):
    """One block of ``qa.sources`` in the arenas config."""

    mode: Mode
    language: Language = "en"
    file: Path | None = Field(default=None, description="Seed file (not used by mode plain).")
    domain: str = Field(default="general", description="Domain for mode plain.")
    min_hops: int = Field(default=2, ge=1)
    max_hops: int = Field(default=4, ge=1)
    repeats: int = Field(default=1, ge=1, description="Independent samples per seed.")
    limit: int | None = Field(default=None, ge=1, description="Use at most this many seed records.")
    mask_example_rate: float = Field(default=0.5, ge=0, le=1, description="Taxonomy: drop the example query.")

    @field_validator("file")
    @classmethod
    def _resolve(cls, value: Path | None, info: ValidationInfo) -> Path | None:
        base = (info.context or {}).get("config_dir")
        if value is not None and base and not value.is_absolute():
            return Path(base) / value
        return value

    @model_validator(mode="after")
    def _needs_file(self) -> SeedSource:
        if self.mode != "plain" and self.file is None:
            raise ValueError(f"mode {self.mode} needs a seed file")
        if self.max_hops < self.min_hops:
            raise ValueError(f"max_hops {self.max_hops} < min_hops {self.min_hops}")
        return self


def expand_source(src: SeedSource, seed: int) -> tuple[list[QASeed], list[InputError]]:
    """All seeds of one source, in a deterministic order, plus one error per bad seed record."""
    rng = random.Random(f"{seed}:{src.mode}:{src.file}:{src.language}")
    seeds: list[QASeed] = []
    errors: list[InputError] = []
    base: dict[str, Any] = {"mode": src.mode, "language": src.language}

    def emit(count_hops: list[tuple[int, int]], source: str, **fields: Any) -> None:
        for lo, hi in count_hops:
            for r in range(src.repeats):
                seeds.append(QASeed(**base, **fields, min_hops=lo, max_hops=hi, repeat=r, source=source))

    per_hop = [(h, h) for h in range(src.min_hops, src.max_hops + 1)]
    ranged = [(src.min_hops, src.max_hops)]
    if src.mode == "plain":
        emit(per_hop, "plain", domain=src.domain)
    elif src.mode == "taxonomy":
        assert src.file is not None
        try:
            leaves = _taxonomy_leaves(json.loads(src.file.read_text(encoding="utf-8")), [])
        except (OSError, json.JSONDecodeError, ValueError) as exc:
            return [], [InputError(f"{src.file}: cannot read taxonomy: {exc}")]
        for path, examples in leaves[: src.limit]:
            example = rng.choice(examples) if examples else None
            masked = example is None or rng.random() < src.mask_example_rate
            emit(
                ranged,
                f"{src.file}:{'/'.join(path)}",
                domain="-".join(path),
                knowledge_corpus=None if masked else example,
            )
    else:
        assert src.file is not None
        model: type[BaseModel] = QuestionRecord if src.mode == "questions" else DomainRecord
        read = read_jsonl(src.file, model)
        errors.extend(err for _, _, err in read.errors)
        for lineno, rec in read.items[: src.limit]:
            where = f"{src.file}:{lineno}"
            if isinstance(rec, QuestionRecord):
                emit([(1, src.max_hops)], where, domain=rec.domain, question=rec.question)
            elif isinstance(rec, DomainRecord) and src.mode == "corpus":
                if not rec.knowledge_corpus:
                    errors.append(InputError(f"{where}: field 'knowledge_corpus': required in mode corpus"))
                    continue
                emit(ranged, where, domain=rec.domain, knowledge_corpus=rec.knowledge_corpus)
            elif isinstance(rec, DomainRecord):
                emit(per_hop, where, domain=rec.domain, knowledge_corpus=rec.knowledge_corpus or None)
    return seeds, errors


def _taxonomy_leaves(node: Any, path: list[str]) -> list[tuple[list[str], list[str]]]:
    """(path, example queries) for every leaf; a leaf is a dict with a ``description``."""
    if isinstance(node, dict) and "description" in node:
        examples = [e["query"] for e in node.get("examples", []) if isinstance(e, dict) and e.get("query")]
        return [(path, examples)]
    if not isinstance(node, dict) or not node:
        raise ValueError(f"taxonomy node {'/'.join(path) or '<root>'} is neither a leaf nor a mapping")
    out: list[tuple[list[str], list[str]]] = []
    for key, child in node.items():
        out.extend(_taxonomy_leaves(child, [*path, key]))
    return out


def expand_sources(sources: list[SeedSource], seed: int) -> tuple[list[QASeed], list[InputError]]:
    seeds: list[QASeed] = []
    errors: list[InputError] = []
    for src in sources:
        s, e = expand_source(src, seed)
        seeds.extend(s)
        errors.extend(e)
    return seeds, errors
