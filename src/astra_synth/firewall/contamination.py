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
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
import sys
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, Field
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.config import ContaminationConfig, cache_root
from astra_synth.errors import InputError
from astra_synth.firewall.benchmarks import (
    BenchmarkItem,
    BenchmarkSource,
    Call,
    Probe,
    ToolDoc,
    load_benchmark_file,
    load_bfcl_multi_turn,
)
from astra_synth.llm.embeddings import Embedder, LocalEmbedder, VectorCache
from astra_synth.runs.jsonl import read_jsonl, write_bytes_atomic, write_json_atomic
from astra_synth.runs.manifest import ContaminationSummary
from astra_synth.runs.store import RejectRecord

Signal = Literal[
    "tool_signature", "tool_schema", "tool_overlap", "call_sequence", "text_ngram", "text_embedding"
]
SIGNALS: tuple[Signal, ...] = (
    "tool_signature",
    "tool_schema",
    "tool_overlap",
    "call_sequence",
    "text_ngram",
    "text_embedding",
)
INDEX_VERSION = 3
"""Bump when the index layout or a normalisation changes: it is part of the index cache key."""
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


# --- normalisation ------------------------------------------------------------------------------------------

_TYPE_ALIASES = {
    "dict": "object",
    "float": "number",
    "double": "number",
    "int": "integer",
    "long": "integer",
    "list": "array",
    "tuple": "array",
    "str": "string",
    "bool": "boolean",
}
_PROSE_KEYS = {"description", "title", "default", "examples", "example", "response"}
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_TOKEN = re.compile(r"[\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]|[^\W_]+")


def name_words(name: str) -> list[str]:
    """``GorillaFileSystem.find_files`` / ``findFiles`` → ``['find', 'files']``."""
    last = re.split(r"\.|__", name)[-1]
    return [w for w in re.split(r"[^a-z0-9]+", _CAMEL.sub("_", last).lower()) if w]


def canonical_schema(schema: Any) -> Any:
    """The parts of a parameter schema that define the interface, in one spelling."""
    if isinstance(schema, dict):
        out: dict[str, Any] = {}
        for key, value in schema.items():
            if key in _PROSE_KEYS:
                continue
            if key == "type" and isinstance(value, str):
                out[key] = _TYPE_ALIASES.get(value.lower(), value.lower())
            elif key in ("required", "enum") and isinstance(value, list):
                out[key] = sorted(value, key=lambda v: json.dumps(v, sort_keys=True))
            elif key == "properties" and isinstance(value, dict):
                out[key] = {str(k).lower(): canonical_schema(v) for k, v in value.items()}
            else:
                out[key] = canonical_schema(value)
        return out
    if isinstance(schema, list):
        return [canonical_schema(v) for v in schema]
    return schema


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def tool_signature(tool: ToolDoc) -> str:
    schema = json.dumps(canonical_schema(tool.parameters), sort_keys=True, ensure_ascii=False)
    return _digest("".join(name_words(tool.name)), schema)


def schema_signature(tool: ToolDoc, min_properties: int) -> str | None:
    """The name-free signature, only for schemas distinctive enough to identify a tool on their own."""
    properties = tool.parameters.get("properties")
    if not isinstance(properties, dict) or len(properties) < min_properties:
        return None
    return _digest(json.dumps(canonical_schema(tool.parameters), sort_keys=True, ensure_ascii=False))


def _value(value: Any) -> Any:
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int | float):
        return round(float(value), 6)
    if isinstance(value, str):
        return value.strip().casefold()
    if isinstance(value, dict):
        return {str(k): _value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_value(v) for v in value]
    return str(value)


def call_key(call: Call) -> str:
    return json.dumps(["".join(name_words(call.name)), _value(call.arguments)], sort_keys=True)


def _call_grams(calls: list[Call], n: int) -> list[tuple[str, str]]:
    """(hash, readable) of every run of ``n`` consecutive calls."""
    keys = [call_key(c) for c in calls]
    return [
        (_digest(*keys[i : i + n]), " → ".join(c.name for c in calls[i : i + n]))
        for i in range(len(keys) - n + 1)
    ]


def tokens(text: str) -> list[str]:
    return [t.casefold() for t in _TOKEN.findall(text)]


_MIN_NGRAMS = 3
"""Texts with fewer n-grams (n + 2 words) are too short to call copied by overlap; embeddings judge them."""


def _ngrams(text: str, n: int) -> set[str]:
    words = tokens(text)
    return {
        hashlib.blake2b(" ".join(words[i : i + n]).encode(), digest_size=8).hexdigest()
        for i in range(len(words) - n + 1)
    }


# --- the benchmark index ------------------------------------------------------------------------------------


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
                        grams = _ngrams(text, config.ngram)
                        for gram in grams:
                            ngrams[gram].append(len(index.texts))
                        index.texts.append(text)
                        index.text_items.append(i)
                        index.text_ngrams.append(len(grams))
                index._add_tools(item, position, config)
                for digest, _ in _call_grams(item.calls, config.call_sequence):
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
            for key in _overlap_keys(tool):
                owners = self.overlap.setdefault(key, [])
                if position not in owners:
                    owners.append(position)


def _overlap_keys(tool: ToolDoc) -> list[str]:
    """How a tool counts towards ``tool_overlap``: its multi-word name, else its full signature."""
    words = name_words(tool.name)
    return ["name:" + "_".join(words)] if len(words) >= 2 else ["sig:" + tool_signature(tool)]


def index_key(sources: Sequence[BenchmarkSource], config: ContaminationConfig) -> str:
    settings = [config.ngram, config.call_sequence, config.schema_min_properties]
    return _digest(str(INDEX_VERSION), json.dumps(settings), *(f"{s.label}={s.sha256}" for s in sources))


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


# --- the check ----------------------------------------------------------------------------------------------


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
            for key in _overlap_keys(tool):
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
            for digest, readable in _call_grams(probe.calls, self.config.call_sequence)
            if (i := self.index.calls.get(digest)) is not None
        ][:1]

    def _ngram_hits(self, probe: Probe) -> list[Hit]:
        out: list[Hit] = []
        for text in probe.texts:
            grams = _ngrams(text, self.config.ngram)
            if not grams:
                continue
            counts = Counter(t for g in grams for t in self.index.ngrams.get(g, []))
            # Either side contained in the other: a copied turn padded with new words, or one request that
            # pastes several short benchmark turns together.
            smaller = {t: min(len(grams), self.index.text_ngrams[t]) for t in counts}
            scores = {t: shared / smaller[t] for t, shared in counts.items() if smaller[t] >= _MIN_NGRAMS}
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


# --- probes of what we export -------------------------------------------------------------------------------


def _arguments(raw: Any) -> dict[str, Any]:
    if isinstance(raw, str):
        try:
            raw = json.loads(raw)
        except ValueError:
            return {}
    return raw if isinstance(raw, dict) else {}


def chat_probe(item_id: str, messages: Iterable[dict[str, Any]], tools: Iterable[dict[str, Any]]) -> Probe:
    """An SFT row (OpenAI messages + tools): the user texts, the tools offered, the calls made in order."""
    texts: list[str] = []
    calls: list[Call] = []
    for message in messages:
        content = message.get("content")
        if (
            message.get("role") == "user"
            and isinstance(content, str)
            and content.strip()
            and content not in texts
        ):
            texts.append(content)
        for call in message.get("tool_calls") or []:
            function = call.get("function") or {}
            calls.append(
                Call(name=str(function.get("name", "")), arguments=_arguments(function.get("arguments")))
            )
    docs = [t.get("function", t) for t in tools]
    return Probe(
        id=item_id,
        texts=texts,
        tools=[ToolDoc(name=str(d.get("name", "")), parameters=d.get("parameters") or {}) for d in docs],
        calls=calls,
    )


def arena_probe(arena: Arena) -> Probe:
    """An arena: its user messages and sub-questions, its tools, its golden calls in sub-task order."""
    texts = [m.content for m in arena.messages if m.role == "user"]
    texts += [s.question for s in arena.subtasks if s.question not in texts]
    return Probe(
        id=arena.id,
        texts=texts,
        tools=[ToolDoc(name=t.function.name, parameters=t.function.parameters) for t in arena.tools],
        calls=[
            Call(name=s.golden_call.name, arguments=s.golden_call.arguments)
            for s in arena.subtasks
            if s.golden_call
        ],
    )


class _SftRow(BaseModel):
    id: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]] = Field(default_factory=list)


InputFormat = Literal["auto", "sft", "arenas"]


def _detect_format(path: Path) -> Literal["sft", "arenas"]:
    try:
        with path.open("rb") as fh:
            first = next((line for line in fh if line.strip()), b"")
        head = json.loads(first) if first else None
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}:1: expected a JSON line of an SFT set or an arena file ({exc})") from exc
    if isinstance(head, dict) and "subtasks" in head:
        return "arenas"
    if isinstance(head, dict) and "messages" in head:
        return "sft"
    raise InputError(
        f"{path}:1: expected an SFT row (id, messages, tools) or an arena (…, subtasks); see --format"
    )


def read_probes(path: Path, fmt: InputFormat = "auto") -> list[Probe]:
    """Probes of an exported file: ``sft.jsonl`` rows or ``arenas.jsonl`` arenas."""
    kind = _detect_format(path) if fmt == "auto" else fmt
    if kind == "arenas":
        return [arena_probe(a) for a in read_arenas(path)]
    try:
        loaded = read_jsonl(path, _SftRow)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if loaded.errors:
        raise InputError("\n".join(str(error) for _, _, error in loaded.errors))
    return [chat_probe(row.id, row.messages, row.tools) for _, row in loaded.items]


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
