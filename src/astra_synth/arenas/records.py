"""Arena records: one verifiable RL environment per QA instance, as it is stored, trained on and replayed.

The published ASTRA rows had two schemas with the same name and a tool whose golden answer was random, and
were never replayed. These records refuse such rows on read: tool names are unique, every tool has exactly
one source whose sha256 matches, every golden call names a tool of the arena with arguments its schema
accepts, sub-task ids form a DAG (by id, not by position) and the scenario type is the graph's shape.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal, Self

from pydantic import ConfigDict, Field, model_validator

from astra_synth.arenas.instance import Language, ScenarioType, SubQuestion, dag_problems, scenario_type
from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.runs.jsonl import read_jsonl_whole
from astra_synth.tools.spec import ToolSpec

SCHEMA_VERSION: Literal[1] = 1
_JSON_TYPES = {"string", "number", "integer", "boolean", "array", "object", "null"}


class FunctionSpec(ToolSpec):
    """A tool document whose name is also a Python function name and whose parameters are a checked schema.

    The name doubles as the entrypoint in the tool's source, so it must be an identifier; the schema is
    what the runtime checks arguments against, so every parameter must declare a JSON type.
    """

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")
    description: str = Field(min_length=1)

    @model_validator(mode="after")
    def _object_schema(self) -> Self:
        params = self.parameters
        if params.get("type") != "object":
            raise ValueError("parameters must be a JSON Schema with type 'object'")
        props = params.get("properties", {})
        if not isinstance(props, dict):
            raise ValueError("parameters.properties must be an object")
        for pname, pschema in props.items():
            ptype = pschema.get("type") if isinstance(pschema, dict) else None
            types = ptype if isinstance(ptype, list) else [ptype]
            if not all(t in _JSON_TYPES for t in types):
                raise ValueError(f"parameter {pname!r} has no valid JSON Schema type")
        missing = [r for r in params.get("required", []) if r not in props]
        if missing:
            raise ValueError(f"required parameters not in properties: {missing}")
        return self

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        props: dict[str, dict[str, Any]] = self.parameters.get("properties", {})
        return props

    @property
    def required(self) -> list[str]:
        req: list[str] = self.parameters.get("required", [])
        return req


class ToolSchema(StrictModel):
    """A tool as the model sees it (OpenAI ``tools`` entry)."""

    type: Literal["function"] = "function"
    function: FunctionSpec


class ToolSource(StrictModel):
    """The implementation of one tool: Python source run only inside the sandbox."""

    source: str = Field(min_length=1)
    entrypoint: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")

    @classmethod
    def of(cls, source: str, entrypoint: str) -> ToolSource:
        return cls(source=source, entrypoint=entrypoint, sha256=hashlib.sha256(source.encode()).hexdigest())

    @model_validator(mode="after")
    def _hash_matches(self) -> Self:
        actual = hashlib.sha256(self.source.encode()).hexdigest()
        if actual != self.sha256:
            raise ValueError(f"sha256 does not match the source (source hashes to {actual})")
        return self


class GoldenCall(StrictModel):
    """The call that solves a sub-task; ``arguments`` may hold answers of earlier sub-tasks."""

    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)

    def as_tool_call(self, call_id: str) -> dict[str, Any]:
        """The OpenAI ``tool_calls`` entry a model would emit for this call."""
        arguments = json.dumps(self.arguments, ensure_ascii=False)
        return {"id": call_id, "type": "function", "function": {"name": self.name, "arguments": arguments}}


class SubTask(SubQuestion):
    """A sub-question of the arena with the tool and golden call that solve it.

    Dependencies are written ``depends_on`` and are the instance's ``parents``; ids and depths follow the
    DAG rules of :mod:`astra_synth.arenas.instance`.
    """

    model_config = ConfigDict(extra="forbid", populate_by_name=True, serialize_by_alias=True)

    parents: list[str] = Field(default_factory=list, alias="depends_on")
    needs_tool: bool = True
    tool: str | None = None
    golden_call: GoldenCall | None = None

    @model_validator(mode="after")
    def _tool_fields(self) -> Self:
        if self.needs_tool:
            if self.tool is None or self.golden_call is None:
                raise ValueError("a sub-task that needs a tool must name its tool and golden call")
            if self.golden_call.name != self.tool:
                raise ValueError(
                    f"golden call names {self.golden_call.name!r}, the sub-task's tool is {self.tool!r}"
                )
        elif self.tool is not None or self.golden_call is not None:
            raise ValueError("a sub-task that needs no tool has no tool or golden call")
        return self


class ChatMessage(StrictModel):
    role: Literal["system", "user"]
    content: str = Field(min_length=1)


class Provenance(StrictModel):
    """Where an arena came from, so a data card can state sources, models and licences."""

    method: Literal["hand-written", "synthesized"]
    licence: str = Field(min_length=1)
    author: str | None = None
    model: str | None = Field(default=None, description="Generator model of a synthesized arena.")
    run_id: str | None = Field(default=None, description="Run that synthesized it.")
    source: str | None = Field(default=None, description="Seed data the QA instance came from.")

    @model_validator(mode="after")
    def _synthesized_has_origin(self) -> Self:
        if self.method == "synthesized" and (not self.model or not self.run_id):
            raise ValueError("a synthesized arena records its model and run_id")
        return self


class CheckResult(StrictModel):
    """One named check of the validation battery; ``detail`` says why it failed (or what it saw)."""

    name: str
    ok: bool
    detail: str = ""


class ReportCard(StrictModel):
    """What validation ran on an arena and what came out."""

    checks: list[CheckResult] = Field(default_factory=list)
    replay_ok: bool = False
    replay_rewards: dict[str, float] = Field(default_factory=dict, description="Per reward mode.")
    probe_rewards: dict[str, float] = Field(default_factory=dict, description="Per reward-hacking probe.")
    passed: bool = False

    @property
    def failures(self) -> list[CheckResult]:
        return [c for c in self.checks if not c.ok]


class Arena(StrictModel):
    """One RL environment: the prompt, the tools (schema + source), the sub-tasks that define success."""

    schema_version: Literal[1] = SCHEMA_VERSION
    id: str = Field(min_length=1)
    language: Language
    domain: str = Field(min_length=1)
    scenario_type: ScenarioType
    messages: list[ChatMessage] = Field(min_length=1)
    tools: list[ToolSchema] = Field(min_length=1)
    tool_sources: dict[str, ToolSource]
    subtasks: list[SubTask] = Field(min_length=1)
    final_answer: str = Field(min_length=1)
    provenance: Provenance
    family: str | None = Field(default=None, description="The family it was instantiated from, if any.")
    report: ReportCard | None = None

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        names = [t.function.name for t in self.tools]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate tool names: {duplicates}")
        if set(self.tool_sources) != set(names):
            raise ValueError(
                f"tool_sources keys {sorted(self.tool_sources)} do not match the tool names {sorted(names)}"
            )
        for name, impl in self.tool_sources.items():
            if impl.entrypoint != name:
                raise ValueError(f"tool_sources[{name!r}].entrypoint is {impl.entrypoint!r}")
        problems = dag_problems(list(self.subtasks))
        if problems:
            raise ValueError("sub-task DAG: " + "; ".join(problems))
        if not any(s.needs_tool for s in self.subtasks):
            raise ValueError("an arena needs at least one sub-task solved by a tool")
        shape = scenario_type(list(self.subtasks))
        if shape != self.scenario_type:
            raise ValueError(f"scenario_type is {self.scenario_type!r}, the sub-task DAG is {shape!r}")
        schemas = {t.function.name: t.function for t in self.tools}
        for sub in self.subtasks:
            if sub.golden_call is None:
                continue
            spec = schemas.get(sub.golden_call.name)
            if spec is None:
                raise ValueError(f"sub-task {sub.id!r} calls unknown tool {sub.golden_call.name!r}")
            args = sub.golden_call.arguments
            unknown = sorted(set(args) - set(spec.properties))
            missing = sorted(set(spec.required) - set(args))
            if unknown or missing:
                raise ValueError(
                    f"sub-task {sub.id!r}: golden call arguments unknown {unknown}, missing {missing}"
                )
        return self

    def tool_schema(self, name: str) -> FunctionSpec:
        return next(t.function for t in self.tools if t.function.name == name)


def read_arenas(path: Path | str) -> list[Arena]:
    """Every arena of a JSONL file; bad lines raise one :class:`InputError` naming file, line and field."""
    path = Path(path)
    arenas = [arena for _, arena in read_jsonl_whole(path, Arena)]
    ids = [a.id for a in arenas]
    duplicates = sorted({i for i in ids if ids.count(i) > 1})
    if duplicates:
        raise InputError(f"{path}: duplicate arena ids: {duplicates}")
    return arenas


def write_arenas(path: Path, arenas: list[Arena]) -> None:
    """One arena per line, UTF-8 kept as is (Chinese arenas stay readable)."""
    text = "".join(a.model_dump_json(exclude_none=True) + "\n" for a in arenas)
    path.write_text(text, encoding="utf-8")
