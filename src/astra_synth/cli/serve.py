"""``astra serve``: a transformers checkpoint as an OpenAI-compatible chat endpoint (the server is
:mod:`astra_synth.training.serve`)."""

from __future__ import annotations

import typer
import uvicorn

from astra_synth.training.serve import ChatModel, build_app

app = typer.Typer()


@app.command("serve")
def serve(
    model: str = typer.Option("embedded", "--model", help="Checkpoint folder, HF id, or 'embedded'."),
    host: str = typer.Option("127.0.0.1", "--host"),
    port: int = typer.Option(8000, "--port", min=1, max=65535),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1),
) -> None:
    """Serve a transformers checkpoint as an OpenAI-compatible chat endpoint with tool calling."""
    chat = ChatModel(model, max_new_tokens=max_new_tokens)
    typer.echo(f"base_url: http://{host}:{port}/v1", err=False)
    typer.echo(f"model: {chat.name}")
    uvicorn.run(build_app(chat), host=host, port=port, log_level="warning")
