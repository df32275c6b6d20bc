"""``astra sandbox``: the tier probe, one-off runs and the HTTP service. Thin: parse, call, print."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import SandboxLimits

app = typer.Typer(help="Isolated execution of tool code: tier probe, one-off runs, the HTTP service.")

_EXECUTOR_HELP = "forkserver (warm pool, default) or subprocess (fresh interpreter per call)."


@app.command()
def probe(as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False) -> None:
    """Print the strongest isolation tier and what each layer reported; exit 1 if none is usable."""
    from astra_synth.sandbox.probe import probe as run_probe

    report = run_probe()
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
    else:
        typer.echo(f"tier: {report.tier or 'none — untrusted code is refused'}")
        typer.echo(f"available: {', '.join(report.available) or '-'}")
        for layer in report.layers:
            typer.echo(f"  [{'ok' if layer.ok else '--'}] {layer.name}: {layer.detail}")
    if report.tier is None:
        raise typer.Exit(1)


@app.command()
def run(
    code: Annotated[Path, typer.Option("--code", exists=True, dir_okay=False, help="Tool source file.")],
    fn: Annotated[str, typer.Option("--fn", help="Function to call.")],
    args: Annotated[str, typer.Option("--args", help="Keyword arguments as a JSON object.")] = "{}",
    timeout: Annotated[float | None, typer.Option("--timeout", min=0.001, help="Limit, s.")] = None,
    executor: Annotated[str, typer.Option("--executor", help=_EXECUTOR_HELP)] = "forkserver",
) -> None:
    """Run FN(**ARGS) from CODE once in the sandbox and print the ToolResult as JSON (exit 1 unless ok)."""
    try:
        parsed: Any = json.loads(args)
    except json.JSONDecodeError as exc:
        raise typer.BadParameter(f"not JSON: {exc}", param_hint="--args") from exc
    if not isinstance(parsed, dict):
        raise typer.BadParameter("must be a JSON object", param_hint="--args")
    limits = SandboxLimits(timeout_s=timeout) if timeout else SandboxLimits()
    options: dict[str, Any] = {"workers": 1} if executor == "forkserver" else {"max_concurrency": 1}
    try:
        sandbox = get_executor(executor, limits, **options)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--executor") from exc
    with sandbox:
        result = sandbox.execute(sandbox.load(code.read_text(encoding="utf-8")), fn, parsed)
    typer.echo(result.model_dump_json())
    if not result.ok:
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Interface; the service runs code.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port")] = 8790,
    workers: Annotated[int | None, typer.Option("--workers", min=1, help="Fork-server workers.")] = None,
    timeout: Annotated[float, typer.Option("--timeout", min=0.001, help="Default limit per call, s.")] = 2.0,
    executor: Annotated[str, typer.Option("--executor", help=_EXECUTOR_HELP)] = "forkserver",
) -> None:
    """Serve the executor over HTTP (/v1/load, /v1/execute_batch); ASTRA_SANDBOX_TOKEN: bearer token."""
    from astra_synth.sandbox.http import serve as run_service

    options: dict[str, Any] = {"workers": workers} if executor == "forkserver" else {}
    with get_executor(executor, SandboxLimits(timeout_s=timeout), **options) as sandbox:
        if sandbox.refusal:
            typer.echo(f"refusing to serve: {sandbox.refusal}", err=True)
            raise typer.Exit(1)
        typer.echo(
            f"sandbox service on http://{host}:{port} ({getattr(sandbox, 'tier', executor)})", err=True
        )
        run_service(sandbox, host, port)
