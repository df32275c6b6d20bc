"""Stage 6 — merging same-intent tools within an instance, incrementally, re-checking every member.

The paper merges homogeneous sub-questions (same intent, different parameter values) into one tool by
inserting members one at a time into a random base's data and re-running every inserted member's call
after each insertion. The authors' code merged all members at once into the *first* member, reused its
tool document for all, dropped the whole instance when a merge failed and never checked name collisions.
Here: a seeded random base, one insertion at a time (each re-checked with the full battery for every member
so far), a regenerated document covering all members, a member that cannot be inserted keeps its own
tool, and tool names are made unique per arena. A calculator has no data to insert into: the base's code,
unchanged, must serve the member's call, and no insertion is asked for.
"""

from __future__ import annotations

import ast
import asyncio
import random
from typing import Any, ClassVar, Literal

from pydantic import Field, create_model, model_validator

from astra_synth.arenas.asking import Asker, prompt_hashes
from astra_synth.arenas.instance import QAInstance
from astra_synth.arenas.records import CheckResult, FunctionSpec, GoldenCall, SubTask
from astra_synth.arenas.tool_necessity import render_subs
from astra_synth.arenas.tool_synthesis import (
    CodeDraft,
    SynthesizedTool,
    ToolInstance,
    call_model,
    context_block,
    render_call,
    single_tool_arena,
)
from astra_synth.arenas.validate import ValidationConfig, static_check, tool_battery
from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.structured import CallCap
from astra_synth.runs.stage import StageContext
from astra_synth.sandbox.executor import ToolExecutor


class Cluster(StrictModel):
    intent: str = ""
    ids: list[str] = Field(min_length=1, max_length=16)


class Clusters(StrictModel):
    """A partition of the tool-needing sub-question ids; ``expected`` is pinned per instance."""

    expected: ClassVar[frozenset[str]] = frozenset()

    clusters: list[Cluster] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _partition(self) -> Clusters:
        seen = [i for c in self.clusters for i in c.ids]
        twice = sorted({i for i in seen if seen.count(i) > 1})
        missing = sorted(self.expected - set(seen))
        if twice or missing:
            raise ValueError(f"every id must be in exactly one cluster: twice {twice}, missing {missing}")
        return self


def clusters_schema(ids: list[str]) -> type[Clusters]:
    id_type: Any = Literal[tuple(ids)]
    cluster: Any = create_model("Cluster", __base__=Cluster, ids=(list[id_type], Field(min_length=1)))
    model = create_model("Clusters", __base__=Clusters, clusters=(list[cluster], Field(min_length=1)))
    model.expected = frozenset(ids)
    return model


class Description(StrictModel):
    description: str = Field(min_length=10)


class ArenaTool(StrictModel):
    """A final tool of the arena and the sub-questions it serves, each with its golden call."""

    spec: FunctionSpec
    source: str
    calls: dict[str, GoldenCall] = Field(description="Golden call per served sub-question id.")
    merged: bool = False


class MergedInstance(ToolInstance):
    arena_tools: list[ArenaTool] = Field(default_factory=list)
    merge_log: list[str] = Field(default_factory=list)
    llm_calls: int = 0


def rename_function(source: str, old: str, new: str) -> str:
    """Rename the tool's top-level function (the only place its name is bound)."""
    tree = ast.parse(source)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == old:
            node.name = new
    return ast.unparse(tree)


def unique_names(tools: list[ArenaTool]) -> list[ArenaTool]:
    """Give every tool a distinct name (``name_2``, ``name_3`` …), renaming source and calls alike."""
    taken: set[str] = set()
    out = []
    for tool in tools:
        name, n = tool.spec.name, 2
        while name in taken:
            name, n = f"{tool.spec.name}_{n}", n + 1
        taken.add(name)
        if name != tool.spec.name:
            spec = tool.spec.model_copy(update={"name": name})
            calls = {k: c.model_copy(update={"name": name}) for k, c in tool.calls.items()}
            source = rename_function(tool.source, tool.spec.name, name)
            tool = tool.model_copy(update={"spec": spec, "calls": calls, "source": source})
        out.append(tool)
    return out


def battery_for(
    item: QAInstance,
    spec: FunctionSpec,
    source: str,
    calls: dict[str, GoldenCall],
    sandbox: ToolExecutor,
    config: ValidationConfig,
) -> list[CheckResult]:
    """The shared tool battery over every member served by one (possibly merged) tool."""
    first = next(iter(calls))
    arena = single_tool_arena(item.sub(first), spec, source, calls[first])
    extra = [
        SubTask(
            id=sid,
            question=item.sub(sid).question,
            answer=item.sub(sid).answer,
            hop_level=1,
            kind=item.sub(sid).kind,
            tool=spec.name,
            golden_call=call,
        )
        for sid, call in calls.items()
        if sid != first
    ]
    arena = arena.model_copy(
        update={
            "subtasks": [*arena.subtasks, *extra],
            "scenario_type": "single-hop" if not extra else "parallel-single-hop",
        }
    )
    return tool_battery(arena, spec.name, sandbox, config)


class MergeStage:
    """ToolInstance → MergedInstance."""

    name = "merge"
    version = "1"
    input_model = ToolInstance

    def __init__(
        self,
        *,
        insert_attempts: int = 2,
        max_llm_calls: int = 24,
        max_reasks: int = 1,
        retry_temperature: float = 0.7,
        max_tokens: int = 2000,
        validation: ValidationConfig | None = None,
    ) -> None:
        self.retry_temperature = retry_temperature
        self.max_tokens = max_tokens
        self.insert_attempts = insert_attempts
        self.max_llm_calls = max_llm_calls
        self.max_reasks = max_reasks
        self.validation = validation or ValidationConfig()

    def prompt_hashes(self) -> dict[str, str]:
        return prompt_hashes("merge_cluster.md", "merge_insert.md", "merge_document.md", "tool_call.md")

    async def process(self, item: ToolInstance, ctx: StageContext) -> MergedInstance:
        assert ctx.llm is not None and ctx.sandbox is not None, "merge needs an LLM and a sandbox"
        ask = Asker(
            ctx.llm,
            self.name,
            CallCap(self.max_llm_calls),
            self.max_reasks,
            max_tokens=self.max_tokens,
            retry_temperature=self.retry_temperature,
        )
        singles = {sid: _single(t) for sid, t in item.tools.items()}
        log: list[str] = []
        clusters: list[list[str]] = [[sid] for sid in item.tools]
        if len(item.tools) > 1:
            shown = item.model_copy(update={"sub_questions": [item.sub(s) for s in item.tools]})
            lines = render_subs(shown, "iqa").splitlines()
            rows = "\n".join(
                f"{ln} | tool={item.tools[sid].spec.name}" for sid, ln in zip(item.tools, lines, strict=True)
            )
            try:
                answer = await ask("merge_cluster.md", clusters_schema(list(item.tools)), sub_questions=rows)
                clusters = [list(dict.fromkeys(c.ids)) for c in answer.clusters]
            except Rejection as exc:
                raise Rejection("merge_cluster_error", exc.detail) from exc
        tools: list[ArenaTool] = []
        for members in clusters:
            if len(members) == 1:
                tools.append(singles[members[0]])
                continue
            merged, left_out, notes = await self._merge(ask, ctx.sandbox, item, members, ctx.rng)
            log += notes
            tools.append(merged)
            tools += [singles[sid] for sid in left_out]
        return MergedInstance(
            **item.model_dump(),
            arena_tools=unique_names(tools),
            merge_log=log,
            llm_calls=ask.cap.used,
        )

    async def _merge(
        self,
        ask: Asker,
        sandbox: ToolExecutor,
        item: ToolInstance,
        members: list[str],
        rng: random.Random,
    ) -> tuple[ArenaTool, list[str], list[str]]:
        order = list(members)
        rng.shuffle(order)
        base = item.tools[order[0]]
        spec, source = base.spec, base.source
        calls = {base.sub_id: base.golden_call}
        left_out: list[str] = []
        notes = [f"cluster {members}: base {base.sub_id} ({spec.name})"]
        for sid in order[1:]:
            accepted = await self._insert(ask, sandbox, item, spec, source, calls, sid)
            if accepted is None:
                left_out.append(sid)
                notes.append(f"{sid}: could not be inserted into {spec.name}; keeps its own tool")
                continue
            source, calls = accepted
            notes.append(f"{sid}: inserted into {spec.name}")
        if len(calls) > 1:
            questions = "\n".join(f"- {item.sub(s).question}" for s in calls)
            try:
                desc = await ask(
                    "merge_document.md",
                    Description,
                    document=spec.model_dump_json(indent=1),
                    questions=questions,
                )
                spec = spec.model_copy(update={"description": desc.description})
            except Rejection as exc:
                if exc.reason == "llm_call_cap":
                    raise
                notes.append(f"{spec.name}: merged document not regenerated ({exc.reason})")
        return ArenaTool(spec=spec, source=source, calls=calls, merged=len(calls) > 1), left_out, notes

    async def _insert(
        self,
        ask: Asker,
        sandbox: ToolExecutor,
        item: ToolInstance,
        spec: FunctionSpec,
        source: str,
        calls: dict[str, GoldenCall],
        sid: str,
    ) -> tuple[str, dict[str, GoldenCall]] | None:
        """Insert member ``sid``; every member so far must still pass the battery. None = not insertable.
        A retry samples anew and its prompts say why the attempt before it failed."""
        sub = item.sub(sid)
        feedback = ""
        for attempt in range(self.insert_attempts):
            ask = ask.retry(attempt)
            try:
                args = await ask(
                    "tool_call.md",
                    call_model(spec),
                    document=spec.model_dump_json(indent=1),
                    question=sub.question,
                    context=context_block(item, sub),
                    feedback=feedback,
                )
                trial = {
                    **calls,
                    sid: GoldenCall(name=spec.name, arguments=args.model_dump(exclude_none=True)),
                }
                code = source  # a calculator serves any input: there is no data to insert
                if sub.kind != "compute":
                    listed = "\n".join(f"- {render_call(c)} → {item.sub(s).answer}" for s, c in trial.items())
                    draft: CodeDraft = await ask(
                        "merge_insert.md", CodeDraft, code=source, calls=listed, feedback=feedback
                    )
                    code = draft.code
            except Rejection as exc:
                if exc.reason == "llm_call_cap":
                    raise
                feedback = f"\nThe previous attempt was rejected: {exc.reason}: {exc.detail[:600]}\n"
                continue
            problems = static_check(code, spec)
            if not problems:
                checks = await asyncio.to_thread(
                    battery_for, item, spec, code, trial, sandbox, self.validation
                )
                problems = [f"{c.name}: {c.detail}" for c in checks if not c.ok]
                if not problems:
                    return code, trial
            if sub.kind == "compute":
                return None  # the same code would be checked again
            feedback = "\nThe previous attempt was rejected: " + "; ".join(problems)[:600] + "\n"
        return None


def _single(tool: SynthesizedTool) -> ArenaTool:
    return ArenaTool(spec=tool.spec, source=tool.source, calls={tool.sub_id: tool.golden_call})
