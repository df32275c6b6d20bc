"""``astra arenas …``: run the arena pipeline, instantiate families, check arena files, export golden SFT
conversations."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from astra_synth.arenas.families import FamilyError, instantiate, load_families, write_splits
from astra_synth.arenas.golden import golden_example, recovery_example
from astra_synth.arenas.pipeline import ArenasConfig, run_arenas
from astra_synth.arenas.records import read_arenas
from astra_synth.arenas.validate import ValidationConfig, check_arena
from astra_synth.cli.run_options import (
    RetryRejectedOption,
    RunDirOption,
    load_run_config,
    print_funnel,
    publish_finished,
)
from astra_synth.errors import InputError
from astra_synth.sandbox import ExecutorKind, get_executor

app = typer.Typer(help="Pipeline B: verifiable RL arenas from QA.", no_args_is_help=True)


@app.command("check")
def check(
    file: Annotated[Path, typer.Argument(help="Arena JSONL file.", exists=True, dir_okay=False)],
    executor: Annotated[
        ExecutorKind, typer.Option("--executor", help="Sandbox backend for tool calls.")
    ] = "forkserver",
) -> None:
    """Validate every arena: static check, per-tool battery, golden-call replay and reward-hacking probes."""
    console = Console()
    if not console.is_terminal:  # logs and pipes: room for every probe column rather than 80 columns
        console = Console(width=180)
    try:
        arenas = read_arenas(file)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    config = ValidationConfig()
    table = Table(title=f"{file} ({len(arenas)} arenas)")
    table.add_column("arena", no_wrap=True)
    table.add_column("checks", no_wrap=True)
    table.add_column("replay (result/answer)", no_wrap=True)
    probe_names: list[str] = []
    rows = []
    failed = 0
    max_probe = 0.0
    with get_executor(executor) as sandbox:
        for arena in arenas:
            card = check_arena(arena, sandbox, config)
            failed += not card.passed
            max_probe = max([max_probe, *card.probe_rewards.values()])
            probe_names = probe_names or list(card.probe_rewards)
            rows.append((arena.id, card))
    for name in probe_names:
        table.add_column(name, justify="right", no_wrap=True)
    for arena_id, card in rows:
        checks = f"{len(card.failures)} failed" if card.failures else "ok"
        replay = "/".join(f"{r:.3f}" for r in card.replay_rewards.values()) or "not run"
        probes = [f"{card.probe_rewards[n]:.3f}" if n in card.probe_rewards else "-" for n in probe_names]
        style = None if card.passed else "red"
        table.add_row(escape(arena_id), checks, replay, *probes, style=style)
    console.print(table)
    for arena_id, card in rows:
        for failure in card.failures:
            console.print(f"{arena_id}: {failure.name}: {failure.detail}", markup=False, highlight=False)
    replay_ok = sum(card.replay_ok for _, card in rows)
    typer.echo(f"RESULT arenas={len(arenas)} replay_ok={replay_ok} max_probe_reward={max_probe:.3f}")
    if failed:
        raise typer.Exit(1)


@app.command("run")
def run(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Option("--config", help="Arenas config (YAML).", exists=True, dir_okay=False)
    ],
    run_dir: RunDirOption,
    retry_rejected: RetryRejectedOption = False,
) -> None:
    """Synthesize arenas from QA seeds (resumable): QA → necessity → verification → tools → merge → replay,
    then publish: contamination firewall → arenas.jsonl / arenas.parquet → dataset card."""
    cfg = load_run_config(ctx, ArenasConfig, config)
    summary = asyncio.run(run_arenas(cfg, run_dir, retry_rejected=retry_rejected))
    summary = publish_finished(summary, run_dir, cfg.contamination, parquet=True)
    print_funnel(summary, f"arena funnel, {summary.inputs} seed(s)")
    for error in summary.input_errors:
        typer.echo(f"bad seed: {error}", err=True)
    arenas = summary.published.rows if summary.published else 0
    per_arena = f"{summary.llm_calls / arenas:.1f}" if arenas else "n/a"
    selection = summary.filter("selection")
    threshold = selection.threshold if selection else None
    typer.echo(f"threshold: {threshold}  LLM calls: {summary.llm_calls}  per arena: {per_arena}")
    typer.echo(f"arenas: {arenas} in {run_dir / 'arenas.jsonl'}  (parquet: {run_dir / 'arenas.parquet'})")
    if summary.status != "finished":
        raise typer.Exit(1)


@app.command("to-sft")
def to_sft(
    file: Annotated[Path, typer.Argument(help="Arena JSONL file.", exists=True, dir_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Output JSONL of OpenAI-format conversations.")],
    executor: Annotated[
        ExecutorKind, typer.Option("--executor", help="Sandbox backend for tool calls.")
    ] = "forkserver",
    recovery: Annotated[
        bool,
        typer.Option(
            "--recovery",
            help="Also a recovery conversation per arena: a mistaken first call and the runtime's error, "
            "then the golden turns (the mistake is context, not learned).",
        ),
    ] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the recovery conversations' mistakes.")] = 0,
) -> None:
    """Golden SFT conversations: each arena's golden calls, their real sandbox outputs, the final answer."""
    try:
        arenas = read_arenas(file)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    written, refused = 0, []
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    with get_executor(executor) as sandbox, tmp.open("w", encoding="utf-8") as fh:
        for arena in arenas:
            try:
                examples = [golden_example(arena, sandbox)]
                if recovery:
                    examples.append(recovery_example(arena, sandbox, seed))
            except ValueError as exc:
                refused.append(str(exc))
                continue
            fh.write("".join(e.model_dump_json() + "\n" for e in examples))
            written += len(examples)
    tmp.replace(out)
    for reason in refused:
        typer.echo(f"skipped: {reason}", err=True)
    typer.echo(f"RESULT arenas={len(arenas)} conversations={written} skipped={len(refused)} out={out}")
    if refused:
        raise typer.Exit(1)


@app.command("instantiate")
def instantiate_families(
    families: Annotated[
        list[Path], typer.Argument(help="Family YAML files, or folders of them.", exists=True)
    ],
    out: Annotated[Path, typer.Option("--out", help="Folder for the split JSONL files and manifest.json.")],
    per_family: Annotated[int, typer.Option("--per-family", min=1, help="Distinct arenas per family.")] = 20,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same arenas and splits.")] = 0,
    held_out: Annotated[
        float,
        typer.Option("--held-out", min=0.0, max=1.0, help="Share of each trained family's arenas held out."),
    ] = 0.2,
    executor: Annotated[
        ExecutorKind, typer.Option("--executor", help="Sandbox backend for tool calls.")
    ] = "forkserver",
) -> None:
    """Arenas from families: slots drawn by seed, answers computed in the sandbox, each arena validated."""
    try:
        bound = load_families(families)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with get_executor(executor) as sandbox, Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("instantiating", total=len(bound) * per_family)
        try:
            arenas = instantiate(
                bound, per_family, seed, sandbox, on_instance=lambda arena: progress.advance(task)
            )
        except FamilyError as exc:
            progress.stop()
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from exc
    manifest = write_splits(out, bound, arenas, per_family, seed, held_out)
    files = " ".join(f"{name}={count}" for name, count in manifest.files.items())
    typer.echo(f"RESULT families={len(bound)} arenas={len(arenas)} {files} out={out}")


@app.command("serve")
def serve(
    files: Annotated[
        list[Path], typer.Argument(help="Arena JSONL files; each is a split named by its stem.", exists=True)
    ],
    host: Annotated[str, typer.Option("--host", help="Interface; the server runs tool code.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8791,
    max_sessions: Annotated[
        int, typer.Option("--max-sessions", min=1, help="WebSocket sessions at once.")
    ] = 64,
    idle_timeout: Annotated[
        float, typer.Option("--idle-timeout", min=1.0, help="Close a session silent this long, s.")
    ] = 600.0,
    executor: Annotated[
        ExecutorKind, typer.Option("--executor", help="Sandbox backend for tool calls.")
    ] = "forkserver",
    distractors: Annotated[
        int,
        typer.Option(
            "--distractors",
            min=0,
            help="Irrelevant tools per similarity band offered with every reset (from the arena's split).",
        ),
    ] = 0,
    distractor_seed: Annotated[
        int, typer.Option("--distractor-seed", help="With the arena id and reset's episode, seeds the draw.")
    ] = 0,
) -> None:
    """Serve the arenas as an OpenEnv environment (WebSocket /ws, TaskProvider routes, /health) until
    SIGINT/SIGTERM; ASTRA_ARENAS_TOKEN, when set, is the bearer token every client must send."""
    from astra_synth.arenas.distractors import DistractorConfig, local_samplers
    from astra_synth.arenas.server import ArenaCorpus, ArenaServer, ArenaServerConfig, serve_arenas

    try:
        corpus = ArenaCorpus.from_files(files)
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    config = ArenaServerConfig(max_sessions=max_sessions, idle_timeout_s=idle_timeout)
    samplers = None
    if distractors:
        typer.echo("distractors: embedding the tool pool (once per machine, then cached)…", err=True)
        drawing = DistractorConfig(k_per_band=distractors, seed=distractor_seed)
        samplers = local_samplers(corpus.splits, drawing)
        pools = ", ".join(f"{name}={len(sampler.pool)} tools" for name, sampler in samplers.items())
        typer.echo(f"distractors: up to {distractors} per band, seed {distractor_seed} ({pools})", err=True)
    with get_executor(executor) as sandbox:
        if sandbox.refusal:
            typer.echo(f"refusing to serve: {sandbox.refusal}", err=True)
            raise typer.Exit(1)
        splits = ", ".join(f"{name}={len(arenas)}" for name, arenas in corpus.splits.items())
        typer.echo(f"arena server on ws://{host}:{port}/ws ({splits}; {max_sessions} sessions)", err=True)
        serve_arenas(ArenaServer(corpus, sandbox, config, distractors=samplers), host, port)
