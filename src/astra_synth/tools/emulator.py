"""The stateful tool emulator: LLM-simulated responses for documentation-only servers (spec A.8).

Each emulated call is one LLM request conditioned on the tool document, the call's arguments and the
*whole* call history of the session, so what one call creates a later call can read. Failures are
injected by code, not left to the model: each call fails with probability ``failure_rate`` (20 % as in the
paper), the kind drawn from ``failure_kinds``, both decided by a hash of (seed, session, call index), so a
rerun fails the same calls in the same way. By default only transient failures are injected (timeout, 429,
503), as in the paper: a permanent-looking 400/404 on a valid call would teach the policy to give up on a
request it could serve, and the judges would then score the retry as pointless; those kinds are opt-in.
The model may still return a realistic error of its own (``tool_error``). Arguments are checked against
the schema in code first. An LLM failure or an answer that stays invalid after the re-asks is an
``emulator_error`` outcome, never an exception in the rollout.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from typing import Any, Literal, Self

from pydantic import Field, model_validator

from astra_synth.config import StrictModel
from astra_synth.llm.client import LLMCallError, LLMClient
from astra_synth.llm.structured import StructuredOutputRejected, structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.tools.outcome import OutcomeStatus, ToolOutcome
from astra_synth.tools.spec import ServerRecord, ToolSpec, fits_json_types

STAGE = "tool_emulator"
InjectedFailure = Literal["timeout", "rate_limited", "invalid_argument", "not_found", "server_error"]

# What a real service says for each injected failure; fixed text so a rerun gives identical trajectories.
_FAILURE_MESSAGES: dict[InjectedFailure, str] = {
    "timeout": "Request timed out after 30 s: the service did not respond. Try again.",
    "rate_limited": "429 Too Many Requests: rate limit exceeded, retry after 2 s.",
    "invalid_argument": "400 Bad Request: the service rejected one or more argument values.",
    "not_found": "404 Not Found: the requested resource does not exist.",
    "server_error": "503 Service Unavailable: the service is temporarily overloaded. Try again.",
}
TRANSIENT_FAILURES: tuple[InjectedFailure, ...] = ("timeout", "rate_limited", "server_error")
_JSON_TYPES = ("object", "array", "string", "number", "boolean", "null")
_OLD_RESULT_CHARS = 300  # how much of an old result survives when the history must be shortened


def emulator_prompts() -> tuple[Prompt, Prompt]:
    """The system and call templates (their hashes go into the manifest)."""
    return load_prompt("astra_synth.tools", "emulate_system.md"), load_prompt(
        "astra_synth.tools", "emulate_call.md"
    )


class EmulatorConfig(StrictModel):
    failure_rate: float = Field(default=0.2, ge=0.0, le=1.0, description="Share of calls that fail by code.")
    failure_kinds: list[InjectedFailure] = Field(
        default_factory=lambda: list(TRANSIENT_FAILURES),
        min_length=1,
        description="Drawn uniformly; transient ones by default, invalid_argument / not_found on request.",
    )
    seed: int = 0
    temperature: float = Field(default=1.0, ge=0.0, description="The paper's emulator samples at 1.0.")
    max_tokens: int = Field(default=2048, ge=16)
    max_reasks: int = Field(default=1, ge=0)
    max_history_chars: int = Field(
        default=24_000, ge=1_000, description="Beyond this, the oldest results are shown shortened."
    )


class EmulatedResponse(StrictModel):
    """What the model must answer: the tool's output, or the error the real service would give."""

    status: Literal["ok", "error"]
    # An explicit "any JSON value" schema: grammar-constrained decoders (llama.cpp) reject an untyped field
    # and would then decode without any constraint at all.
    result: Any = Field(default=None, json_schema_extra={"anyOf": [{"type": t} for t in _JSON_TYPES]})
    error_message: str | None = None

    @model_validator(mode="after")
    def _complete(self) -> Self:
        if self.status == "ok" and self.result is None:
            raise ValueError("status 'ok' needs a 'result'")
        if self.status == "error" and not self.error_message:
            raise ValueError("status 'error' needs an 'error_message'")
        return self


def draw_failure(
    seed: int, session_id: str, call_index: int, rate: float, kinds: list[InjectedFailure]
) -> InjectedFailure | None:
    """The injected failure of one call, or ``None``: a pure function of its inputs."""
    digest = hashlib.sha256(f"{seed}\x1f{session_id}\x1f{call_index}".encode()).digest()
    if int.from_bytes(digest[:8], "big") / 2**64 >= rate:
        return None
    return kinds[int.from_bytes(digest[8:16], "big") % len(kinds)]


def argument_problem(spec: ToolSpec, arguments: dict[str, Any]) -> str | None:
    """What a real service's input validation would reject: missing required or unknown keys, wrong types."""
    properties: dict[str, Any] = spec.parameters.get("properties") or {}
    missing = [name for name in spec.parameters.get("required") or [] if name not in arguments]
    if missing:
        return f"missing required argument(s): {', '.join(missing)}"
    if spec.parameters.get("additionalProperties") is False:
        unknown = sorted(set(arguments) - set(properties))
        if unknown:
            return f"unknown argument(s): {', '.join(unknown)}"
    for name, value in arguments.items():
        declared = properties.get(name, {}).get("type") if isinstance(properties.get(name), dict) else None
        kinds = declared if isinstance(declared, list) else [declared] if isinstance(declared, str) else []
        if kinds and not fits_json_types(value, kinds):
            return f"argument {name!r} must be of type {' or '.join(kinds)}, got {type(value).__name__}"
    return None


def _call_line(outcome: ToolOutcome, *, shorten: bool) -> str:
    shown = outcome.message_content()
    if shorten and len(shown) > _OLD_RESULT_CHARS:
        shown = shown[:_OLD_RESULT_CHARS] + " …(shortened)"
    args = json.dumps(outcome.arguments, ensure_ascii=False, sort_keys=True)
    return f"- {outcome.tool}({args}) -> {shown}"


def render_history(history: list[ToolOutcome], max_chars: int) -> str:
    """Every earlier call, oldest first; when too long, the oldest results are shortened (never dropped)."""
    if not history:
        return "(none: this is the first call)"
    full = [_call_line(o, shorten=False) for o in history]
    lines = list(full)
    for i in range(len(history) - 1):  # shorten from the oldest; the latest call stays whole
        if sum(len(line) + 1 for line in lines) <= max_chars:
            break
        lines[i] = _call_line(history[i], shorten=True)
    return "\n".join(lines)


class EmulatedSession:
    """One episode's view of one server: its own call history, so its own state. Calls are serialised."""

    def __init__(
        self, emulator: ToolEmulator, server: ServerRecord, session_id: str, user_query: str | None = None
    ) -> None:
        self.emulator = emulator
        self.server = server
        self.session_id = session_id
        self.user_query = user_query
        self.history: list[ToolOutcome] = []
        self._lock = asyncio.Lock()

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        async with self._lock:
            started = time.monotonic()
            outcome = await self._answer(tool, arguments)
            outcome = outcome.model_copy(update={"latency_s": time.monotonic() - started})
            self.history.append(outcome)
            return outcome

    def _outcome(
        self, tool: str, arguments: dict[str, Any], status: OutcomeStatus, **fields: Any
    ) -> ToolOutcome:
        return ToolOutcome(
            server_id=self.server.id,
            tool=tool,
            arguments=arguments,
            status=status,
            provenance="emulated",
            **fields,
        )

    async def _answer(self, tool: str, arguments: dict[str, Any]) -> ToolOutcome:
        spec = self.server.tool(tool)
        if spec is None:
            return self._outcome(
                tool, arguments, "unknown_tool", error=f"{self.server.id} has no tool {tool!r}"
            )
        problem = argument_problem(spec, arguments)
        if problem is not None:
            return self._outcome(tool, arguments, "invalid_argument", error=problem)
        config = self.emulator.config
        failure = draw_failure(
            config.seed, self.session_id, len(self.history), config.failure_rate, config.failure_kinds
        )
        if failure is not None:
            return self._outcome(tool, arguments, failure, error=_FAILURE_MESSAGES[failure], injected=True)
        try:
            response = await structured_chat(
                self.emulator.client,
                self._messages(spec, arguments),
                EmulatedResponse,
                stage=STAGE,
                max_reasks=config.max_reasks,
                temperature=config.temperature,
                max_tokens=config.max_tokens,
                seed=config.seed,
            )
        except (LLMCallError, StructuredOutputRejected) as exc:
            return self._outcome(tool, arguments, "emulator_error", error=str(exc)[:1000])
        if response.status == "error":
            return self._outcome(tool, arguments, "tool_error", error=response.error_message)
        return self._outcome(tool, arguments, "ok", content=response.result)

    def _messages(self, spec: ToolSpec, arguments: dict[str, Any]) -> list[dict[str, Any]]:
        system, call = emulator_prompts()
        query = f"The user's request in this session: {self.user_query}\n" if self.user_query else ""
        user = call.render(
            server_title=self.server.title,
            server_description=self.server.description or "(no description)",
            tool=json.dumps(spec.openai()["function"], ensure_ascii=False),
            history_count=f"{len(self.history)} call(s)",
            history=render_history(self.history, self.emulator.config.max_history_chars),
            user_query=query,
            call=f"{spec.name}({json.dumps(arguments, ensure_ascii=False, sort_keys=True)})",
        )
        return [{"role": "system", "content": system.text}, {"role": "user", "content": user}]


class ToolEmulator:
    """Makes :class:`EmulatedSession` objects that share one LLM client and one configuration."""

    def __init__(self, client: LLMClient, config: EmulatorConfig | None = None) -> None:
        self.client = client
        self.config = config or EmulatorConfig()

    def session(
        self, server: ServerRecord, session_id: str, *, user_query: str | None = None
    ) -> EmulatedSession:
        return EmulatedSession(self, server, session_id, user_query)
