"""``astra report RUN_DIR``: the static HTML report of a run directory (mounted by cli.py)."""

from __future__ import annotations

import sys
import webbrowser
from pathlib import Path
from typing import Annotated

import typer

from astra_synth.errors import InputError
from astra_synth.report.pages import write_report
from astra_synth.runs.jsonl import StoreCorrupted

app = typer.Typer()


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="Run directory (trajectories, arenas, training or demo).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="Where the pages go; default RUN_DIR/report.")
    ] = None,
    open_browser: Annotated[bool, typer.Option("--open", help="Open the report in a browser.")] = False,
) -> None:
    """Funnel, reject reasons, scores, usage and cost, tool graphs, arena cards, trajectory viewer, curves."""
    try:
        index = write_report(run_dir, out, progress=sys.stderr.isatty())
    except (InputError, StoreCorrupted) as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    typer.echo(str(index))
    if open_browser:
        webbrowser.open(index.resolve().as_uri())
