"""An OpenAI-compatible chat endpoint with tool calling for a transformers checkpoint.

It lets a model trained by ``astra train`` (or the embedded one) be evaluated by the same commands as any
endpoint (``astra eval arenas --base-url …``). The checkpoint's chat template renders ``tools`` (TRL's
Qwen3-2507 template for converted models: hermes ``<tool_call>{json}</tool_call>``); generated tool calls are
parsed from that text into OpenAI ``tool_calls`` with JSON-string arguments (every block, malformed ones
included, as written). A forced ``tool_choice`` prefills
the call's opening with the chosen name, so the answer is always a call to that tool. Generation is
serialised (one CPU model); no streaming. On a GPU, prefer vLLM with ``--enable-auto-tool-choice
--tool-call-parser hermes`` on the same checkpoint.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from astra_synth.agent.chat import content_without_calls, parse_hermes_calls
from astra_synth.config import EndpointConfig
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


class ChatModel:
    """One loaded checkpoint; ``complete`` answers one chat-completions request body."""

    def __init__(self, model: str, *, max_new_tokens: int = 256) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self.name = model
        path = resolve_model(model)
        self.tokenizer = load_tokenizer(path)
        self.model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        self.model.eval()  # type: ignore[no-untyped-call]
        self.max_new_tokens = max_new_tokens
        self._lock = threading.Lock()

    def complete(self, body: dict[str, Any]) -> dict[str, Any]:
        import torch

        tools = body.get("tools") or None
        names = {t.get("function", {}).get("name") for t in tools or []}
        prompt = self.tokenizer.apply_chat_template(
            body["messages"], tools=tools, add_generation_prompt=True, tokenize=False
        )
        forced = forced_tool(body) if tools else None
        prefill = f'<tool_call>\n{{"name": "{forced}", "arguments": ' if forced in names else ""
        inputs = self.tokenizer(prompt + prefill, return_tensors="pt", add_special_tokens=False)
        temperature = float(body.get("temperature") or 0.0)
        limit = int(body.get("max_tokens") or body.get("max_completion_tokens") or self.max_new_tokens)
        with self._lock, torch.no_grad():
            if body.get("seed") is not None:
                torch.manual_seed(int(body["seed"]))
            out = self.model.generate(
                **inputs,
                max_new_tokens=limit,
                do_sample=temperature > 0,
                temperature=temperature if temperature > 0 else None,
                top_p=body.get("top_p") if temperature > 0 else None,
                pad_token_id=self.tokenizer.pad_token_id,
            )
        new = out[0][inputs["input_ids"].shape[1] :]
        text = prefill + self.tokenizer.decode(new, skip_special_tokens=True)
        content, calls = parse_tool_calls(text)
        finished = self.tokenizer.eos_token_id in new.tolist()
        reason = "tool_calls" if calls else ("stop" if finished else "length")
        message: dict[str, Any] = {"role": "assistant", "content": content or None}
        if calls:
            message["tool_calls"] = calls
        prompt_tokens = int(inputs["input_ids"].shape[1])
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.name,
            "choices": [{"index": 0, "message": message, "finish_reason": reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": len(new),
                "total_tokens": prompt_tokens + len(new),
            },
        }


def build_app(chat: ChatModel) -> Starlette:
    async def models(request: Request) -> JSONResponse:
        return JSONResponse({"object": "list", "data": [{"id": chat.name, "object": "model"}]})

    async def completions(request: Request) -> JSONResponse:
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return JSONResponse({"error": {"message": "body is not JSON"}}, status_code=400)
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return JSONResponse({"error": {"message": "messages (a list) is required"}}, status_code=400)
        if body.get("stream"):
            return JSONResponse({"error": {"message": "streaming is not supported"}}, status_code=400)
        return JSONResponse(await asyncio.to_thread(chat.complete, body))

    return Starlette(
        routes=[
            Route("/v1/models", models, methods=["GET"]),
            Route("/v1/chat/completions", completions, methods=["POST"]),
        ]
    )


@contextmanager
def serving(model: str, *, max_new_tokens: int = 256) -> Iterator[EndpointConfig]:
    """Serve ``model`` on a free loopback port in this process for the block; yields its endpoint."""
    from astra_synth.llm.local import free_port

    chat = ChatModel(model, max_new_tokens=max_new_tokens)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(build_app(chat), host="127.0.0.1", port=port, log_level="warning"))
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
        server.should_exit = True
        thread.join(timeout=30)
