"""``astra trajectories run``: pipeline A from a tool registry to a judged SFT set."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from astra_synth.errors import InputError
from astra_synth.cli.run_options import RetryRejectedOption, RunDirOption, load_run_config
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
    """Graph → walks → verified chains → tasks → augment → dedupe → score → rollouts → judge → SFT export."""
    cfg = load_run_config(ctx, TrajectoriesConfig, config)
    try:
        funnel = asyncio.run(run_trajectories(cfg, run_dir, retry_rejected=retry_rejected))
    except InputError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    table = Table(title=f"trajectory funnel ({funnel.status}), {funnel.servers} server(s)")
    for column in ("stage", "inputs", "ok", "outputs", "rejected", "errors", "top reject reasons"):
        table.add_column(column, justify="left" if column in ("stage", "top reject reasons") else "right")
    for s in funnel.stages:
        reasons = ", ".join(f"{k}={v}" for k, v in list(s.reject_reasons.items())[:3])
        table.add_row(
            s.stage, str(s.inputs), str(s.ok), str(s.outputs), str(s.rejected), str(s.errors), reasons
        )
    Console().print(table)
    typer.echo(
        f"tasks after dedupe ({funnel.dedupe_method}): {funnel.deduped_tasks}  "
        f"rollouts: {funnel.rollout_status}  tool routes: {funnel.tool_routes}"
    )
    typer.echo(f"SFT rows: {funnel.sft_rows}  LLM calls: {funnel.llm_calls}  ->  {run_dir / 'sft'}")
    if funnel.status != "finished":
        raise typer.Exit(1)
