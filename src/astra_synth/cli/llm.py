"""``astra serve-local``: run the embedded model server in the foreground for other tools to use."""

from __future__ import annotations

import signal
from types import FrameType

import typer

from astra_synth.llm.local import EmbeddedServer, LocalServerConfig, LocalServerError, default_threads

app = typer.Typer()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@app.command("serve-local")
def serve_local(
    port: int | None = typer.Option(None, "--port", min=1, max=65535, help="Listen port (default: free)."),
    n_ctx: int = typer.Option(4096, "--n-ctx", min=256, help="Context window in tokens."),
    threads: int = typer.Option(
        default_threads(), "--threads", min=1, help="llama.cpp CPU threads (default: cores - 1)."
    ),
) -> None:
    """Serve the embedded SmolLM2-135M model (llama.cpp, OpenAI-compatible) until Ctrl-C or SIGTERM."""
    config = LocalServerConfig(port=port, n_ctx=n_ctx, n_threads=threads)
    # SIGTERM takes the same clean path as Ctrl-C: leave the block below, which stops the server. SIGINT is
    # set explicitly too: a process started in the background by a shell inherits it as ignored.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    server = EmbeddedServer(config)
    try:
        with server:
            typer.echo(f"base_url: {server.base_url}")
            typer.echo(f"model: {server.endpoint().model}")
            typer.echo(
                f"started in {server.start_time_s:.1f} s; stop with Ctrl-C. "
                f"Use it with: --base-url {server.base_url}",
                err=True,
            )
            code = server.wait()
            typer.echo(f"llama.cpp server exited with code {code}\n{server.log_tail()}", err=True)
            raise typer.Exit(1)
    except LocalServerError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
