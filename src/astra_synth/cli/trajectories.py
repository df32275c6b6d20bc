"""``astra trajectories run``: pipeline A from a tool registry to a judged SFT set."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer

from astra_synth.cli.run_options import (
    RetryRejectedOption,
    RunDirOption,
    load_run_config,
    print_funnel,
    publish_finished,
)
from astra_synth.errors import InputError
from astra_synth.trajectories.pipeline import TrajectoriesConfig, run_trajectories

app = typer.Typer(help="Pipeline A: SFT trajectories from tool docs.", no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    config: Annotated[
        Path, typer.Option("--config", help="Trajectories config (YAML).", exists=True, dir_okay=False)
    ],
    run_dir: RunDirOption,
    retry_rejected: RetryRejectedOption = False,
) -> None:
    """Graph → walks → verified chains → tasks → augment → dedupe → score → rollouts → judge, then publish:
    contamination firewall → sft.jsonl / sft.parquet → dataset card."""
    cfg = load_run_config(ctx, TrajectoriesConfig, config)
    try:
        summary = asyncio.run(run_trajectories(cfg, run_dir, retry_rejected=retry_rejected))
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    summary = publish_finished(summary, run_dir, cfg.contamination, cfg.parquet)
    print_funnel(summary, f"trajectory funnel, {summary.inputs} server(s)")
    dedupe = summary.filter("dedupe")
    typer.echo(
        f"tasks after dedupe ({dedupe.method if dedupe else None}): {len(dedupe.kept) if dedupe else 0}  "
        f"rollouts: {summary.rollout_status}  tool routes: {summary.tool_routes}"
    )
    rows = summary.published.rows if summary.published else 0
    typer.echo(f"SFT rows: {rows}  LLM calls: {summary.llm_calls}  ->  {run_dir / 'sft'}")
    if summary.status != "finished":
        raise typer.Exit(1)
