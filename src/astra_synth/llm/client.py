"""Async client for any OpenAI-compatible endpoint (vLLM, SGLang, llama.cpp, Ollama, hosted APIs).

Why our own layer: the pipelines need per-endpoint concurrency caps, a retry policy that ends in a *typed*
failure (so a runner can record it), a content-addressed cache (so a rerun costs zero calls) and a usage
ledger with budget caps. The wire protocol is two JSON POSTs, spoken directly over one ``aiohttp`` session
per event loop: the ``openai`` SDK over httpx cost about 3.8 ms of CPU per request (measured in
``benchmarks/llm_overhead.py``), aiohttp about 0.3 ms, which decides whether hundreds of requests in flight
are limited by the server or by us. Answers are parsed into our own wire models, so servers that add fields
(``reasoning_content``) or deviate slightly (tool-call arguments as objects) work.

Thinking models: a model's reasoning never reaches ``content`` (a leading ``<think>…</think>`` block from a
server without a reasoning parser moves to ``reasoning_content``), so only the answer is ever parsed, and it
is not sent back in later requests (templates drop it, some APIs refuse it). The endpoint's ``extra_body`` /
``thinking`` go into every request, ``reasoning_tokens`` raise every cap, and an endpoint that refuses
``max_tokens`` or a temperature (OpenAI reasoning models) is answered once with the accepted form.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import json
import logging
import random
import re
import ssl
import time
import weakref
from collections.abc import Awaitable, Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import aiohttp
from pydantic import BaseModel, ConfigDict, Field

from astra_synth.closing import AsyncClosing
from astra_synth.config import EndpointConfig, merge_mappings
from astra_synth.llm.cache import ResponseCache, content_key
from astra_synth.llm.ledger import Ledger

R = TypeVar("R")

log = logging.getLogger(__name__)

ErrorKind = Literal["rate_limited", "server_error", "timeout", "connection", "client_error", "bad_response"]

# A server's Retry-After is honoured, but never beyond this: a misconfigured proxy must not park a run.
_MAX_RETRY_AFTER_S = 300.0
# Inputs per /embeddings request; hosted APIs cap the batch size, local servers slow down on huge batches.
_EMBED_BATCH = 128


class Usage(BaseModel):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = Field(default=0, description="Of the completion tokens, those spent reasoning.")


class ChatResult(BaseModel):
    """One assistant turn in the canonical OpenAI message format, plus what it cost."""

    message: dict[str, Any] = Field(
        description="role, content, tool_calls (arguments as JSON strings), reasoning_content if sent."
    )
    finish_reason: str | None
    usage: Usage
    latency_s: float
    cached: bool = False

    @property
    def cut_while_reasoning(self) -> bool:
        """The token cap ended the reply while the model was reasoning: no complete answer came, and asking
        for a shorter one cannot help (only a larger cap or no thinking can)."""
        reasoned = bool(self.message.get("reasoning_content")) or self.usage.reasoning_tokens > 0
        return self.finish_reason == "length" and reasoned


class LLMCallError(RuntimeError):
    """A call that failed for good (retries exhausted or not retryable); the runner records it."""

    def __init__(self, kind: ErrorKind, *, status: int | None, detail: str, attempts: int) -> None:
        super().__init__(f"LLM call failed ({kind}, status={status}, attempts={attempts}): {detail}")
        self.kind: ErrorKind = kind
        self.status = status
        self.detail = detail
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (runners may hand errors across processes): rebuild from the typed fields."""
        rebuild = functools.partial(
            LLMCallError, self.kind, status=self.status, detail=self.detail, attempts=self.attempts
        )
        return (rebuild, ())


class _BadResponse(ValueError):
    """A 2xx answer that is not a usable OpenAI response."""


# --- wire models: the subset of the OpenAI response format we rely on -------------------------------------


class _WireFunction(BaseModel):
    name: str
    arguments: str | dict[str, Any] | None = None


class _WireToolCall(BaseModel):
    id: str | None = None
    function: _WireFunction


class _WireMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    content: str | None = None
    tool_calls: list[_WireToolCall] | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None  # vLLM's newer name for the same field


class _WireChoice(BaseModel):
    message: _WireMessage
    finish_reason: str | None = None


class _WireTokenDetails(BaseModel):
    reasoning_tokens: int | None = None


class _WireUsage(BaseModel):
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    completion_tokens_details: _WireTokenDetails | None = None  # OpenAI: the hidden reasoning's size

    def to_usage(self) -> Usage:
        details = self.completion_tokens_details
        return Usage(
            prompt_tokens=self.prompt_tokens or 0,
            completion_tokens=self.completion_tokens or 0,
            reasoning_tokens=(details.reasoning_tokens or 0) if details else 0,
        )


class _WireChat(BaseModel):
    choices: list[_WireChoice] = Field(min_length=1)
    usage: _WireUsage | None = None


class _WireEmbedding(BaseModel):
    index: int
    embedding: list[float]


class _WireEmbeddings(BaseModel):
    data: list[_WireEmbedding]
    usage: _WireUsage | None = None


_THINK = re.compile(
    r"^\s*(?:<think>(?P<closed>.*?)</think>|(?P<open>(?!<think>).*?)</think>|<think>(?P<cut>.*))\s*", re.S
)
"""A leading reasoning block in ``content``: ``<think>…</think>``, the tail of one whose ``<think>`` was in
the prompt (DeepSeek-R1, Qwen3 templates), or one cut off by the token limit before it closed."""


def split_reasoning(content: str | None) -> tuple[str | None, str | None]:
    """``(answer, reasoning)`` of a content string that may open with a reasoning block."""
    if not content:
        return content, None
    found = _THINK.match(content)
    if found is None:
        return content, None
    thought = next(g for g in found.group("closed", "open", "cut") if g is not None).strip()
    return content[found.end() :], thought or None


def _assistant_message(wire: _WireMessage) -> dict[str, Any]:
    content, inline = split_reasoning(wire.content)
    message: dict[str, Any] = {"role": "assistant", "content": content}
    if wire.tool_calls:
        message["tool_calls"] = [
            {
                "id": call.id or f"call_{i}",
                "type": "function",
                "function": {
                    "name": call.function.name,
                    "arguments": _arguments_json(call.function.arguments),
                },
            }
            for i, call in enumerate(wire.tool_calls)
        ]
    reasoning = "\n\n".join(r for r in (wire.reasoning_content or wire.reasoning, inline) if r)
    if reasoning:
        message["reasoning_content"] = reasoning
    return message


def _arguments_json(arguments: str | dict[str, Any] | None) -> str:
    """The canonical format carries arguments as a JSON string; some servers send an object."""
    if arguments is None:
        return "{}"
    return arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)


# --- failure classification --------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Failure:
    kind: ErrorKind
    status: int | None
    detail: str
    retryable: bool
    retry_after_s: float | None = None


def _retry_after(headers: Mapping[str, str]) -> float | None:
    """Seconds from ``retry-after-ms`` or ``retry-after`` (seconds or HTTP date); None if absent/garbled."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


class _HTTPStatus(Exception):
    """A non-2xx answer, with what the retry policy needs from it."""

    def __init__(self, status: int, body: str, headers: Mapping[str, str]) -> None:
        super().__init__(f"HTTP {status}: {body[:200]}")
        self.status = status
        self.body = body
        self.retry_after_s = _retry_after(headers)


def _classify(exc: Exception) -> _Failure:
    if isinstance(exc, _HTTPStatus):
        status, detail, after = exc.status, exc.body[:500], exc.retry_after_s
        if status == 429:
            return _Failure("rate_limited", status, detail, True, after)
        if status >= 500:
            return _Failure("server_error", status, detail, True, after)
        if status == 408:
            return _Failure("timeout", status, detail, True, after)
        return _Failure("client_error", status, detail, status == 409, after)
    if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
        return _Failure("timeout", None, str(exc) or type(exc).__name__, True)
    if isinstance(exc, aiohttp.ClientError):
        return _Failure("connection", None, str(exc) or type(exc).__name__, True)
    return _Failure("bad_response", None, f"{type(exc).__name__}: {str(exc)[:500]}", True)


# --- the client --------------------------------------------------------------------------------------------


@dataclass
class _LoopState:
    """Objects bound to one event loop: an HTTP session and a semaphore cannot cross loops."""

    session: aiohttp.ClientSession
    semaphore: asyncio.Semaphore
    pending: dict[str, asyncio.Future[ChatResult]] = field(default_factory=dict)  # chat requests in flight


_REASONING_KEYS = ("reasoning_content", "reasoning")


def _wire_message(message: dict[str, Any]) -> dict[str, Any]:
    """An assistant turn that only called tools goes out with ``content: ""``: OpenAI takes null or "", but
    llama-cpp-python's server rejects null (its schema says string) and its template needs the key. Its
    reasoning stays home: chat templates drop it anyway and some APIs (DeepSeek) refuse it."""
    if message.get("role") != "assistant":
        return message
    if message.get("content") is None or any(k in message for k in _REASONING_KEYS):
        message = {k: v for k, v in message.items() if k not in _REASONING_KEYS}
        if message.get("content") is None:
            message["content"] = ""
    return message


def _refuses(detail: str, param: str) -> bool:
    """Whether an HTTP 400 body says the endpoint does not take ``param`` as sent."""
    text = detail.lower()
    return param in text and any(w in text for w in ("unsupported", "not supported", "does not support"))


class LLMClient(AsyncClosing):
    """Chat and embeddings against one endpoint, with concurrency cap, retries, cache and ledger.

    ``async with LLMClient(endpoint, ledger=..., cache=...) as client: await client.chat(...)``.
    """

    def __init__(
        self, endpoint: EndpointConfig, *, ledger: Ledger | None = None, cache: ResponseCache | None = None
    ) -> None:
        if endpoint.base_url is None:
            raise ValueError("endpoint.base_url is unset: start the embedded server first and pass its URL")
        self.endpoint = endpoint
        self.ledger = ledger
        self.cache = cache
        self.calls_made = 0  # real HTTP requests sent, retries included
        self._states: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _LoopState] = (
            weakref.WeakKeyDictionary()
        )
        self._rng = random.Random()
        # What the endpoint turned out to refuse (token_limit_param / temperature_param "auto").
        self._completion_tokens = endpoint.token_limit_param == "max_completion_tokens"
        self._omit_temperature = endpoint.temperature_param == "omit"

    async def aclose(self) -> None:
        """Close the connection pool of the running loop (pools of finished loops died with them)."""
        state = self._states.pop(asyncio.get_running_loop(), None)
        if state is not None:
            await state.session.close()

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        stage: str,
        tools: list[dict[str, Any]] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        response_format: dict[str, Any] | None = None,
        temperature: float = 0.0,
        top_p: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        sample_index: int = 0,
    ) -> ChatResult:
        """One chat completion; cached by content, so an identical request never reaches the server twice.

        ``sample_index`` tells apart several samples of the same request (it is part of the cache key only).
        ``max_tokens`` sizes the answer; the endpoint's reasoning allowance is added to it.
        Raises :class:`LLMCallError` or ``BudgetExceeded``.
        """
        if max_tokens is not None:
            max_tokens += self.endpoint.reasoning_budget()
        extras = self.endpoint.request_extras()
        params: dict[str, Any] = {
            "model": self.endpoint.model,
            "messages": [_wire_message(m) for m in messages],
            "tools": tools,
            "tool_choice": tool_choice,
            "response_format": response_format,
            "temperature": temperature,
            "top_p": top_p,
            "max_tokens": max_tokens,
            "seed": seed,
        }
        keyed = {**params, "sample_index": sample_index} | ({"extra_body": extras} if extras else {})
        key = content_key(keyed)
        started = time.monotonic()
        if self.cache is not None and (hit := self.cache.get_chat(key)) is not None:
            return self._replayed(stage, ChatResult(**hit, latency_s=0.0), started)
        state = self._state()
        while (twin := state.pending.get(key)) is not None:
            # The identical request is already in flight: share its answer instead of paying twice.
            try:
                return self._replayed(stage, await asyncio.shield(twin), started)
            except asyncio.CancelledError:
                if not twin.cancelled():
                    raise  # this caller was cancelled, not the one it waited for
        twin = asyncio.get_running_loop().create_future()
        state.pending[key] = twin
        try:
            result = await self._fetch_adapting(stage, params, extras)
        except asyncio.CancelledError:
            twin.cancel()  # waiting twins retry on their own
            raise
        except BaseException as exc:
            twin.set_exception(exc)
            twin.exception()  # marks it retrieved: with no twin waiting, asyncio must not log it
            raise
        finally:
            state.pending.pop(key, None)
        twin.set_result(result)
        if self.cache is not None:
            self.cache.put_chat(key, result.model_dump(include={"message", "finish_reason", "usage"}))
        return result

    def _replayed(self, stage: str, result: ChatResult, started: float) -> ChatResult:
        if self.ledger is not None:
            self.ledger.record_cached(stage)
        return result.model_copy(update={"cached": True, "latency_s": time.monotonic() - started})

    async def _fetch_adapting(self, stage: str, params: dict[str, Any], extras: dict[str, Any]) -> ChatResult:
        """Send ``params`` in the form the endpoint takes; a 400 refusing ``max_tokens`` or the temperature
        switches that form for good (``auto`` settings) and the request is sent again, once per switch."""
        while True:
            body = {k: v for k, v in params.items() if v is not None}
            if self._omit_temperature:
                body.pop("temperature", None)
                body.pop("top_p", None)
            if self._completion_tokens and "max_tokens" in body:
                body["max_completion_tokens"] = body.pop("max_tokens")
            try:
                return await self._fetch_chat(stage, merge_mappings(body, extras))
            except LLMCallError as exc:
                if exc.status != 400 or not self._adapt(exc.detail, body):
                    raise

    def _adapt(self, detail: str, body: dict[str, Any]) -> bool:
        ep = self.endpoint
        if ep.token_limit_param == "auto" and "max_tokens" in body and "max_completion_tokens" in detail:
            if not self._completion_tokens:  # requests in flight meanwhile come back refused too
                log.warning("%s refuses max_tokens: sending max_completion_tokens from now on", ep.base_url)
            self._completion_tokens = True
            return True
        if ep.temperature_param == "auto" and "temperature" in body and _refuses(detail, "temperature"):
            if not self._omit_temperature:
                log.warning("%s refuses the temperature: sending none from now on", ep.base_url)
            self._omit_temperature = True
            return True
        return False

    async def _fetch_chat(self, stage: str, body: dict[str, Any]) -> ChatResult:
        async def send(session: aiohttp.ClientSession) -> _WireChat:
            return _WireChat.model_validate_json(await self._post(session, "/chat/completions", body))

        wire, latency = await self._call(stage, send)
        choice = wire.choices[0]
        usage = wire.usage.to_usage() if wire.usage else Usage()
        result = ChatResult(
            message=_assistant_message(choice.message),
            finish_reason=choice.finish_reason,
            usage=usage,
            latency_s=latency,
        )
        self._record(stage, usage, latency, reasoning_cut=result.cut_while_reasoning)
        return result

    async def embed(self, texts: list[str], *, stage: str, model: str | None = None) -> list[list[float]]:
        """Embedding vectors in input order; each text is cached on its own (key: model + text)."""
        model_name = model or self.endpoint.model
        keys = [content_key({"model": model_name, "text": text}) for text in texts]
        found: dict[str, list[float]] = {}
        if self.cache is not None:
            for key in dict.fromkeys(keys):
                if (vector := self.cache.get_embedding(key)) is not None:
                    found[key] = vector
        todo = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        if not todo and texts and self.ledger is not None:
            self.ledger.record_cached(stage)
        items = list(todo.items())
        batches = [items[i : i + _EMBED_BATCH] for i in range(0, len(items), _EMBED_BATCH)]
        for vectors in await asyncio.gather(*(self._embed_batch(b, stage, model_name) for b in batches)):
            found.update(vectors)
        return [found[key] for key in keys]

    async def _embed_batch(
        self, batch: list[tuple[str, str]], stage: str, model_name: str
    ) -> dict[str, list[float]]:
        body = {"model": model_name, "input": [text for _, text in batch], "encoding_format": "float"}

        async def send(session: aiohttp.ClientSession) -> _WireEmbeddings:
            wire = _WireEmbeddings.model_validate_json(await self._post(session, "/embeddings", body))
            if sorted(item.index for item in wire.data) != list(range(len(batch))):
                raise _BadResponse(f"expected {len(batch)} embeddings indexed 0..n-1, got {len(wire.data)}")
            return wire

        wire, latency = await self._call(stage, send)
        self._record(stage, wire.usage.to_usage() if wire.usage else Usage(), latency)
        vectors = {batch[item.index][0]: item.embedding for item in wire.data}
        if self.cache is not None:
            for key, vector in vectors.items():
                self.cache.put_embedding(key, vector)
        return vectors

    # --- transport ---------------------------------------------------------------------------------------

    def _state(self) -> _LoopState:
        loop = asyncio.get_running_loop()
        state = self._states.get(loop)
        if state is None:
            ep = self.endpoint
            connector = aiohttp.TCPConnector(limit=ep.max_concurrency, ssl=_tls_context())
            session = aiohttp.ClientSession(
                connector=connector,
                headers={"Authorization": f"Bearer {ep.api_key()}"},
                json_serialize=functools.partial(json.dumps, ensure_ascii=False),
            )
            state = _LoopState(session=session, semaphore=asyncio.Semaphore(ep.max_concurrency))
            self._states[loop] = state
        return state

    async def _post(self, session: aiohttp.ClientSession, path: str, body: dict[str, Any]) -> bytes:
        """POST ``body`` as JSON to ``<base_url><path>``; the raw answer, or ``_HTTPStatus`` if not 2xx."""
        url = f"{str(self.endpoint.base_url).rstrip('/')}{path}"
        async with session.post(url, json=body) as response:
            data = await response.read()
            if response.status >= 300:
                raise _HTTPStatus(response.status, data.decode("utf-8", "replace"), response.headers)
            return data

    async def _call(
        self, stage: str, send: Callable[[aiohttp.ClientSession], Awaitable[R]]
    ) -> tuple[R, float]:
        """Send with retries; returns the parsed answer and the latency of the successful attempt."""
        state = self._state()
        ep = self.endpoint
        started = time.monotonic()
        attempts = 0
        while True:
            attempts += 1
            async with state.semaphore:
                with self._budget_slot():
                    self.calls_made += 1
                    sent = time.monotonic()
                    try:
                        async with asyncio.timeout(ep.timeout_s):
                            answer = await send(state.session)
                    except (_HTTPStatus, aiohttp.ClientError, TimeoutError, ValueError) as exc:
                        failure = _classify(exc)
                        cause: Exception = exc
                    else:
                        return answer, time.monotonic() - sent
            if not failure.retryable or attempts > ep.max_retries:
                if self.ledger is not None:
                    self.ledger.record_failure(stage, time.monotonic() - started)
                raise LLMCallError(
                    failure.kind, status=failure.status, detail=failure.detail, attempts=attempts
                ) from cause
            await asyncio.sleep(self._backoff_s(attempts, failure.retry_after_s))

    def _budget_slot(self) -> AbstractContextManager[None]:
        """Taken after the semaphore slot is won, so callers queued there cannot overshoot a cap."""
        return nullcontext() if self.ledger is None else self.ledger.reserve_call()

    def _backoff_s(self, attempt: int, retry_after_s: float | None) -> float:
        """Full jitter (uniform in [0, min(max, base·2^(n-1))]), but never shorter than the server asked."""
        ep = self.endpoint
        delay = self._rng.uniform(0.0, min(ep.backoff_max_s, ep.backoff_base_s * 2 ** (attempt - 1)))
        if retry_after_s is not None:
            delay = max(delay, min(retry_after_s, _MAX_RETRY_AFTER_S))
        return delay

    def _record(self, stage: str, usage: Usage, latency_s: float, *, reasoning_cut: bool = False) -> None:
        if self.ledger is None:
            return
        ep = self.endpoint
        priced = ep.usd_per_1k_prompt_tokens is not None or ep.usd_per_1k_completion_tokens is not None
        cost = (
            (
                usage.prompt_tokens * (ep.usd_per_1k_prompt_tokens or 0.0)
                + usage.completion_tokens * (ep.usd_per_1k_completion_tokens or 0.0)
            )
            / 1000.0
            if priced
            else None
        )
        self.ledger.record(
            stage,
            usage.prompt_tokens,
            usage.completion_tokens,
            latency_s,
            cost_usd=cost,
            reasoning_cut=reasoning_cut,
        )


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """Loading CA certificates costs tens of milliseconds: once per process, not per session."""
    return ssl.create_default_context()
