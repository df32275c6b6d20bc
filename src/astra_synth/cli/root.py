"""The ``astra`` command line. Thin: parses options and hands them to the package; no logic here.

Each command group is a module of this package, named after the package it drives, and is mounted here.
"""

from __future__ import annotations

from typing import Literal

import typer

from astra_synth import __version__
from astra_synth.cli import arenas as arenas_commands
from astra_synth.cli import evaluation as eval_commands
from astra_synth.cli import export as export_commands
from astra_synth.cli import llm as llm_commands
from astra_synth.cli import report as report_commands
from astra_synth.cli import sandbox as sandbox_commands
from astra_synth.cli import tools as tools_commands
from astra_synth.cli import training as training_commands
from astra_synth.cli import trajectories as trajectories_commands
from astra_synth.cli.contamination import app as contamination_app
from astra_synth.cli.demo import app as demo_app
from astra_synth.cli.serve import app as serve_app
from astra_synth.config import GlobalOptions

app = typer.Typer(
    name="astra",
    help="Synthesize tool-use trajectories and verifiable RL arenas, train and evaluate tool-using agents.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"astra-synth {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    ctx: typer.Context,
    base_url: str | None = typer.Option(
        None,
        "--base-url",
        envvar="ASTRA_BASE_URL",
        help="OpenAI-compatible endpoint (…/v1). Omitted: the embedded llama.cpp server runs per command.",
    ),
    model: str | None = typer.Option(
        None, "--model", envvar="ASTRA_MODEL", help="Model name at the endpoint."
    ),
    thinking: Literal["on", "off"] | None = typer.Option(
        None,
        "--thinking",
        envvar="ASTRA_THINKING",
        help="Qwen3-style thinking switch for the pipelines' endpoint (docs/endpoints.md).",
    ),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print version."),
) -> None:
    ctx.obj = GlobalOptions(base_url=base_url, model=model, thinking=thinking)


app.add_typer(llm_commands.app)  # serve-local
app.add_typer(serve_app)  # serve
app.add_typer(tools_commands.app, name="tools")
app.add_typer(trajectories_commands.app, name="trajectories")
app.add_typer(arenas_commands.app, name="arenas")
app.add_typer(sandbox_commands.app, name="sandbox")
app.add_typer(training_commands.app, name="train")
app.add_typer(eval_commands.app, name="eval")
app.add_typer(contamination_app)  # check-contamination
app.add_typer(export_commands.app, name="export")
app.add_typer(report_commands.app)  # report
app.add_typer(demo_app)  # demo


def main() -> None:
    app()


if __name__ == "__main__":
    main()
