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
    """Arenas from seeds; SFT on warm-up families → GRPO on RL families → base/SFT/SFT+GRPO, on the CPU."""
    from astra_synth.demo import DemoConfig, run_demo
    from astra_synth.evaluation.endpoint_errors import EndpointErrors
    from astra_synth.experiments.scores import STAGE_NAMES
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
    result = summary.experiment
    table = Table(title="F1 ± 95 % CI (success rate) per family group: base → SFT → SFT+GRPO")
    table.add_column("family group")
    for name in STAGE_NAMES.values():
        table.add_column(name, justify="right")
    for split, name in (("warm-up", "warm-up (SFT'd), held-out"), ("rl", "RL (GRPO only), held-out"),
                        ("unseen", "unseen (never trained)")):  # fmt: skip
        cells = []
        for stage in STAGE_NAMES:
            s = result.score(split, stage)  # type: ignore[arg-type]
            cells.append(f"{s.f1:.3f} ± {s.ci95:.3f} ({s.success_rate:.2f})" if s else "—")
        table.add_row(name, *cells)
    console.print(table)
    for gain in result.gains():
        console.print(gain.describe())
    arenas = summary.arenas
    console.print(f"arenas synthesized: {arenas.published.rows if arenas.published else 0} ({arenas.status})")
    console.print(
        f"SFT: {result.sft_examples} conversations, loss {result.sft_losses[:1]} → {result.sft_losses[-1:]}"
    )
    console.print(f"GRPO reward per step: {[round(r, 3) for r in result.rl_rewards]}")
    console.print(f"run directory: {run_dir}  (summary.json, arenas/, sft/, rl/, steps/)")
    console.print(f"run report: {summary.report}  (static HTML, open it in any browser)")
    console.print(f"trained model: {summary.model}  — serve it with: astra serve --model {summary.model}")
