"""``astra eval …``: evaluate any OpenAI-compatible endpoint (or the embedded model) on held-out arenas."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from astra_synth.arenas.records import read_arenas
from astra_synth.config import EndpointConfig, GlobalOptions, load_config
from astra_synth.errors import InputError
from astra_synth.evaluation.agent import AgentConfig
from astra_synth.evaluation.arenas import ArenaEvalConfig, ArenaEvalReport, Summary, evaluate_arenas
from astra_synth.llm.client import LLMClient
from astra_synth.llm.local import endpoint_session
from astra_synth.runs.jsonl import write_json_atomic
from astra_synth.sandbox import get_executor

app = typer.Typer(help="Evaluate a model endpoint: held-out arenas (BFCL-v3 multi-turn: issue #7).")


def _fmt(s: Summary) -> str:
    return f"{s.mean:.3f}" + (f" ± {s.ci95:.3f}" if s.ci95 is not None else "")


def print_report(report: ArenaEvalReport) -> None:
    table = Table(
        title=f"held-out arenas: {report.model} ({report.arenas} arenas × {report.repeats} repeats)"
    )
    for col in ("success", "F1", "recall", "precision", "calls/arena", "turns/arena"):
        table.add_column(col, justify="right")
    table.add_row(
        _fmt(report.success_rate),
        _fmt(report.f1),
        _fmt(report.recall),
        _fmt(report.precision),
        f"{report.calls_per_arena:.2f}",
        f"{report.turns_per_arena:.2f}",
    )
    Console().print(table)


@app.command("arenas")
def arenas(
    ctx: typer.Context,
    arenas_file: Annotated[
        Path, typer.Option("--arenas", help="Arena JSONL file.", exists=True, dir_okay=False)
    ],
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, help="Episodes per arena (different seeds).")
    ] = 1,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    max_turns: Annotated[int, typer.Option("--max-turns", min=1, help="Model calls per episode.")] = 12,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1)] = 4,
    out: Annotated[Path | None, typer.Option("--out", help="Write the full report (JSON) here.")] = None,
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
    config = ArenaEvalConfig(agent=agent, repeats=repeats, seed=seed, concurrency=concurrency)

    async def main(ep: EndpointConfig) -> ArenaEvalReport:
        async with LLMClient(ep) as llm:
            with get_executor(config.executor) as sandbox:
                return await evaluate_arenas(items, llm, sandbox, config)

    with endpoint_session(endpoint) as ep:
        report = asyncio.run(main(ep))
    print_report(report)
    if out is not None:
        write_json_atomic(out, report.model_dump(mode="json"))
        typer.echo(f"report: {out}")
    typer.echo(
        f"RESULT arenas={report.arenas} success_rate={report.success_rate.mean:.4f} f1={report.f1.mean:.4f}"
    )
