"""``astra serve``: a transformers checkpoint as an OpenAI-compatible chat endpoint (the server is
:mod:`astra_synth.training.serve`)."""

from __future__ import annotations

import typer

from astra_synth.training.serve import ChatModel, ServeConfig, serve

app = typer.Typer()


@app.command("serve")
def serve_command(
    model: str = typer.Option("embedded", "--model", help="Checkpoint folder, HF id, or 'embedded'."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    max_new_tokens: int = typer.Option(
        256, "--max-new-tokens", min=1, help="Default and cap of a request's max_tokens."
    ),
    context: int | None = typer.Option(
        None, "--context", min=2, help="Prompt + completion tokens (default: the model's context)."
    ),
    max_body_bytes: int = typer.Option(
        1024 * 1024, "--max-body-bytes", min=1024, help="Larger request bodies are refused (413)."
    ),
    max_queue: int = typer.Option(
        8, "--max-queue", min=0, help="Requests that may wait for the model; beyond it 429."
    ),
) -> None:
    """Serve a transformers checkpoint as an OpenAI-compatible chat endpoint with tool calling."""
    config = ServeConfig(
        max_new_tokens=max_new_tokens,
        context=context,
        max_body_bytes=max_body_bytes,
        max_queue=max_queue,
    )
    chat = ChatModel(model, config)
    typer.echo(f"base_url: http://{host}:{port}/v1")
    typer.echo(f"model: {chat.name} (context {chat.context} tokens)")
    serve(chat, host, port)
