"""Benchmark-contamination firewall: drop exported items that copy an evaluation set, and say why.

Training on near-copies of a benchmark inflates its score without teaching anything, so both exports (the SFT
set and the arenas) pass through this check by default, and ``astra check-contamination`` runs it on any
exported file. Each item is reduced to a :class:`~astra_synth.firewall.benchmarks.Probe` (texts, tools,
calls) and compared with an index of the benchmark items (BFCL-v3 multi-turn from the pinned ``bfcl-eval``,
plus τ²-bench / ACEBench / tool-doc files). Signals, and why each threshold is where it is:

* ``tool_signature``: same normalised name (last dotted or ``__`` segment, camelCase, case and ``_`` folded)
  *and* same canonical parameter schema (descriptions, titles, defaults dropped; type aliases such as BFCL's
  ``dict``/``float`` mapped to JSON Schema; keys and ``required`` sorted): rewording or reordering a copied
  tool hides nothing. Only *distinctive* tools count alone: a multi-word name (``book_flight``) or at least
  ``schema_min_properties`` parameters. ``add(a, b)`` or ``cd(folder)`` are what anyone would write.
* ``tool_schema``: a renamed tool with the identical canonical schema, counted only for schemas with at least
  ``schema_min_properties`` properties: two-string schemas like ``{source, destination}`` are everywhere.
* ``tool_overlap``: at least ``tool_overlap_matches`` tools of the item that match tools of one benchmark by
  multi-word name (``get_stock_info``, not ``search``) or by the full signature of a generic tool (BFCL's
  ``cd``, ``grep``, ``tail``). One shared tool is a coincidence; three of one benchmark's API is a copy of it.
* ``call_sequence``: ``call_sequence`` consecutive calls equal to consecutive golden calls of a benchmark,
  names *and* arguments (strings case-folded, numbers as floats). Short sequences are left alone: ``ls()``
  then ``cd(folder='docs')`` is what any file-system task does.
* ``text_ngram``: word ``ngram``-gram overlap (CJK characters count as words) of an item text and a benchmark
  text (a turn, an instruction), as in the GPT-3 / Llama-2 contamination studies, divided by the n-grams of
  the shorter of the two: a copied turn padded with new words and a request pasting several turns together
  both score high. 8-grams because BFCL turns are short (13-grams barely fit); ``ngram_containment`` 0.5
  means half the shorter text is copied; texts under ``ngram`` + 2 words are left to the embeddings.
* ``text_embedding``: cosine of the item text and a benchmark text ≥ ``embedding_cosine`` (all-MiniLM-L6-v2:
  paraphrases of the same request score above 0.9, same-domain different requests 0.5–0.8). Without
  sentence-transformers the check runs on n-grams only and the summary's ``method`` says ``ngram``.

Any signal drops the item; the reason recorded is the first one in the order above. The benchmark side is
indexed once per input content and cached on disk; benchmark texts are embedded once per machine.

The parts: :mod:`~astra_synth.firewall.signals` (the keys above), :mod:`~astra_synth.firewall.index` (the
benchmark side, cached), :mod:`~astra_synth.firewall.probes` (our side: SFT rows, arenas, exported files);
this module checks probes against the index and writes the report and the rejects.
"""

from __future__ import annotations

import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from astra_synth.config import ContaminationConfig, cache_root
from astra_synth.firewall.benchmarks import Probe
from astra_synth.firewall.index import BenchmarkIndex, cached_index, load_sources, make_embedder, overlap_keys
from astra_synth.firewall.signals import (
    MIN_NGRAMS,
    SIGNALS,
    Signal,
    call_grams,
    schema_signature,
    tool_signature,
    word_ngrams,
)
from astra_synth.llm.embeddings import Embedder, VectorCache
from astra_synth.runs.jsonl import write_bytes_atomic, write_json_atomic
from astra_synth.runs.manifest import ContaminationSummary
from astra_synth.runs.store import RejectRecord

REPORT_FILE = "contamination.json"
REJECTS_FILE = "contamination_rejects.jsonl"


class Hit(BaseModel):
    signal: Signal
    benchmark: str
    ref: str = Field(description="The benchmark item (or tool) matched.")
    score: float
    detail: str = Field(description="What of the item matched: a tool name, a call, a text excerpt.")


class Verdict(BaseModel):
    """A dropped item: the reason (its first signal in :data:`SIGNALS` order) and every hit."""

    id: str
    reason: Signal
    hits: list[Hit]


class ContaminationReport(BaseModel):
    """The summary plus a verdict per dropped item (clean items are only counted)."""

    summary: ContaminationSummary
    verdicts: list[Verdict]

    @property
    def dropped_ids(self) -> set[str]:
        return {v.id for v in self.verdicts}


class Firewall:
    """Checks probes against one index; holds the benchmark vectors once they are computed."""

    def __init__(
        self,
        index: BenchmarkIndex,
        config: ContaminationConfig,
        embedder: Embedder | None,
        vectors: VectorCache | None = None,
        *,
        progress: bool | None = None,
    ) -> None:
        self.index = index
        self.config = config
        self.embedder = embedder
        self.vectors = vectors or VectorCache(cache_root() / "embeddings")
        self.progress = sys.stderr.isatty() if progress is None else progress
        self._bench_unit: np.ndarray[Any, np.dtype[np.float64]] | None = None

    @classmethod
    def from_config(cls, config: ContaminationConfig, *, progress: bool | None = None) -> Firewall:
        sources = load_sources(config)
        index = cached_index(sources, config, cache_root() / "contamination")
        return cls(index, config, make_embedder(config.embedder), progress=progress)

    @property
    def method(self) -> str:
        return f"ngram+{self.embedder.name}" if self.embedder else "ngram"

    def check(self, probes: Sequence[Probe]) -> ContaminationReport:
        hits: dict[str, list[Hit]] = {p.id: [] for p in probes}
        for probe in probes:
            hits[probe.id] += self._tool_hits(probe) + self._call_hits(probe) + self._ngram_hits(probe)
        if self.embedder is not None:
            for probe_id, hit in self._embedding_hits(probes):
                hits[probe_id].append(hit)
        verdicts: list[Verdict] = []
        for probe in probes:
            found = sorted(hits[probe.id], key=lambda h: (SIGNALS.index(h.signal), -h.score))
            if found:
                verdicts.append(Verdict(id=probe.id, reason=found[0].signal, hits=found))
        by_reason = Counter(v.reason for v in verdicts)
        summary = ContaminationSummary(
            checked=len(probes),
            dropped=len(verdicts),
            by_reason={k: by_reason[k] for k in SIGNALS if by_reason[k]},
            benchmarks=self.index.sources,
            method=self.method,
            thresholds=self.config.thresholds(),
        )
        return ContaminationReport(summary=summary, verdicts=verdicts)

    def _tool_hits(self, probe: Probe) -> list[Hit]:
        out: list[Hit] = []
        shared: defaultdict[int, list[str]] = defaultdict(list)
        for tool in probe.tools:
            if (ref := self.index.signatures.get(tool_signature(tool))) is not None:
                out.append(self._hit("tool_signature", ref, 1.0, tool.name))
            elif (schema := schema_signature(tool, self.config.schema_min_properties)) is not None and (
                ref := self.index.schemas.get(schema)
            ) is not None:
                out.append(self._hit("tool_schema", ref, 1.0, tool.name))
            for key in overlap_keys(tool):
                for position in self.index.overlap.get(key, []):
                    if tool.name not in shared[position]:
                        shared[position].append(tool.name)
        for position, matched in shared.items():
            if len(matched) >= self.config.tool_overlap_matches:
                label = self.index.sources[position]
                out.append(
                    Hit(
                        signal="tool_overlap",
                        benchmark=label,
                        ref=label,
                        score=float(len(matched)),
                        detail=", ".join(matched),
                    )
                )
        return out

    def _call_hits(self, probe: Probe) -> list[Hit]:
        return [
            self._hit("call_sequence", self.index.items[i], 1.0, readable)
            for digest, readable in call_grams(probe.calls, self.config.call_sequence)
            if (i := self.index.calls.get(digest)) is not None
        ][:1]

    def _ngram_hits(self, probe: Probe) -> list[Hit]:
        out: list[Hit] = []
        for text in probe.texts:
            grams = word_ngrams(text, self.config.ngram)
            if not grams:
                continue
            counts = Counter(t for g in grams for t in self.index.ngrams.get(g, []))
            # Either side contained in the other: a copied turn padded with new words, or one request that
            # pastes several short benchmark turns together.
            smaller = {t: min(len(grams), self.index.text_ngrams[t]) for t in counts}
            scores = {t: shared / smaller[t] for t, shared in counts.items() if smaller[t] >= MIN_NGRAMS}
            if scores:
                best = max(scores, key=lambda t: scores[t])
                if scores[best] >= self.config.ngram_containment:
                    item = self.index.items[self.index.text_items[best]]
                    out.append(self._hit("text_ngram", item, scores[best], text))
        return out

    def _embedding_hits(self, probes: Sequence[Probe]) -> list[tuple[str, Hit]]:
        assert self.embedder is not None
        owners: defaultdict[str, list[str]] = defaultdict(list)
        for probe in probes:
            for text in probe.texts:
                if probe.id not in owners[text]:
                    owners[text].append(probe.id)
        texts = list(owners)
        if not texts or not self.index.texts:
            return []
        similarity = _unit(self._embed(texts, "item texts")) @ self._benchmark_unit().T
        best = similarity.argmax(axis=1)
        out: list[tuple[str, Hit]] = []
        for row, text in enumerate(texts):
            score = float(similarity[row, best[row]])
            if score >= self.config.embedding_cosine:
                ref = self.index.items[self.index.text_items[int(best[row])]]
                out += [(pid, self._hit("text_embedding", ref, score, text)) for pid in owners[text]]
        return out

    def _benchmark_unit(self) -> np.ndarray[Any, np.dtype[np.float64]]:
        if self._bench_unit is None:
            self._bench_unit = _unit(self._embed(self.index.texts, "benchmark texts"))
        return self._bench_unit

    def _embed(self, texts: list[str], what: str) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Vectors of ``texts``, embedding what the cache lacks in batches under a progress bar."""
        assert self.embedder is not None
        todo = self.vectors.missing(self.embedder, texts)
        columns = (TextColumn(f"embedding {what}"), BarColumn(), MofNCompleteColumn())
        with Progress(*columns, disable=not self.progress or len(todo) < 64, transient=True) as bar:
            task = bar.add_task(what, total=len(todo))
            for start in range(0, len(todo), 64):
                self.vectors.embed(self.embedder, todo[start : start + 64])
                bar.advance(task, len(todo[start : start + 64]))
        return self.vectors.embed(self.embedder, texts)

    def _hit(self, signal: Signal, ref: str, score: float, detail: str) -> Hit:
        benchmark = ref.split("#", 1)[0]
        return Hit(signal=signal, benchmark=benchmark, ref=ref, score=round(score, 4), detail=detail[:200])


def _unit(vectors: np.ndarray[Any, np.dtype[np.float64]]) -> np.ndarray[Any, np.dtype[np.float64]]:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)


def screen(probes: Sequence[Probe], config: ContaminationConfig, out_dir: Path) -> ContaminationReport:
    """The export-time check; writes the full report and the rejects into the export folder."""
    report = Firewall.from_config(config).check(probes)
    write_json_atomic(out_dir / REPORT_FILE, report.model_dump(mode="json"))
    rejects = [
        RejectRecord(
            id=v.id,
            stage="contamination",
            reason=v.reason,
            detail="; ".join(f"{h.signal}: {h.detail!r} ~ {h.ref} ({h.score})" for h in v.hits),
        )
        for v in report.verdicts
    ]
    write_bytes_atomic(
        out_dir / REJECTS_FILE, b"".join(r.model_dump_json().encode() + b"\n" for r in rejects)
    )
    return report
