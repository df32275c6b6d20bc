"""What the pipelines' ``run`` commands share: run-dir options, loading the config, publishing, the funnel.

Both pipelines resume from a run directory and take the CLI's global endpoint options over their config
file; one definition keeps their flags, help, exit status for a bad config, and funnel table the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from astra_synth.config import ConfigError, ContaminationConfig, GlobalOptions, load_config
from astra_synth.errors import InputError
from astra_synth.export.publish import publish
from astra_synth.runs.rundir import RunDirError
from astra_synth.runs.summary import RunSummary

T = TypeVar("T", bound=BaseModel)

RunDirOption = Annotated[Path, typer.Option("--run-dir", help="Run directory; an existing one is resumed.")]
RetryRejectedOption = Annotated[
    bool, typer.Option("--retry-rejected", help="Re-run items rejected by earlier sessions.")
]


def load_run_config(ctx: typer.Context, model: type[T], path: Path) -> T:
    """``path`` read into ``model`` with the global ``--base-url``/``--model`` applied; a bad config prints
    its message (file and fields) and exits with status 2."""
    options = ctx.find_root().obj or GlobalOptions()
    try:
        return load_config(model, path, options.overrides())
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def publish_finished(
    summary: RunSummary, run_dir: Path, contamination: ContaminationConfig, parquet: bool
) -> RunSummary:
    """Publish a run that finished (firewall → data files → card); an unfinished one is left as it is."""
    if summary.status != "finished":
        return summary
    try:
        return publish(run_dir, contamination, parquet=parquet)
    except (InputError, RunDirError) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc


def print_funnel(summary: RunSummary, title: str) -> None:
    """The stage rows of a run summary as one table, top reject reasons included."""
    table = Table(title=f"{title} ({summary.status})")
    columns = ("stage", "inputs", "ok", "outputs", "rejected", "errors", "LLM calls (on rejected)")
    for column in (*columns, "top reject reasons"):
        table.add_column(column, justify="left" if column in ("stage", "top reject reasons") else "right")
    for s in summary.stages:
        reasons = ", ".join(f"{k}={v}" for k, v in list(s.reject_reasons.items())[:3])
        counts = (s.inputs, s.ok, s.outputs, s.rejected, s.errors)
        calls = f"{s.llm_calls} ({s.rejected_llm_calls})"
        table.add_row(s.stage, *map(str, counts), calls, reasons)
    Console().print(table)
    if summary.contamination is not None:
        c = summary.contamination
        typer.echo(f"contamination firewall: {c.dropped} of {c.checked} dropped ({c.method})")
