"""``ArenaEnv``: one RL episode on one arena — reset, step with tool calls, F1 reward.

Tool calls arrive parsed (:class:`~astra_synth.agent.chat.ToolCall`, or OpenAI ``tool_calls`` dicts read by
the same parser) and are executed by tool name with JSON arguments through a
:class:`~astra_synth.sandbox.executor.ToolExecutor`; model text is never turned into code. Whatever the model
gets wrong — a malformed call, an unknown tool, arguments that are not JSON or do not fit the schema, a tool
that raises or times out — comes back to it as a tool message with an error text, never as an exception,
and still counts as a call in the reward's precision.
"""

from __future__ import annotations

import json
import random
from typing import Any

from pydantic import Field

from astra_synth.agent.chat import Message, ToolCall, parse_openai_call
from astra_synth.arenas.records import Arena, FunctionSpec, ToolSchema, ToolSource
from astra_synth.arenas.reward import (
    ExecutedCall,
    RewardBreakdown,
    RewardConfig,
    SubTaskTarget,
    f1_reward,
)
from astra_synth.config import StrictModel
from astra_synth.runs.ids import canonical_json
from astra_synth.sandbox.executor import ToolCall as SandboxCall
from astra_synth.sandbox.executor import ToolExecutor, ToolResult
from astra_synth.tools.spec import fits_json_types


class EnvConfig(StrictModel):
    """Per-episode limits and the reward definition."""

    timeout_s: float = Field(default=2.0, gt=0, description="Sandbox wall-clock limit per tool call.")
    max_output_chars: int = Field(default=4096, ge=64, description="Tool output longer than this is cut.")
    reward: RewardConfig = Field(default_factory=RewardConfig)


class ExtraTool(StrictModel):
    """A tool offered beside the arena's own (e.g. an irrelevant distractor); it runs its own source."""

    tool: ToolSchema
    source: ToolSource


def argument_error(spec: FunctionSpec, args: dict[str, Any]) -> str | None:
    """Why ``args`` do not fit the tool's schema (top-level names, types and enums), or None."""
    props = spec.properties
    unknown = sorted(set(args) - set(props))
    if unknown:
        return f"unexpected argument(s) {unknown}; parameters are {sorted(props)}"
    missing = [name for name in spec.required if name not in args]
    if missing:
        return f"missing required argument(s) {missing}"
    for name, value in args.items():
        schema = props[name]
        declared = schema["type"]
        types: list[str] = declared if isinstance(declared, list) else [declared]
        if not fits_json_types(value, types):
            return f"argument {name!r} must be of type {' or '.join(types)}, got {type(value).__name__}"
        if "enum" in schema and value not in schema["enum"]:
            return f"argument {name!r} must be one of {schema['enum']}, got {value!r}"
    return None


class ArenaEnv:
    """One episode on ``arena``. Loads each tool source into the executor once (content-addressed ids)."""

    def __init__(
        self,
        arena: Arena,
        executor: ToolExecutor,
        config: EnvConfig | None = None,
        extra_tools: list[ExtraTool] | None = None,
        seed: int = 0,
    ) -> None:
        self.arena = arena
        self.executor = executor
        self.config = config or EnvConfig()
        self.seed = seed
        tools = [(t, arena.tool_sources[t.function.name]) for t in arena.tools]
        taken = {t.function.name for t in arena.tools}
        for extra in extra_tools or []:
            name = extra.tool.function.name
            if name in taken:
                raise ValueError(f"extra tool {name!r} has the name of one of the arena's tools")
            if extra.source.entrypoint != name:
                raise ValueError(f"extra tool {name!r} has entrypoint {extra.source.entrypoint!r}")
            taken.add(name)
            tools.append((extra.tool, extra.source))
        self._schemas = {t.function.name: t for t, _ in tools}
        self._env_ids = {t.function.name: executor.load(src.source) for t, src in tools}
        self._calls: list[ExecutedCall] = []
        self._exchanged: list[dict[str, Any]] = []
        self._turns = 0
        self._golden: dict[str, ExecutedCall] | None = None
        self._memo: dict[str, ToolResult] = {}

    @property
    def calls(self) -> list[ExecutedCall]:
        """The calls made so far this episode, in order."""
        return list(self._calls)

    @property
    def exchanged(self) -> list[dict[str, Any]]:
        """This episode's assistant turns (their calls only) and tool messages, as OpenAI messages."""
        return list(self._exchanged)

    def reset(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Start a new episode (calls, turns and the call memo are cleared): the prompt messages and the
        tool list, shuffled by the env's seed."""
        self._calls = []
        self._exchanged = []
        self._turns = 0
        self._memo = {}
        tools = [t.model_dump() for t in self._schemas.values()]
        random.Random(self.seed).shuffle(tools)
        return [m.model_dump() for m in self.arena.messages], tools

    def step(self, tool_calls: list[ToolCall] | list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Run one assistant turn's tool calls (possibly parallel); one tool message per call, in order.

        Tools are deterministic (the validation battery checks it), so a call repeated within the episode
        is answered from the episode's memo instead of the sandbox; it still counts as a call.
        """
        self._turns += 1
        calls = [c if isinstance(c, ToolCall) else parse_openai_call(c) for c in tool_calls]
        keys: list[str | None] = []  # memo key of each call that reaches the sandbox
        errors: list[str] = []
        pending: dict[str, SandboxCall] = {}
        for call in calls:
            problem = self._problem(call)
            if problem is not None:
                keys.append(None)
                errors.append(f"Error: {problem}")
                continue
            memo_key = canonical_json([call.name, call.arguments])
            keys.append(memo_key)
            errors.append("")
            if memo_key not in self._memo:
                pending[memo_key] = self._request(call.name, call.arguments)
        for memo_key, fresh in zip(pending, self._run(list(pending.values())), strict=True):
            self._memo[memo_key] = fresh
        messages = []
        for call, key, error in zip(calls, keys, errors, strict=True):
            if key is None:
                self._calls.append(ExecutedCall(name=call.name, ok=False))
                content = error
            else:
                result = self._memo[key]
                self._calls.append(ExecutedCall(name=call.name, ok=result.ok, result=result.result))
                content = self._content(result)
            messages.append(Message(role="tool", tool_call_id=call.id, content=content).to_openai())
        self._exchanged += [Message(role="assistant", content="", tool_calls=calls).to_openai(), *messages]
        return messages

    def replay(
        self, turns: list[list[ToolCall]] | list[list[dict[str, Any]]], final: str | None = None
    ) -> RewardBreakdown:
        """Reset, step each assistant turn's calls, and score the episode with ``final`` as the answer."""
        self.reset()
        for calls in turns:
            self.step(calls)
        return self.reward(final)

    def reward(self, final_message: str | None = None, config: RewardConfig | None = None) -> RewardBreakdown:
        """F1 of the episode so far; ``config`` overrides the env's reward definition (to report both)."""
        golden = self._golden_results()
        targets = [
            SubTaskTarget(
                id=s.id, answer=s.answer, needs_tool=s.needs_tool, tool=s.tool, golden=golden.get(s.id)
            )
            for s in self.arena.subtasks
        ]
        return f1_reward(targets, self._calls, config or self.config.reward, final_message, self._turns)

    def _golden_results(self) -> dict[str, ExecutedCall]:
        """Each golden call executed once per env: the reference a call's result must equal."""
        if self._golden is None:
            golden = [(s.id, s.golden_call) for s in self.arena.subtasks if s.golden_call is not None]
            batch = [self._request(call.name, call.arguments) for _, call in golden]
            self._golden = {
                sid: ExecutedCall(name=c.fn, ok=r.ok, result=r.result)
                for (sid, _), c, r in zip(golden, batch, self._run(batch), strict=True)
            }
        return self._golden

    def _request(self, name: str, args: dict[str, Any]) -> SandboxCall:
        return SandboxCall(env_id=self._env_ids[name], fn=name, args=args, timeout_s=self.config.timeout_s)

    def _run(self, batch: list[SandboxCall]) -> list[ToolResult]:
        results = self.executor.execute_batch(batch) if batch else []
        refused = [r for r in results if r.status == "refused"]
        if refused:
            # Not the model's fault and not something to train on: the sandbox cannot isolate here.
            raise RuntimeError(f"sandbox refused to run tool code: {refused[0].error}")
        return results

    def _problem(self, call: ToolCall) -> str | None:
        """Why ``call`` cannot run as written (the error text for the model), or None."""
        schema = self._schemas.get(call.name)
        if call.name and schema is None:
            return f"unknown tool {call.name!r}; available tools: {', '.join(sorted(self._schemas))}"
        if call.error is not None or schema is None:
            return call.error
        problem = argument_error(schema.function, call.arguments)
        return f"{call.name}: {problem}" if problem else None

    def _content(self, result: ToolResult) -> str:
        if result.ok:
            text = json.dumps(result.result, ensure_ascii=False)
        elif result.status == "timeout":
            text = f"Error: the tool timed out after {self.config.timeout_s:g} s"
        else:
            text = f"Error: {result.error or result.status}"
        limit = self.config.max_output_chars
        if len(text) > limit:
            text = f"{text[:limit]}… [output truncated: {len(text) - limit} more characters]"
        return text
