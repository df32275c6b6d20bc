"""``astra tools``: import tool servers into a registry file and inspect it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from astra_synth.errors import InputError
from astra_synth.runs.jsonl import JsonlAppender
from astra_synth.tools.astra_format import import_server_file
from astra_synth.tools.mcp import LiveTransport, describe_transport, import_live
from astra_synth.tools.normalize import FilterConfig, ImportResult
from astra_synth.tools.registry import load_servers, merge_servers, write_servers
from astra_synth.tools.server_venvs import ensure_server_venv, known_servers
from astra_synth.tools.spec import EmulatedTransport, HttpTransport, ServerRecord, StdioTransport
from astra_synth.venvs import VenvError

app = typer.Typer(help="Import and inspect tool servers (MCP).", no_args_is_help=True)
_out = Console()
_err = Console(stderr=True)

_MinTools = Annotated[
    int, typer.Option("--min-tools", min=1, help="Drop servers with fewer usable tools (paper: 3).")
]
_Rejects = Annotated[
    Path | None, typer.Option("--rejects", help="Also append every drop to this JSONL file.")
]
_Out = Annotated[Path, typer.Option("--out", help="Registry JSONL file (created or updated).")]


def _transport_text(server: ServerRecord) -> str:
    t = server.transport
    return "emulated" if isinstance(t, EmulatedTransport) else describe_transport(t)


def _report(result: ImportResult) -> None:
    """What was kept and what was dropped, with reasons."""
    if result.servers:
        kept = Table(title="kept", title_justify="left")
        for column in ("server", "domain", "tools", "transport"):
            kept.add_column(column)
        for s in result.servers:
            kept.add_row(s.id, s.domain, str(len(s.tools)), _transport_text(s))
        _out.print(kept)
    if result.rejects:
        dropped = Table(title="dropped", title_justify="left")
        for column in ("server", "tool", "reason", "detail"):
            dropped.add_column(column, overflow="fold")
        for r in result.rejects:
            dropped.add_row(r.server, r.tool or "(whole server)", r.reason, r.detail)
        _err.print(dropped)
    tools = sum(len(s.tools) for s in result.servers)
    _out.print(f"kept {len(result.servers)} server(s), {tools} tool(s); dropped {len(result.rejects)}")


def _save(result: ImportResult, out: Path, rejects: Path | None) -> None:
    """Merge into ``out`` (same ids replaced), append drops to ``rejects``; exit 1 if nothing was kept."""
    try:
        existing = load_servers(out) if out.exists() and out.stat().st_size else []
    except InputError as exc:
        _err.print(f"error: cannot update {out}: {exc}")
        raise typer.Exit(1) from exc
    write_servers(out, merge_servers(existing, result.servers))
    if rejects is not None and result.rejects:
        appender = JsonlAppender(rejects)
        appender.open()
        for reject in result.rejects:
            appender.append(reject)
        appender.close()
    _report(result)
    if not result.servers:
        raise typer.Exit(1)


@app.command(
    "import-mcp",
    context_settings={"ignore_unknown_options": True},
)
def import_mcp(
    out: _Out,
    command: Annotated[
        list[str] | None, typer.Argument(help="Server command after `--`, e.g. -- python -m mcp_server_time")
    ] = None,
    url: Annotated[str | None, typer.Option("--url", help="A streamable-HTTP MCP endpoint.")] = None,
    server_id: Annotated[str | None, typer.Option("--id", help="Server id (default: its own name).")] = None,
    domain: Annotated[str, typer.Option("--domain", help="Domain label for the server.")] = "general",
    title: Annotated[str | None, typer.Option("--title", help="Display title (default: its own).")] = None,
    min_tools: _MinTools = 3,
    timeout_s: Annotated[
        float, typer.Option("--timeout", min=1, help="Seconds to wait for the handshake.")
    ] = 60.0,
    rejects: _Rejects = None,
) -> None:
    """List a live MCP server's tools (stdio command or --url) and add it to a registry file."""
    transport: LiveTransport
    if url and not command:
        transport = HttpTransport(url=url)
    elif command and not url:
        transport = StdioTransport(command=command[0], args=list(command[1:]))
    else:
        _err.print("error: give either a server command after `--` or --url, not both")
        raise typer.Exit(2)
    result = asyncio.run(
        import_live(
            transport,
            server_id=server_id,
            domain=domain,
            title=title,
            policy=FilterConfig(min_tools=min_tools),
            connect_timeout_s=timeout_s,
        )
    )
    _save(result, out, rejects)


@app.command("server-venv")
def server_venv(
    server: Annotated[str, typer.Argument(help=f"One of: {', '.join(known_servers())}.")],
) -> None:
    """Build (once per machine) the pinned venv of a server that needs its own, and print its command.

    For servers written against the mcp 1.x API; our client speaks to them across protocol versions.
    """
    try:
        with _err.status(f"building the {server} venv (once per machine; network to PyPI)"):
            venv = ensure_server_venv(server)
    except (InputError, VenvError) as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(1) from exc
    usage = f"import it with: astra tools import-mcp --out REGISTRY -- {venv.executable} ARGS..."
    typer.echo(usage, err=True)
    typer.echo(str(venv.executable))


@app.command("import")
def import_file(
    source: Annotated[
        Path,
        typer.Argument(exists=True, dir_okay=False, help="ASTRA mcp_servers.jsonl or ours."),
    ],
    out: _Out,
    min_tools: _MinTools = 3,
    rejects: _Rejects = None,
) -> None:
    """Normalise and filter a server file (ASTRA shape or ServerRecord lines) into a registry file."""
    _save(import_server_file(source, FilterConfig(min_tools=min_tools)), out, rejects)


@app.command("list")
def list_servers(registry: Annotated[Path, typer.Argument(help="Registry JSONL file.")]) -> None:
    """Show the servers of a registry file and their tools."""
    try:
        servers = load_servers(registry)
    except InputError as exc:
        _err.print(f"error: {exc}")
        raise typer.Exit(1) from exc
    table = Table()
    for column in ("server", "domain", "transport", "tools"):
        table.add_column(column, overflow="fold")
    for s in servers:
        table.add_row(
            s.id, s.domain, _transport_text(s), f"{len(s.tools)}: " + ", ".join(t.name for t in s.tools)
        )
    _out.print(table)
