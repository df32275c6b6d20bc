"""``astra check-contamination FILE``: the export firewall, run on any exported file."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from astra_synth.config import ContaminationConfig
from astra_synth.evaluation.bfcl import BfclError
from astra_synth.firewall.contamination import ContaminationReport, Firewall
from astra_synth.firewall.probes import InputFormat, read_probes
from astra_synth.runs.jsonl import write_json_atomic

app = typer.Typer()

_SHOWN = 20


def _print(report: ContaminationReport, console: Console) -> None:
    s = report.summary
    console.print(f"Compared with {', '.join(s.benchmarks)} ({s.method})")
    table = Table()
    table.add_column("reason")
    table.add_column("items", justify="right")
    for reason, count in s.by_reason.items():
        table.add_row(reason, str(count))
    table.add_row("[bold]dropped[/]", f"[bold]{s.dropped}[/] of {s.checked}")
    console.print(table)
    for verdict in report.verdicts[:_SHOWN]:
        hit = verdict.hits[0]
        console.print(
            f"  {escape(verdict.id)}: {verdict.reason} ~ {escape(hit.ref)} ({escape(hit.detail[:80])})"
        )
    if len(report.verdicts) > _SHOWN:
        console.print(f"  … and {len(report.verdicts) - _SHOWN} more (see --json)")


@app.command("check-contamination")
def check_contamination(
    file: Annotated[
        Path, typer.Argument(help="An exported sft.jsonl or arenas.jsonl.", exists=True, dir_okay=False)
    ],
    benchmark: Annotated[
        list[Path] | None,
        typer.Option(
            "--benchmark",
            "-b",
            help="τ²-bench tasks, ACEBench or tool-doc file to compare against too (repeatable).",
            exists=True,
            dir_okay=False,
        ),
    ] = None,
    bfcl: Annotated[
        bool, typer.Option("--bfcl/--no-bfcl", help="Compare against BFCL-v3 multi-turn (pinned).")
    ] = True,
    fmt: Annotated[
        InputFormat, typer.Option("--format", help="What FILE holds; auto reads its first line.")
    ] = "auto",
    embedder: Annotated[
        Literal["auto", "local", "none"],
        typer.Option("--embedder", help="Text embeddings (none: n-gram overlap only)."),
    ] = "auto",
    json_out: Annotated[
        Path | None, typer.Option("--json", help="Write the full report (JSON) here.")
    ] = None,
) -> None:
    """Check an exported file against the benchmarks, as the exports do.

    Exit code: 0 when no item is contaminated, 1 when some are (they are listed), 2 on bad input.
    """
    try:
        config = ContaminationConfig(bfcl=bfcl, benchmarks=benchmark or [], embedder=embedder)
        probes = read_probes(file, fmt)
        report = Firewall.from_config(config).check(probes)
    except (BfclError, ValueError) as exc:  # InputError and pydantic errors are ValueErrors
        typer.echo(str(exc), err=True)
        raise typer.Exit(2) from exc
    if json_out is not None:
        write_json_atomic(json_out, report.model_dump(mode="json"))
    _print(report, Console())
    if report.summary.dropped:
        raise typer.Exit(1)
