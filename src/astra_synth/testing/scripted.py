"""A scripted OpenAI-compatible HTTP server: real sockets, scripted answers, injectable faults.

Pipeline tests need an LLM that answers *on cue* ("right answer to the decompose prompt, garbage to the
judge prompt, a 429 on the next two requests") without mocking any function: the client under test speaks
real HTTP to this server exactly as it would to vLLM or llama.cpp. The server is async (uvicorn +
starlette in a background thread), so a fixed latency with hundreds of requests in flight does not
serialise, which makes it the load generator for the LLM-layer benchmarks too. Every request is recorded
for assertions (call counts, re-ask messages, peak concurrency).

How a request is answered, first match wins:

1. faults queued with :meth:`ScriptedLLM.fail_next` (the next N requests),
2. a server that breaks mid-run (:meth:`ScriptedLLM.fail_after`: every request after the next N),
3. faults drawn at a seeded rate (:meth:`ScriptedLLM.fail_randomly`),
4. rules added with :meth:`ScriptedLLM.on` (a regex on the first / last / any message); a rule's replies are
   used in order and the last one repeats,
5. the ``handler`` given to the constructor (``request_json -> Reply | str | dict``),
6. otherwise HTTP 400 naming the unmatched prompt, so a missing script fails loudly instead of answering.

Two switches make the same script answer like other kinds of model: ``thinking_tokens`` is a thinking model
(every answer comes after that much reasoning, sent as ``reasoning_content``; a cap smaller than reasoning
plus answer gets ``finish_reason: length`` and no content, as vLLM sends for Qwen3), and
``openai_reasoning`` an OpenAI reasoning model (``max_tokens`` and a temperature are refused with OpenAI's
HTTP 400, the reasoning is hidden and only counted in ``usage.completion_tokens_details``).

A request with ``"stream": true`` gets the same answer as server-sent chunks (what a proxy such as
verifiers' interception asks for).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import random
import re
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, Self

import uvicorn
from pydantic import BaseModel, ConfigDict, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from astra_synth.config import EndpointConfig

FaultPath = Literal["chat", "embeddings", "any"]
Where = Literal["first", "last", "any"]


class ScriptedToolCall(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    arguments: dict[str, Any] | str = Field(
        default_factory=dict, description="A dict is sent as a JSON string."
    )


class Reply(BaseModel):
    """What the server sends back for one request. Build it with the ``*_reply`` helpers below."""

    model_config = ConfigDict(frozen=True)

    content: str | None = None
    tool_calls: tuple[ScriptedToolCall, ...] = ()
    reasoning_content: str | None = None
    finish_reason: str = "stop"
    status: int = 200
    headers: dict[str, str] = Field(default_factory=dict)
    delay_s: float = Field(
        default=0.0, ge=0, description="Hold the answer this long (a hang when > timeout)."
    )
    raw_body: str | None = Field(default=None, description="Sent verbatim instead of a JSON response.")


ReplyLike = Reply | str | dict[str, Any] | list[Any]
Handler = Callable[[dict[str, Any]], ReplyLike]
ReplySource = Reply | Handler


def text_reply(content: str, *, reasoning: str | None = None) -> Reply:
    return Reply(content=content, reasoning_content=reasoning)


def json_reply(obj: Any) -> Reply:
    """A well-formed JSON answer (right or wrong schema: whatever ``obj`` is)."""
    return Reply(content=json.dumps(obj))


def tool_call_reply(*calls: tuple[str, dict[str, Any] | str], content: str | None = None) -> Reply:
    return Reply(
        content=content,
        tool_calls=tuple(ScriptedToolCall(name=name, arguments=args) for name, args in calls),
        finish_reason="tool_calls",
    )


def error_reply(status: int, *, retry_after_s: float | None = None) -> Reply:
    headers = {} if retry_after_s is None else {"Retry-After": f"{retry_after_s:g}"}
    return Reply(status=status, headers=headers)


def rate_limit_reply(retry_after_s: float = 0.05) -> Reply:
    return error_reply(429, retry_after_s=retry_after_s)


def server_error_reply() -> Reply:
    return error_reply(500)


def hang_reply(seconds: float) -> Reply:
    """Answers only after ``seconds``: longer than the client timeout, it looks like a dead server."""
    return Reply(content="too late", delay_s=seconds)


def truncated_json_reply(obj: Any) -> Reply:
    """JSON cut in half but claiming a normal stop (what small models do when they lose track)."""
    text = json.dumps(obj)
    return Reply(content=text[: max(1, len(text) // 2)])


def invalid_json_reply(text: str = "Sure! Here is the answer: {name: 'x',, }") -> Reply:
    return Reply(content=text)


def wrong_schema_reply() -> Reply:
    return json_reply({"unexpected": "shape", "items": [1, 2, 3]})


def garbage_body_reply(body: str = "<html><body>502 Bad Gateway</body></html>") -> Reply:
    """HTTP 200 whose body is not an OpenAI response (a misbehaving proxy or server)."""
    return Reply(raw_body=body)


def length_reply(obj: Any) -> Reply:
    """The answer ran into ``max_tokens``: cut JSON with ``finish_reason="length"``."""
    text = obj if isinstance(obj, str) else json.dumps(obj)
    return Reply(content=text[: max(1, len(text) // 2)], finish_reason="length")


def reasoning_overflow_reply(reasoning: str = "Let me think about this step by step.") -> Reply:
    """A thinking model that spent its whole ``max_tokens`` reasoning: no content, ``finish_reason="length"``
    (what vLLM with a reasoning parser sends when Qwen3's thoughts outgrow the cap)."""
    return Reply(content=None, reasoning_content=reasoning, finish_reason="length")


class RecordedRequest(BaseModel):
    path: str
    body: dict[str, Any]
    status: int = 0
    received_at: float


@dataclass
class Rule:
    """Replies for requests whose messages match ``pattern``; ``hits`` counts the requests it answered."""

    pattern: re.Pattern[str]
    where: Where
    replies: list[ReplySource]
    hits: int = 0

    def matches(self, body: dict[str, Any]) -> bool:
        return self.pattern.search(_prompt_text(body, self.where)) is not None

    def next_reply(self) -> ReplySource:
        reply = self.replies[min(self.hits, len(self.replies) - 1)]
        self.hits += 1
        return reply


@dataclass
class _RandomFaults:
    rate: float
    replies: list[Reply]
    path: FaultPath
    rng: random.Random


@dataclass
class _QueuedFault:
    reply: Reply
    path: FaultPath


@dataclass
class _FailAfter:
    healthy_left: int
    reply: Reply
    path: FaultPath


@dataclass
class _Script:
    rules: list[Rule] = field(default_factory=list)
    queued: list[_QueuedFault] = field(default_factory=list)
    fail_after: list[_FailAfter] = field(default_factory=list)
    random_faults: list[_RandomFaults] = field(default_factory=list)


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # content parts
        return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return ""


def _prompt_text(body: dict[str, Any], where: Where) -> str:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    if not messages:
        return ""
    if where == "first":
        return _content_text(messages[0].get("content"))
    if where == "last":
        return _content_text(messages[-1].get("content"))
    return "\n".join(_content_text(m.get("content")) for m in messages)


def _sse_chunks(completion: dict[str, Any]) -> Iterator[str]:
    """A completion as a ``stream=True`` client reads it: one delta with the whole message (tool calls
    indexed), a finish chunk carrying the usage, then ``[DONE]``."""
    choice = completion["choices"][0]
    delta = dict(choice["message"])
    if "tool_calls" in delta:
        delta["tool_calls"] = [{"index": i, **call} for i, call in enumerate(delta["tool_calls"])]
    head = {k: completion[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}
    chunks = [
        head | {"choices": [{"index": 0, "delta": delta, "finish_reason": None}]},
        head | {"choices": [{"index": 0, "delta": {}, "finish_reason": choice["finish_reason"]}]},
        head | {"choices": [], "usage": completion["usage"]},
    ]
    for chunk in chunks:
        yield f"data: {json.dumps(chunk)}\n\n"
    yield "data: [DONE]\n\n"


def _as_reply(value: ReplyLike) -> Reply:
    if isinstance(value, Reply):
        return value
    if isinstance(value, str):
        return text_reply(value)
    return json_reply(value)


def _rough_tokens(text: str) -> int:
    """About four characters a token: enough for budget and ledger tests, deterministic."""
    return len(text) // 4 + 1


def hash_embedding(text: str, dim: int) -> list[float]:
    """A deterministic unit vector from the sha256 of ``text`` (equal texts, equal vectors)."""
    raw = b"".join(hashlib.sha256(f"{i}:{text}".encode()).digest() for i in range((dim * 4 + 31) // 32))
    values = [v / 2**31 - 1.0 for v in struct.unpack(f"<{dim}I", raw[: dim * 4])]
    norm = sum(v * v for v in values) ** 0.5 or 1.0
    return [v / norm for v in values]


class ScriptedLLM:
    """The server. ``with ScriptedLLM() as llm: llm.on("decompose", json_reply({...}))``.

    Configure it from the test thread at any time; the methods are thread-safe.
    """

    def __init__(
        self,
        handler: Handler | None = None,
        *,
        latency_s: float = 0.0,
        model: str = "scripted",
        embedding_dim: int = 32,
        thinking_tokens: int = 0,
        openai_reasoning: bool = False,
    ) -> None:
        self.handler = handler
        self.thinking_tokens = thinking_tokens
        self.openai_reasoning = openai_reasoning
        self.latency_s = latency_s
        self.model = model
        self.embedding_dim = embedding_dim
        self._script = _Script()
        self._lock = threading.Lock()
        self._requests: list[RecordedRequest] = []
        self._in_flight = 0
        self._peak_in_flight = 0
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # --- lifecycle ---------------------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread; returns once it accepts requests."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )
        config = uvicorn.Config(
            app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            backlog=4096,
            timeout_graceful_shutdown=1,
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="scripted-llm", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("scripted LLM server did not start")
            time.sleep(0.01)
        self._server, self._thread = server, thread
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1"

    def endpoint(self, **overrides: Any) -> EndpointConfig:
        """An endpoint aimed at this server, with test-speed backoff; ``overrides`` set any field."""
        fields: dict[str, Any] = {
            "base_url": self.base_url,
            "model": self.model,
            "timeout_s": 10.0,
            "max_retries": 3,
            "backoff_base_s": 0.01,
            "backoff_max_s": 0.05,
        }
        return EndpointConfig(**{**fields, **overrides})

    # --- scripting -----------------------------------------------------------------------------------------

    def on(self, pattern: str, *replies: ReplySource, where: Where = "first") -> Rule:
        """Answer requests whose ``where`` message matches ``pattern`` with ``replies`` in order.

        The last one repeats. A reply is a :class:`Reply` or a callable ``request -> Reply | str | dict``.
        """
        if not replies:
            raise ValueError("a rule needs at least one reply")
        rule = Rule(pattern=re.compile(pattern), where=where, replies=list(replies))
        with self._lock:
            self._script.rules.append(rule)
        return rule

    def fail_next(self, n: int, reply: Reply, *, path: FaultPath = "chat") -> None:
        """The next ``n`` requests to ``path`` get ``reply`` (a fault) before any rule is consulted."""
        with self._lock:
            self._script.queued.extend(_QueuedFault(reply, path) for _ in range(n))

    def fail_after(self, n: int, reply: Reply, *, path: FaultPath = "chat") -> None:
        """Answer the next ``n`` requests to ``path`` as scripted, then ``reply`` (a fault) to every later
        one: a server that breaks in the middle of a run."""
        with self._lock:
            self._script.fail_after.append(_FailAfter(n, reply, path))

    def fail_randomly(self, rate: float, *replies: Reply, seed: int = 0, path: FaultPath = "chat") -> None:
        """Each request to ``path`` gets one of ``replies`` with probability ``rate`` (seeded draws)."""
        if not replies or not 0.0 <= rate <= 1.0:
            raise ValueError("fail_randomly needs 0 <= rate <= 1 and at least one reply")
        with self._lock:
            self._script.random_faults.append(_RandomFaults(rate, list(replies), path, random.Random(seed)))

    def reset(self) -> None:
        """Forget rules, faults and recorded requests (the handler stays)."""
        with self._lock:
            self._script = _Script()
            self._requests = []
            self._peak_in_flight = self._in_flight

    # --- observations -------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def chat_requests(self) -> list[dict[str, Any]]:
        """Bodies of all chat-completion requests received, in arrival order."""
        return [r.body for r in self.requests if r.path == "chat"]

    @property
    def peak_in_flight(self) -> int:
        with self._lock:
            return self._peak_in_flight

    # --- serving ------------------------------------------------------------------------------------------

    @contextmanager
    def _track(self, path: str, body: dict[str, Any]) -> Iterator[RecordedRequest]:
        record = RecordedRequest(path=path, body=body, received_at=time.time())
        with self._lock:
            self._requests.append(record)
            self._in_flight += 1
            self._peak_in_flight = max(self._peak_in_flight, self._in_flight)
        try:
            yield record
        finally:
            with self._lock:
                self._in_flight -= 1

    def _fault(self, path: Literal["chat", "embeddings"]) -> Reply | None:
        """Caller holds the lock."""
        for i, queued in enumerate(self._script.queued):
            if queued.path in (path, "any"):
                del self._script.queued[i]
                return queued.reply
        for broken in self._script.fail_after:
            if broken.path in (path, "any"):
                if broken.healthy_left <= 0:
                    return broken.reply
                broken.healthy_left -= 1
        for faults in self._script.random_faults:
            if faults.path in (path, "any") and faults.rng.random() < faults.rate:
                return faults.rng.choice(faults.replies)
        return None

    def _choose(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            fault = self._fault("chat")
            if fault is not None:
                return fault
            source: ReplySource | None = next(
                (rule.next_reply() for rule in self._script.rules if rule.matches(body)), self.handler
            )
        if source is None:
            first = _prompt_text(body, "first")[:200]
            return Reply(
                status=400, content=f"no scripted reply matches this request (first message: {first!r})"
            )
        return source if isinstance(source, Reply) else _as_reply(source(body))

    async def _delay(self, request: Request, reply: Reply) -> None:
        """Hold the answer; give up early if the client is gone so a hang never outlives its test."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        deadline = time.monotonic() + reply.delay_s
        while (left := deadline - time.monotonic()) > 0:
            await asyncio.sleep(min(0.05, left))
            if await request.is_disconnected():
                return

    async def _chat(self, request: Request) -> Response:
        body = await request.json()
        with self._track("chat", body) as record:
            reply = _openai_refusal(body) if self.openai_reasoning else None
            reply = reply or self._choose(body)
            await self._delay(request, reply)
            record.status = reply.status
            if reply.raw_body is not None:
                return Response(reply.raw_body, status_code=reply.status, headers=reply.headers)
            if reply.status != 200:
                return _error_response(reply)
            completion = self._completion(body, reply)
            if body.get("stream"):
                return StreamingResponse(_sse_chunks(completion), media_type="text/event-stream")
            return JSONResponse(completion)

    def _thought(self, body: dict[str, Any], reply: Reply) -> tuple[Reply, int]:
        """``reply`` as a thinking model gives it under the request's cap, and its reasoning tokens."""
        if not self.thinking_tokens or reply.reasoning_content is not None:
            return reply, 0
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        needed = self.thinking_tokens + _rough_tokens(reply.content or "")
        thought = self.thinking_tokens if cap is None or cap >= needed else cap
        reasoning = None if self.openai_reasoning else "Let me work through this. " * (thought * 4 // 26 + 1)
        if cap is not None and cap < needed:
            return Reply(content=None, reasoning_content=reasoning, finish_reason="length"), thought
        return reply.model_copy(update={"reasoning_content": reasoning}), thought

    def _completion(self, body: dict[str, Any], reply: Reply) -> dict[str, Any]:
        reply, reasoning_tokens = self._thought(body, reply)
        message: dict[str, Any] = {"role": "assistant", "content": reply.content}
        if reply.tool_calls:
            message["tool_calls"] = [
                {
                    "id": f"call_{i}_{call.name}",
                    "type": "function",
                    "function": {
                        "name": call.name,
                        "arguments": call.arguments
                        if isinstance(call.arguments, str)
                        else json.dumps(call.arguments),
                    },
                }
                for i, call in enumerate(reply.tool_calls)
            ]
        if reply.reasoning_content is not None:
            message["reasoning_content"] = reply.reasoning_content
        completion_text = (reply.content or "") + json.dumps(message.get("tool_calls", []))
        prompt_tokens = _rough_tokens(_prompt_text(body, "any"))
        completion_tokens = _rough_tokens(completion_text) + reasoning_tokens
        return {
            "id": f"chatcmpl-scripted-{len(self._requests)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", self.model),
            "choices": [{"index": 0, "message": message, "finish_reason": reply.finish_reason}],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
                "completion_tokens_details": {"reasoning_tokens": reasoning_tokens},
            },
        }

    async def _embeddings(self, request: Request) -> Response:
        body = await request.json()
        with self._track("embeddings", body) as record:
            with self._lock:
                fault = self._fault("embeddings")
            reply = fault or Reply()
            await self._delay(request, reply)
            record.status = reply.status
            if reply.raw_body is not None:
                return Response(reply.raw_body, status_code=reply.status, headers=reply.headers)
            if reply.status != 200:
                return _error_response(reply)
            raw_input = body.get("input", [])
            texts = [raw_input] if isinstance(raw_input, str) else [str(t) for t in raw_input]
            as_base64 = body.get("encoding_format") == "base64"
            data = []
            for i, text in enumerate(texts):
                vector = hash_embedding(text, self.embedding_dim)
                encoded: Any = (
                    base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
                    if as_base64
                    else vector
                )
                data.append({"object": "embedding", "index": i, "embedding": encoded})
            tokens = sum(_rough_tokens(t) for t in texts)
            return JSONResponse(
                {
                    "object": "list",
                    "data": data,
                    "model": body.get("model", self.model),
                    "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
                }
            )

    async def _models(self, request: Request) -> JSONResponse:
        return JSONResponse(
            {"object": "list", "data": [{"id": self.model, "object": "model", "owned_by": "scripted"}]}
        )


def _openai_refusal(body: dict[str, Any]) -> Reply | None:
    """What OpenAI's API answers a reasoning model's request that carries chat-model parameters."""
    if "max_tokens" in body:
        message = (
            "Unsupported parameter: 'max_tokens' is not supported with this model. "
            "Use 'max_completion_tokens' instead."
        )
    elif body.get("temperature") not in (None, 1):
        message = (
            f"Unsupported value: 'temperature' does not support {body['temperature']} with this model. "
            "Only the default (1) value is supported."
        )
    else:
        return None
    return Reply(status=400, content=message)


def _error_response(reply: Reply) -> JSONResponse:
    message = reply.content or f"scripted HTTP {reply.status}"
    return JSONResponse(
        {"error": {"message": message, "type": "scripted_fault", "code": reply.status}},
        status_code=reply.status,
        headers=reply.headers,
    )
