"""Stage 4 — tool synthesis: for every sub-question that needs a tool, a document, a call, and code.

Per sub-question: tool document → complexity scaling (kept only if strictly backward compatible) → the call
as a tool name + JSON arguments (a schema built from the document, so the call always fits it) → a Python
implementation. The source is checked statically before anything runs, then the tool battery runs it in
the sandbox. A failed battery sends its findings back and retries the call and code; an exhausted inner loop
restarts from the document.

A lookup tool keeps a data table holding the QA model's answer; a calculator (a ``compute`` sub-question) is
never shown that answer: its output defines it (:mod:`astra_synth.arenas.computed_answer`). Sub-questions
are therefore synthesized one DAG layer at a time, so that a dependant's call and question are written from
the values its parents' tools actually return. Every LLM request of the sub-question, re-asks included,
draws on one :class:`CallCap`, so a sub-question can never cost more than ``max_llm_calls``.

Nothing is spent on an instance that must fail: sub-answers no tool output could match are rejected before
the first request (``answer_unmatchable``), and the first sub-question that cannot get a tool stops the
others' synthesis (the instance is rejected either way).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, create_model, model_validator

from astra_synth.arenas.answer_match import render
from astra_synth.arenas.asking import Asker, prompt_hashes
from astra_synth.arenas.computed_answer import (
    DefinedAnswer,
    apply_defined_answer,
    defined_answer,
    rewrite_prose,
)
from astra_synth.arenas.instance import QAInstance, SubQuestion
from astra_synth.arenas.records import (
    Arena,
    ChatMessage,
    CheckResult,
    FunctionSpec,
    GoldenCall,
    Provenance,
    SubTask,
    ToolSchema,
    ToolSource,
)
from astra_synth.arenas.validate import (
    ValidationConfig,
    answer_problems,
    carried,
    static_check,
    tool_battery,
)
from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.client import LLMClient
from astra_synth.llm.structured import CallCap, ReasoningTruncated
from astra_synth.runs.stage import StageContext
from astra_synth.sandbox.executor import ToolExecutor

_FAILED = "tool_synthesis_failed"
ScalarType = Literal["string", "integer", "number", "boolean"]
ParamType = ScalarType | Literal["array", "object"]
# A "number" keeps the spelling the model wrote (118 stays an int, 118.5 a float): the golden call is what a
# policy would send, and coercing it to 118.0 would make its result differ from a policy's in spelling.
_Number = Annotated[int | float, WithJsonSchema({"type": "number"})]
_PY: dict[str, Any] = {"string": str, "integer": int, "number": _Number, "boolean": bool}
_Scalar = str | int | float | bool


def _python_type(schema: dict[str, Any]) -> Any:
    """The pydantic type of one parameter schema (arrays of scalars, objects of scalar fields)."""
    if schema.get("enum"):
        return Literal[tuple(schema["enum"])]
    if schema["type"] == "array":
        items = schema.get("items", {}).get("type")
        item: Any = _PY[items] if items else Any
        return list[item]
    if schema["type"] == "object":
        return dict[str, _Scalar]
    return _PY[schema["type"]]


class ParamDraft(StrictModel):
    """One parameter. Arrays hold scalars of one type (``items``): statistics over a list of values take
    one; an object is a JSON object of named scalar fields (a filter, an address)."""

    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,39}$")
    type: ParamType
    description: str = Field(min_length=1)
    required: bool = True
    enum: list[str] = Field(default_factory=list, max_length=8)
    items: ScalarType | None = Field(default=None, description="For an array: the type of its items.")

    @model_validator(mode="after")
    def _items_for_arrays(self) -> Self:
        if (self.type == "array") != (self.items is not None):
            raise ValueError(f"parameter {self.name!r}: give 'items' for an array and only for an array")
        return self


class ToolDocDraft(StrictModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{2,47}$")
    description: str = Field(min_length=10)
    parameters: list[ParamDraft] = Field(min_length=1, max_length=6)

    def spec(self) -> FunctionSpec:
        """The OpenAI function schema of this draft (an invalid draft raises ValueError: re-asked)."""
        props: dict[str, Any] = {}
        for p in self.parameters:
            schema: dict[str, Any] = {"type": p.type, "description": p.description}
            if p.enum and p.type == "string":
                schema["enum"] = p.enum
            if p.items is not None:
                schema["items"] = {"type": p.items}
            props[p.name] = schema
        names = [p.name for p in self.parameters]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate parameter names in {names}")
        required = [p.name for p in self.parameters if p.required]
        return FunctionSpec(
            name=self.name,
            description=self.description,
            parameters={"type": "object", "properties": props, "required": required},
        )


class CodeDraft(StrictModel):
    code: str = Field(min_length=20)


class SynthesizedTool(StrictModel):
    """One sub-question's tool, accepted by the static check and the battery."""

    sub_id: str
    spec: FunctionSpec
    source: str
    golden_call: GoldenCall
    scaled: bool
    checks: list[CheckResult]
    llm_calls: int
    attempts: int
    defined: DefinedAnswer | None = Field(
        default=None, description="A calculator's answer as its output defines it (None: a lookup)."
    )


class ToolInstance(QAInstance):
    """A QA instance whose tool-needing sub-questions each have a synthesized tool (keyed by sub id)."""

    tools: dict[str, SynthesizedTool] = Field(default_factory=dict)
    rewrites: list[str] = Field(
        default_factory=list, description="What the calculators' results changed in the QA instance."
    )


def backward_problems(old: FunctionSpec, new: FunctionSpec) -> list[str]:
    """Why ``new`` is not a strictly backward-compatible refinement of ``old``."""
    problems = []
    if new.name != old.name:
        problems.append(f"renamed {old.name!r} to {new.name!r}")
    for name, schema in old.properties.items():
        if name not in new.properties:
            problems.append(f"dropped parameter {name!r}")
        elif any(new.properties[name].get(k) != schema.get(k) for k in ("type", "items")):
            problems.append(f"changed the type of {name!r}")
    if missing := sorted(set(old.required) - set(new.required)):
        problems.append(f"made required parameters optional: {missing}")
    if added := sorted(set(new.required) - set(old.required)):
        problems.append(f"added required parameters: {added}")
    return problems


def call_model(spec: FunctionSpec) -> type[BaseModel]:
    """A pydantic model of the tool's arguments: the call is constrained to the document's schema."""
    fields: dict[str, Any] = {}
    for name, schema in spec.properties.items():
        py = _python_type(schema)
        fields[name] = (py, ...) if name in spec.required else (py | None, None)
    model: type[BaseModel] = create_model("Arguments", __config__=ConfigDict(extra="forbid"), **fields)
    return model


def signature(spec: FunctionSpec) -> str:
    required = [n for n in spec.properties if n in spec.required]
    optional = [f"{n}=None" for n in spec.properties if n not in spec.required]
    return ", ".join(required + optional)


def render_call(call: GoldenCall) -> str:
    """``name(a='x', b=2)``: how prompts show a call (the call itself is always JSON arguments)."""
    return f"{call.name}({', '.join(f'{k}={v!r}' for k, v in call.arguments.items())})"


def context_block(item: QAInstance, sub: SubQuestion) -> str:
    """The parents' questions and answers: what a dependent sub-question's call may use."""
    if not sub.parents:
        return ""
    lines = [f"- {item.sub(p).question} → {item.sub(p).answer}" for p in sub.parents]
    return "Additional information (answers of earlier steps):\n" + "\n".join(lines) + "\n"


def dropped_parents(item: QAInstance, sub: SubQuestion, call: GoldenCall) -> list[str]:
    """The tool-answered parents whose answer no argument of ``call`` carries (arena_check's dependency
    test, run as soon as the call exists so that the model is re-asked instead of the arena failing)."""
    parents = [item.sub(p) for p in sub.parents]
    return [
        f"the answer of {p.id!r} ({p.answer!r})"
        for p in parents
        if p.needs_tool and not carried(call.arguments, p.answer)
    ]


def _doc_json(spec: FunctionSpec) -> str:
    return spec.model_dump_json(indent=1)


def single_tool_arena(sub: SubQuestion, spec: FunctionSpec, source: str, call: GoldenCall) -> Arena:
    """A one-tool, one-sub-task arena: lets the shared battery judge a tool before the real arena exists."""
    return Arena(
        id=f"probe-{sub.id}",
        language="en",
        domain="probe",
        scenario_type="single-hop",
        messages=[ChatMessage(role="user", content=sub.question)],
        tools=[ToolSchema(function=spec)],
        tool_sources={spec.name: ToolSource.of(source, spec.name)},
        subtasks=[
            SubTask(
                id=sub.id,
                question=sub.question,
                answer=sub.answer,
                hop_level=1,
                kind=sub.kind,
                tool=spec.name,
                golden_call=call,
            )
        ],
        final_answer=sub.answer,
        provenance=Provenance(method="hand-written", licence="n/a"),
    )


class ToolSynthesisStage:
    """QAInstance → ToolInstance, or a rejection naming the sub-question that could not get a tool."""

    name = "tool_synthesis"
    version = "1"
    input_model = QAInstance

    def __init__(
        self,
        *,
        outer_attempts: int = 2,
        inner_attempts: int = 3,
        max_llm_calls: int = 24,
        max_reasks: int = 1,
        retry_temperature: float = 0.7,
        answer_tolerance: float = 0.05,
        max_tokens: int = 2000,
        validation: ValidationConfig | None = None,
    ) -> None:
        self.retry_temperature = retry_temperature
        self.max_tokens = max_tokens
        self.outer_attempts = outer_attempts
        self.inner_attempts = inner_attempts
        self.max_llm_calls = max_llm_calls
        self.max_reasks = max_reasks
        self.answer_tolerance = answer_tolerance
        self.validation = validation or ValidationConfig()

    def prompt_hashes(self) -> dict[str, str]:
        return prompt_hashes(
            "tool_document.md",
            "tool_scale.md",
            "tool_call.md",
            "tool_code.md",
            "tool_code_compute.md",
            "answer_rewrite.md",
        )

    async def process(self, item: QAInstance, ctx: StageContext) -> ToolInstance:
        assert ctx.llm is not None and ctx.sandbox is not None, "tool_synthesis needs an LLM and a sandbox"
        subs = [s for s in item.sub_questions if s.needs_tool]
        if unmatchable := [
            f"{s.id} ({s.answer!r}): {p}" for s in subs for p in answer_problems(s.answer, self.validation)
        ]:
            raise Rejection("answer_unmatchable", "; ".join(unmatchable)[:2000])
        tools: dict[str, SynthesizedTool] = {}
        rewrites: list[str] = []
        changed: list[str] = []
        for layer in sorted({s.hop_level for s in subs}):
            for sub, tool in await self._layer(ctx.llm, ctx.sandbox, item, layer):
                tools[sub.id] = tool
                if tool.defined is not None:
                    item, notes = apply_defined_answer(item, sub.id, tool.defined)
                    rewrites += notes
                    changed += [sub.id] if tool.defined.changes else []
        ask = Asker(
            ctx.llm, self.name, CallCap(1 + self.max_reasks), self.max_reasks, max_tokens=self.max_tokens
        )
        try:
            item, notes = await rewrite_prose(ask, item, changed)
        except Rejection as exc:
            raise Rejection("answer_rewrite_failed", f"{exc.reason}: {exc.detail}"[:2000]) from exc
        return ToolInstance(**item.model_dump(), tools=tools, rewrites=[*rewrites, *notes])

    async def _layer(
        self, llm: LLMClient, sandbox: ToolExecutor, item: QAInstance, layer: int
    ) -> list[tuple[SubQuestion, SynthesizedTool]]:
        """Tools for one DAG layer, written from the values the layers before it defined. The first
        sub-question that cannot get a tool stops its siblings (the instance is rejected either way), and a
        later layer never starts."""
        subs = [s for s in item.sub_questions if s.needs_tool and s.hop_level == layer]
        tasks = [asyncio.create_task(self._synthesize(llm, sandbox, item, s)) for s in subs]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        finally:
            for task in tasks:
                task.cancel()  # a failed sibling dooms the instance: stop paying for the others
            await asyncio.gather(*tasks, return_exceptions=True)
        done: list[tuple[SubQuestion, SynthesizedTool]] = []
        failures, reasons, stopped = [], set(), []
        for sub, task in zip(subs, tasks, strict=True):
            if task.cancelled():
                stopped.append(sub.id)
            elif isinstance(error := task.exception(), Rejection):
                failures.append(f"{sub.id}: {error.reason}: {error.detail}")
                reasons.add(error.reason)
            elif error is not None:
                raise error
            else:
                done.append((sub, task.result()))
        if failures:
            if stopped:
                failures.append(f"{', '.join(stopped)}: stopped, the instance had failed")
            cut = reasons == {ReasoningTruncated.REASON}
            raise Rejection(ReasoningTruncated.REASON if cut else _FAILED, " | ".join(failures)[:2000])
        return done

    async def _document(
        self, ask: Asker, item: QAInstance, sub: SubQuestion, feedback: str
    ) -> tuple[FunctionSpec, bool]:
        draft: ToolDocDraft = await ask(
            "tool_document.md",
            ToolDocDraft,
            question=sub.question,
            context=context_block(item, sub),
            feedback=feedback,
        )
        spec = draft.spec()
        try:
            refined: ToolDocDraft = await ask("tool_scale.md", ToolDocDraft, document=_doc_json(spec))
            scaled = refined.spec()
        except Rejection as exc:
            if exc.reason == "llm_call_cap":
                raise
            return spec, False  # scaling is an enhancement: an unusable refinement keeps the original
        except ValueError:
            return spec, False
        return (scaled, True) if not backward_problems(spec, scaled) else (spec, False)

    async def _synthesize(
        self, llm: LLMClient, sandbox: ToolExecutor, item: QAInstance, sub: SubQuestion
    ) -> SynthesizedTool:
        """Outer attempts restart from the document, inner ones redo call and code. Every retry samples
        anew (:meth:`Asker.retry`) and its prompts carry why the attempt before it failed."""
        cap = CallCap(self.max_llm_calls)
        ask = Asker(
            llm,
            self.name,
            cap,
            self.max_reasks,
            max_tokens=self.max_tokens,
            retry_temperature=self.retry_temperature,
        )
        last = "no attempt"
        feedback = ""
        attempts = 0
        cut_only = True  # every failure so far was an answer crowded out by the model's reasoning
        for outer in range(self.outer_attempts):
            try:
                spec, scaled = await self._document(ask.retry(outer), item, sub, feedback)
            except (ValueError, Rejection) as exc:
                _reraise_cap(exc)
                last = f"tool document unusable: {exc}"
                feedback = _feedback(last)
                cut_only &= isinstance(exc, ReasoningTruncated)
                continue
            for _ in range(self.inner_attempts):
                try:
                    tool = await self._attempt(ask.retry(attempts), sandbox, item, sub, spec, feedback)
                except Rejection as exc:
                    _reraise_cap(exc)
                    tool = f"{exc.reason}: {exc.detail}"[:600]
                    cut_only &= isinstance(exc, ReasoningTruncated)
                else:
                    cut_only &= not isinstance(tool, str)
                attempts += 1
                if isinstance(tool, str):
                    last = tool
                    feedback = _feedback(last)
                    continue
                return tool.model_copy(update={"scaled": scaled, "llm_calls": cap.used, "attempts": attempts})
        reason = ReasoningTruncated.REASON if cut_only and cap.used else _FAILED
        raise Rejection(reason, f"after {attempts} attempts, {cap.used} LLM calls: {last}")

    async def _attempt(
        self,
        ask: Asker,
        sandbox: ToolExecutor,
        item: QAInstance,
        sub: SubQuestion,
        spec: FunctionSpec,
        feedback: str,
    ) -> SynthesizedTool | str:
        """One call + code attempt: the accepted tool, or why it was not accepted."""
        args = await ask(
            "tool_call.md",
            call_model(spec),
            document=_doc_json(spec),
            question=sub.question,
            context=context_block(item, sub),
            feedback=feedback,
        )
        call = GoldenCall(name=spec.name, arguments=args.model_dump(exclude_none=True))
        if dropped := dropped_parents(item, sub, call):
            return f"the call {render_call(call)} passes on no value of " + "; ".join(dropped)
        compute = sub.kind == "compute"
        draft: CodeDraft = await ask(
            "tool_code_compute.md" if compute else "tool_code.md",
            CodeDraft,
            name=spec.name,
            signature=signature(spec),
            document=_doc_json(spec) + feedback,
            call=render_call(call),
            **({"question": sub.question} if compute else {"answer": sub.answer}),
        )
        problems = static_check(draft.code, spec)
        if problems:
            return "; ".join(problems)[:600]
        defined = None
        if compute:
            found = await asyncio.to_thread(self._define, sandbox, spec.name, draft.code, call, sub.answer)
            if isinstance(found, str):
                return found
            defined = found
            sub = sub.model_copy(update={"answer": found.answer})
        arena = single_tool_arena(sub, spec, draft.code, call)
        checks = await asyncio.to_thread(tool_battery, arena, spec.name, sandbox, self.validation)
        failed = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
        if failed:
            return "; ".join(failed)[:600]
        return SynthesizedTool(
            sub_id=sub.id,
            spec=spec,
            source=draft.code,
            golden_call=call,
            scaled=False,
            checks=checks,
            llm_calls=ask.cap.used,
            attempts=1,
            defined=defined,
        )

    def _define(
        self, sandbox: ToolExecutor, name: str, source: str, call: GoldenCall, expected: str
    ) -> DefinedAnswer | str:
        """Run a calculator's golden call: the answer its output defines, or why there is none."""
        result = sandbox.execute(sandbox.load(source), name, call.arguments, self.validation.env.timeout_s)
        if not result.ok:
            return f"the call {render_call(call)} failed: {result.status}: {result.error}"[:600]
        return defined_answer(render(result.result), expected, self.answer_tolerance, call.arguments)


def _feedback(failure: str) -> str:
    """What a retried prompt says about the attempt before it."""
    return f"\n\nYour previous attempt was rejected: {failure}\nFix these problems."


def _reraise_cap(exc: Exception) -> None:
    """The call cap ends the sub-question at once; any other failure only ends the attempt."""
    if isinstance(exc, Rejection) and exc.reason == "llm_call_cap":
        raise exc
