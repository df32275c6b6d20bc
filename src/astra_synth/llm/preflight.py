"""One request to an endpoint before any work, so a wrong URL, a dead server or a refused key fails loudly.

Without it, an evaluation against a dead endpoint records every episode as a failed request and prints a
score of zero, which reads as "the model scores zero". ``GET /models`` is answered by every
OpenAI-compatible server we know (vLLM, SGLang, llama.cpp, Ollama, hosted APIs, ``astra serve``); a server
without it (404/405) gets a one-token chat request instead.
"""

from __future__ import annotations

import asyncio

import aiohttp

from astra_synth.config import EndpointConfig

PREFLIGHT_TIMEOUT_S = 15.0


class EndpointUnavailable(RuntimeError):
    """The endpoint failed its pre-flight request; the message names the URL, what happened, what to check."""

    def __init__(self, url: str, problem: str, check: str) -> None:
        super().__init__(f"endpoint {url} is not usable: {problem}. Check {check}.")
        self.url = url
        self.problem = problem


def _check_for(status: int, endpoint: EndpointConfig) -> str:
    if status in (401, 403):
        return f"that ${endpoint.api_key_env} holds a key this server accepts"
    if status in (404, 405):
        return "that --base-url ends with the API prefix (usually /v1) and --model names a served model"
    return "the server's log"


async def check_endpoint(endpoint: EndpointConfig, *, timeout_s: float = PREFLIGHT_TIMEOUT_S) -> None:
    """Raise :class:`EndpointUnavailable` unless ``endpoint`` answers ``GET /models`` (or a tiny chat).

    One attempt, no retries: a server that is not up yet should say so now, not after the client's backoff.
    """
    if endpoint.base_url is None:
        raise ValueError("check_endpoint needs a base URL (start the embedded server first)")
    base = endpoint.base_url.rstrip("/")
    headers = {"Authorization": f"Bearer {endpoint.api_key()}"}
    timeout = aiohttp.ClientTimeout(total=min(timeout_s, endpoint.timeout_s))
    try:
        async with aiohttp.ClientSession(headers=headers, timeout=timeout) as session:
            async with session.get(f"{base}/models") as response:
                status, body = response.status, await response.text(errors="replace")
            if status in (404, 405):
                probe = {
                    "model": endpoint.model,
                    "messages": [{"role": "user", "content": "ping"}],
                    "max_tokens": 1,
                }
                async with session.post(f"{base}/chat/completions", json=probe) as response:
                    status, body = response.status, await response.text(errors="replace")
    except (aiohttp.ClientError, TimeoutError) as exc:
        problem = str(exc) or type(exc).__name__
        if isinstance(exc, TimeoutError):
            problem = f"no answer within {timeout.total:g} s"
        raise EndpointUnavailable(
            endpoint.base_url,
            f"cannot connect ({problem})",
            "that the server is running and --base-url names its scheme, host, port and /v1 prefix",
        ) from exc
    if status >= 300:
        raise EndpointUnavailable(
            endpoint.base_url, f"HTTP {status}: {body.strip()[:300]}", _check_for(status, endpoint)
        )


def check_endpoint_sync(endpoint: EndpointConfig) -> None:
    """:func:`check_endpoint` for callers without an event loop (BFCL drives its own client)."""
    asyncio.run(check_endpoint(endpoint))
