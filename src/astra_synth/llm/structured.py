"""Schema'd JSON answers: constrain, validate, repair, re-ask a bounded number of times, else reject.

Small models break JSON in every way (cut off, prose around it, wrong fields), and even grammar-constrained
decoding guarantees syntax, not termination. So a stage never trusts an answer: it gets a validated
pydantic object or a :class:`StructuredOutputRejected` that the runner records. There is no silent default.

Only ``content`` is parsed, never a thinking model's ``reasoning_content``. An answer cut off while the model
was still reasoning (``finish_reason: length`` with reasoning sent) is not a long answer: telling the model to
be shorter does not shorten its thinking, so the same request goes again with twice the token cap, and if
the reasoning eats that too the item is rejected as ``truncated_by_reasoning``.
"""

from __future__ import annotations

import functools
import json
import re
from typing import Any, Literal, TypeVar

import json_repair
from pydantic import BaseModel, ValidationError

from astra_synth.errors import Rejection
from astra_synth.llm.client import LLMClient

T = TypeVar("T", bound=BaseModel)

_RAW_IN_DETAIL = 500  # characters of the last raw answer kept in a rejection
_ERRORS_IN_MESSAGE = 8


class StructuredOutputRejected(Rejection):
    """The model did not produce a valid object within the allowed re-asks."""

    REASON = "structured_output_invalid"

    def __init__(self, detail: str, *, attempts: int) -> None:
        super().__init__(self.REASON, detail)
        self.attempts = attempts

    def __reduce__(self) -> tuple[Any, ...]:
        """Picklable (runners may hand rejections across processes)."""
        return (functools.partial(type(self), self.detail, attempts=self.attempts), ())


class ReasoningTruncated(StructuredOutputRejected):
    """Every answer was cut off at the token cap while the model was still reasoning."""

    REASON = "truncated_by_reasoning"


class CallCap:
    """A hard cap on LLM calls shared by several structured requests (e.g. all sub-steps of one tool).

    Each attempt, re-asks included, takes one call; taking past the cap rejects the item
    (``llm_call_cap``), so a pathological item can never cost more than the configured number of calls.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def take(self) -> None:
        if self.used >= self.limit:
            raise Rejection("llm_call_cap", f"{self.used} LLM calls used, the cap is {self.limit}")
        self.used += 1


class _Invalid(ValueError):
    """One answer failed; the message is what the model is told on the re-ask."""


@functools.lru_cache(maxsize=512)
def _json_schema(schema: type[BaseModel]) -> dict[str, Any]:
    """Building a pydantic JSON schema costs milliseconds; it is asked for on every request. Read-only."""
    return schema.model_json_schema()


def response_format_for(
    schema: type[BaseModel], mode: Literal["auto", "llama_cpp", "openai", "none"]
) -> dict[str, Any] | None:
    """The ``response_format`` that makes the endpoint constrain decoding to ``schema``.

    llama.cpp's server answers HTTP 500 to OpenAI's ``json_schema`` form, so it gets ``json_object`` +
    ``schema``; ``auto`` means OpenAI's form (the embedded-server code sets ``llama_cpp`` explicitly).
    """
    json_schema = _json_schema(schema)
    if mode == "llama_cpp":
        return {"type": "json_object", "schema": json_schema}
    if mode in ("openai", "auto"):
        name = re.sub(r"[^A-Za-z0-9_-]", "_", schema.__name__)[:64]
        return {"type": "json_schema", "json_schema": {"name": name, "schema": json_schema}}
    return None


def _schema_prompt(schema: type[BaseModel]) -> str:
    return (
        "Answer with exactly one JSON object and nothing else. It must match this JSON schema:\n"
        + json.dumps(_json_schema(schema), separators=(",", ":"))
    )


def _with_schema_prompt(messages: list[dict[str, Any]], schema: type[BaseModel]) -> list[dict[str, Any]]:
    """Without constrained decoding the schema goes into the system prompt (appended, so it stays first)."""
    if messages and messages[0].get("role") == "system" and isinstance(messages[0].get("content"), str):
        first = {**messages[0], "content": f"{messages[0]['content']}\n\n{_schema_prompt(schema)}"}
        return [first, *messages[1:]]
    return [{"role": "system", "content": _schema_prompt(schema)}, *messages]


def _describe(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    lines = [f"{'.'.join(str(p) for p in e['loc']) or '<root>'}: {e['msg']}" for e in errors]
    more = len(lines) - _ERRORS_IN_MESSAGE
    return "; ".join(lines[:_ERRORS_IN_MESSAGE]) + (f"; and {more} more" if more > 0 else "")


_THINK_END = "</think>"


def _without_thinking(raw: str) -> str:
    """``raw`` after a leading ``<think>…</think>`` block: how Qwen3-style models send their reasoning when
    the server has no reasoning parser (the chat template may open the block, so only the end tag can be
    there). Its drafts of the JSON would otherwise be parsed as the answer. An answer that starts as JSON is
    left alone, whatever its strings hold."""
    head = raw.lstrip()
    if _THINK_END not in raw or head.startswith(("{", "[", "```")):
        return raw
    return raw.split(_THINK_END, 1)[1]


def parse_structured(raw: str, schema: type[T], *, truncated: bool = False) -> T:
    """Validate ``raw`` (after any :func:`_without_thinking` block) as ``schema``; repair broken JSON unless
    the answer was cut off (``truncated``).

    Repairing a cut-off answer would invent its missing end, so a truncated answer is accepted only if it
    is already complete and valid. Raises ``ValueError`` with a message fit to show the model.
    """
    raw = _without_thinking(raw)
    try:
        return schema.model_validate_json(raw)
    except ValidationError as exc:
        strict_error = exc
    if truncated:
        raise _Invalid(f"the answer was cut off at the token limit ({_describe(strict_error)})")
    repaired = json_repair.loads(raw) if raw.strip() else None
    if not isinstance(repaired, dict):
        raise _Invalid(f"not a JSON object ({_describe(strict_error)})")
    try:
        return schema.model_validate(repaired)
    except ValidationError as exc:
        raise _Invalid(f"the JSON does not match the schema: {_describe(exc)}") from exc


def _reask(error: str, truncated: bool) -> str:
    shorter = " Keep it shorter so that it fits." if truncated else ""
    return (
        f"Your previous answer was invalid: {error}.{shorter} Reply again with only one JSON object that "
        "matches the required schema, no other text."
    )


async def structured_chat(
    client: LLMClient,
    messages: list[dict[str, Any]],
    schema: type[T],
    *,
    stage: str,
    max_reasks: int = 2,
    temperature: float = 0.0,
    max_tokens: int | None = None,
    seed: int | None = None,
    sample_index: int = 0,
    cap: CallCap | None = None,
) -> T:
    """Ask for an object of ``schema``; re-ask with the error at most ``max_reasks`` times.

    ``sample_index`` tells apart repeated asks of the same prompt (a retry, another round), so the response
    cache does not hand back the first answer again.

    Raises :class:`StructuredOutputRejected` (reason ``structured_output_invalid``) when every answer is
    invalid, :class:`ReasoningTruncated` when the last one was cut off while reasoning, and lets
    ``LLMCallError`` / ``BudgetExceeded`` through.
    """
    mode = client.endpoint.schema_mode
    response_format = response_format_for(schema, mode)
    conversation = list(messages) if response_format else _with_schema_prompt(messages, schema)
    error, raw, reasoning_cut, sent, cap_used = "", "", False, 0, max_tokens
    for _ in range(max_reasks + 1):
        if cap is not None:
            cap.take()
        sent += 1
        result = await client.chat(
            conversation,
            stage=stage,
            response_format=response_format,
            temperature=temperature,
            max_tokens=max_tokens,
            seed=seed,
            sample_index=sample_index,
        )
        cap_used = max_tokens
        raw = result.message.get("content") or ""
        truncated = result.finish_reason == "length"
        try:
            return parse_structured(raw, schema, truncated=truncated)
        except _Invalid as exc:
            error = str(exc)
        reasoning_cut = result.cut_while_reasoning
        if reasoning_cut:
            if max_tokens is None:
                break  # the server's own limit: the same request would end the same way
            max_tokens *= 2  # the same question with room to finish thinking; nothing to correct yet
            continue
        conversation = [
            *conversation,
            {"role": "assistant", "content": raw},
            {"role": "user", "content": _reask(error, truncated)},
        ]
    shown = raw if len(raw) <= _RAW_IN_DETAIL else raw[:_RAW_IN_DETAIL] + "…"
    if reasoning_cut:
        raise ReasoningTruncated(
            f"the model's reasoning filled the token cap (max_tokens {cap_used} plus the endpoint's "
            f"reasoning_tokens) before it answered | last answer: {shown!r}",
            attempts=sent,
        )
    raise StructuredOutputRejected(f"{error} | last answer: {shown!r}", attempts=sent)
