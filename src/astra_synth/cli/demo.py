"""``astra demo``: mounted by cli.py; the demo (and torch with it) is imported only when it runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from astra_synth.config import ConfigError, load_config

app = typer.Typer()


@app.command("demo")
def demo(
    config: Annotated[Path, typer.Option("--config", help="Demo config (YAML).")] = Path(
        "examples/demo.yaml"
    ),
    run_dir: Annotated[
        Path, typer.Option("--run-dir", help="Where everything goes; re-run to resume.")
    ] = Path("runs/demo"),
) -> None:
    """Arenas from seeds → SFT on golden episodes → GRPO → held-out evaluation before/after, on the CPU."""
    from astra_synth.demo import DemoConfig, run_demo
    from astra_synth.evaluation.endpoint_errors import EndpointErrors
    from astra_synth.llm.preflight import EndpointUnavailable

    try:
        cfg = load_config(DemoConfig, config)
    except ConfigError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    console = Console()
    try:
        summary = run_demo(cfg, run_dir, console)
    except (EndpointUnavailable, EndpointErrors) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    table = Table(title=f"held-out arenas ({summary.heldout_arenas}): before vs after training")
    table.add_column("metric")
    table.add_column("before", justify="right")
    table.add_column("after", justify="right")
    for key, value in summary.before.items():
        table.add_row(key, f"{value:.3f}", f"{summary.after[key]:.3f}")
    console.print(table)
    arenas = summary.arenas
    console.print(f"arenas synthesized: {arenas.published.rows if arenas.published else 0} ({arenas.status})")
    console.print(
        f"SFT loss {summary.sft_losses[:1]} → {summary.sft_losses[-1:]}; RL rewards {summary.rl_rewards}"
    )
    console.print(f"run directory: {run_dir}  (summary.json, arenas/, golden.jsonl, sft/, rl/, steps/)")
    console.print(f"run report: {summary.report}  (static HTML, open it in any browser)")
    console.print(f"trained model: {summary.model}  — serve it with: astra serve --model {summary.model}")
