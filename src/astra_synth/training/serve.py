"""An OpenAI-compatible chat endpoint with tool calling for a transformers checkpoint.

It lets a model trained by ``astra train`` (or the embedded one) be evaluated by the same commands as any
endpoint (``astra eval arenas --base-url …``). The checkpoint's chat template renders ``tools`` (TRL's
Qwen3-2507 template for converted models: hermes ``<tool_call>{json}</tool_call>``); generated tool calls are
parsed from that text into OpenAI ``tool_calls`` with JSON-string arguments (every block, malformed ones
included, as written). A forced ``tool_choice`` prefills
the call's opening with the chosen name, so the answer is always a call to that tool. Generation is
serialised (one CPU model); no streaming. On a GPU, prefer vLLM with ``--enable-auto-tool-choice
--tool-call-parser hermes`` on the same checkpoint.

Hardened as vLLM's OpenAI server is, because one bad request must not take the machine down: a body over
``max_body_bytes`` is refused (413) before it is read; a prompt that with its ``max_tokens`` does not fit
the model's context is refused (400, both numbers) after tokenizing and before generating; ``max_tokens``
is clamped to the server's cap and the context (the effective value is in ``usage.max_tokens``); at most
``max_queue`` requests wait behind the one generating (beyond: 429 with Retry-After); SIGTERM stops a
generation at its next token (the request gets 503) and the server within seconds.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import uvicorn
from pydantic import Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from astra_synth.agent.chat import content_without_calls, parse_hermes_calls
from astra_synth.config import EndpointConfig, StrictModel
from astra_synth.training.models import load_tokenizer, resolve_model


def parse_tool_calls(text: str) -> tuple[str, list[dict[str, Any]]]:
    """(content without the call blocks, OpenAI tool calls) from hermes-style generated text.

    Every block becomes a call, as written: malformed ones are neither dropped nor repaired here, so the
    client's parser (:mod:`astra_synth.agent.chat`) applies the one rule for them and the model pays for
    them in evaluation.
    """
    calls = [
        {**call.to_openai(), "id": f"{call.id}_{uuid.uuid4().hex[:8]}"} for call in parse_hermes_calls(text)
    ]
    return content_without_calls(text), calls


def forced_tool(body: dict[str, Any]) -> str | None:
    choice = body.get("tool_choice")
    if isinstance(choice, dict):
        name = (choice.get("function") or {}).get("name")
        return name if isinstance(name, str) else None
    return None


class ServeConfig(StrictModel):
    max_new_tokens: int = Field(
        default=256, ge=1, description="Default and cap of max_tokens (larger requests are clamped)."
    )
    context: int | None = Field(
        default=None, ge=2, description="Prompt + completion tokens; default: the model's own context."
    )
    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Larger request bodies get 413 before being read."
    )
    max_queue: int = Field(
        default=8, ge=0, description="Requests that may wait behind the one generating; beyond: 429."
    )
    retry_after_s: int = Field(default=5, ge=1, description="Retry-After sent with a 429.")


class Refused(Exception):
    """A request answered with an error status instead of a completion."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return JSONResponse(
            {"error": {"message": self.message, "code": self.status}},
            status_code=self.status,
            headers=self.headers,
        )


@dataclass
class Prepared:
    """A request tokenized and checked against the context, ready to generate."""

    body: dict[str, Any]
    inputs: Any
    prefill: str
    max_tokens: int
    requested: int | None


class ChatModel:
    """One loaded checkpoint; :meth:`prepare` checks a request body, :meth:`generate` answers it."""

    def __init__(self, model: str, config: ServeConfig | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.config = config or ServeConfig()
        self.name = model
        path = resolve_model(model)
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model.eval()  # type: ignore[no-untyped-call]
        self.context = self.config.context or int(self.model.config.max_position_embeddings)
        self._lock = threading.Lock()
        self._stopping = threading.Event()

    def stop(self) -> None:
        """End the generation in progress at its next token and refuse the ones waiting (shutdown)."""
        self._stopping.set()

    def prepare(self, body: dict[str, Any]) -> Prepared:
        """Tokenize and check: 400 when the prompt plus ``max_tokens`` does not fit the context."""
        requested = body.get("max_tokens") or body.get("max_completion_tokens")
        if requested is not None and (not isinstance(requested, int) or requested < 1):
            raise Refused(400, f"max_tokens must be a positive integer, got {requested!r}")
        tools = body.get("tools") or None
        names = {t.get("function", {}).get("name") for t in tools or []}
        try:
            prompt = self.tokenizer.apply_chat_template(
                body["messages"], tools=tools, add_generation_prompt=True, tokenize=False
            )
        except Exception as exc:  # the template rejects malformed messages in its own ways
            raise Refused(400, f"messages cannot be rendered by the chat template: {exc}") from exc
        forced = forced_tool(body) if tools else None
        prefill = f'<tool_call>\n{{"name": "{forced}", "arguments": ' if forced in names else ""
        inputs = self.tokenizer(prompt + prefill, return_tensors="pt", add_special_tokens=False)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        room = self.context - prompt_tokens
        if room < 1:
            raise Refused(
                400,
                f"the prompt is {prompt_tokens} tokens; this model's context is {self.context} tokens",
            )
        if requested is not None and requested > room:
            raise Refused(
                400,
                f"the prompt ({prompt_tokens} tokens) plus max_tokens ({requested}) is "
                f"{prompt_tokens + requested} tokens; this model's context is {self.context} tokens",
            )
        limit = min(requested or self.config.max_new_tokens, self.config.max_new_tokens, room)
        return Prepared(body=body, inputs=inputs, prefill=prefill, max_tokens=limit, requested=requested)

    def generate(self, request: Prepared) -> dict[str, Any]:
        """One completion (serialised); 503 when the server is stopping."""
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        stopping = self._stopping

        class StopFlag(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stopping.is_set(), dtype=torch.bool)

        body, inputs = request.body, request.inputs
        temperature = float(body.get("temperature") or 0.0)
        with self._lock, torch.no_grad():
            if stopping.is_set():
                raise Refused(503, "the server is shutting down")
            if body.get("seed") is not None:
                torch.manual_seed(int(body["seed"]))
            out = self.model.generate(
                **inputs,
                max_new_tokens=request.max_tokens,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=body.get("top_p") if temperature > 0 else None,
                pad_token_id=self.tokenizer.pad_token_id,
                # vLLM's ignore_eos: generate exactly max_tokens (benchmarks, load tests)
                min_new_tokens=request.max_tokens if body.get("ignore_eos") else None,
                stopping_criteria=StoppingCriteriaList([StopFlag()]),
            )
            if stopping.is_set():
                raise Refused(503, "the server is shutting down; the generation was stopped")
        new = out[0][inputs["input_ids"].shape[1] :]
        text = request.prefill + self.tokenizer.decode(new, skip_special_tokens=True)
        content, calls = parse_tool_calls(text)
        finished = self.tokenizer.eos_token_id in new.tolist()
        reason = "tool_calls" if calls else ("stop" if finished else "length")
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = calls
        prompt_tokens = int(inputs["input_ids"].shape[1])
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(new),
            "total_tokens": prompt_tokens + len(new),
            "max_tokens": request.max_tokens,
        }
        if request.requested is not None and request.requested > request.max_tokens:
            usage["max_tokens_requested"] = request.requested
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": message, "finish_reason": reason}],
            "usage": usage,
        }

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        """:meth:`prepare` then :meth:`generate` (raises :class:`Refused`)."""
        return self.generate(self.prepare(body))


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, or 413 as soon as it is known to exceed ``limit`` (from Content-Length, else while read)."""
    declared = request.headers.get("content-length")
    too_large = Refused(413, f"request body exceeds the server's limit of {limit} bytes")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


def build_app(chat: ChatModel) -> Starlette:
    config = chat.config
    active = 0  # requests being prepared or generated, or waiting for the model (event-loop only)

    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": chat.name, "object": "model"}]})

    async def completions(request: Request) -> JSONResponse:
        nonlocal active
        try:
            raw = await _read_body(request, config.max_body_bytes)
            try:
                body = json.loads(raw)
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise Refused(400, "body is not JSON") from exc
            if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
                raise Refused(400, "messages (a list) is required")
            if body.get("stream"):
                raise Refused(400, "streaming is not supported")
            if active > config.max_queue:
                raise Refused(
                    429,
                    f"{active} requests are in the queue (limit {config.max_queue} waiting); retry later",
                    {"Retry-After": str(config.retry_after_s)},
                )
            active += 1
            try:
                prepared = await asyncio.to_thread(chat.prepare, body)
                return JSONResponse(await asyncio.to_thread(chat.generate, prepared))
            finally:
                active -= 1
        except Refused as refused:
            return refused.response()

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


class _StoppingServer(uvicorn.Server):
    """uvicorn waits for requests in flight on SIGTERM/SIGINT; stop the model first so they end now."""

    def __init__(self, config: uvicorn.Config, chat: ChatModel) -> None:
        super().__init__(config)
        self.chat = chat

    def handle_exit(self, sig: int, frame: Any) -> None:
        self.chat.stop()
        super().handle_exit(sig, frame)


def _server(chat: ChatModel, host: str, port: int) -> _StoppingServer:
    config = uvicorn.Config(
        build_app(chat), host=host, port=port, log_level="warning", timeout_graceful_shutdown=5
    )
    return _StoppingServer(config, chat)


def serve(chat: ChatModel, host: str, port: int) -> None:
    """Serve ``chat`` until SIGTERM or SIGINT (what ``astra serve`` runs)."""
    _server(chat, host, port).run()


@contextmanager
def serving(model: str, config: ServeConfig | None = None) -> Iterator[EndpointConfig]:
    """Serve ``model`` on a free loopback port in this process for the block; yields its endpoint."""
    from astra_synth.llm.local import free_port

    chat = ChatModel(model, config)
    port = free_port()
    server = _server(chat, "127.0.0.1", port)
    thread = threading.Thread(target=server.run, name="astra-serve", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"could not serve {model} on port {port}")
            time.sleep(0.05)
        yield EndpointConfig(base_url=f"http://127.0.0.1:{port}/v1", model=chat.name, max_concurrency=1)
    finally:
        chat.stop()
        server.should_exit = True
        thread.join(timeout=30)
