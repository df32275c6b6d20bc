"""Arena families: one hand-written template, many verified arenas whose answers the sandbox computes.

A single arena teaches one question; a policy trained on it learns that question. A family is a template
(tools with their data, a question with typed slots, golden calls whose arguments name slots or earlier
calls' answers, a final-answer template over the calls' outputs) from which :func:`instantiate` draws
distinct, seeded instances. Every answer comes from running the golden calls in the sandbox — nothing is
typed by hand — and every instance must pass :func:`~astra_synth.arenas.validate.check_arena` (battery,
replay to reward 1, probes). Families carry a group (warm-up / rl / unseen) so that training stages see
disjoint families; :func:`split_instances` also holds out instances of each family. The file format is
documented in ``docs/families.md``.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Literal, Self

import yaml
from pydantic import Field, StrictFloat, StrictInt, StrictStr, ValidationError, model_validator

from astra_synth.arenas.answer_match import render
from astra_synth.arenas.arena_check import SYSTEM_PROMPT, SYSTEM_PROMPT_ZH
from astra_synth.arenas.instance import Language, scenario_type
from astra_synth.arenas.records import (
    Arena,
    ChatMessage,
    FunctionSpec,
    GoldenCall,
    Provenance,
    SubTask,
    ToolSchema,
    ToolSource,
    write_arenas,
)
from astra_synth.arenas.runtime import EnvConfig
from astra_synth.arenas.validate import ValidationConfig, check_arena, static_check
from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.runs.ids import canonical_json
from astra_synth.sandbox.executor import ToolExecutor

SCHEMA_VERSION: Literal[1] = 1
Group = Literal["warm-up", "rl", "unseen"]
GROUPS: tuple[Group, ...] = ("warm-up", "rl", "unseen")
Scalar = StrictStr | StrictInt | StrictFloat  # strict: YAML turns NO or yes into booleans
# "{city}", "{0}", "{1.price}", "{1.price:.2f}": a slot, a call's output, a path into it, a format spec.
_PLACEHOLDER = re.compile(r"\{([^{}:]+)(?::([^{}]*))?\}")
_SLOT_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
_MAX_DRAWS_PER_INSTANCE = 200
_VALUE_ERROR = "Value error, "
_FIELD = re.compile(r"^([A-Za-z_][\w-]*(?:\[\d+\])?(?:\.[\w$-]+(?:\[\d+\])?)*): (.*)$")


class FamilyError(ValueError):
    """A family that cannot produce what was asked: the message names the family and the cause."""


class Slot(StrictModel):
    """A typed slot domain: ``choices`` or an integer range ``min``..``max`` (inclusive, by ``step``)."""

    choices: list[Scalar] | None = Field(default=None, min_length=1)
    min: StrictInt | None = None
    max: StrictInt | None = None
    step: StrictInt = Field(default=1, ge=1)
    differs_from: list[str] = Field(default_factory=list, description="Slots that must take another value.")

    @model_validator(mode="after")
    def _one_domain(self) -> Self:
        ranged = self.min is not None or self.max is not None
        if (self.choices is None) == (not ranged):
            raise ValueError("a slot has either 'choices' or 'min' and 'max'")
        if ranged and (self.min is None or self.max is None or self.min > self.max):
            raise ValueError("an integer slot needs min <= max")
        if self.choices is not None and len({canonical_json(c) for c in self.choices}) != len(self.choices):
            raise ValueError("choices repeat a value")
        return self

    def values(self) -> list[Scalar]:
        if self.choices is not None:
            return list(self.choices)
        assert self.min is not None and self.max is not None
        return list(range(self.min, self.max + 1, self.step))


class ToolDef(StrictModel):
    """A tool of a family file: the document the model sees and the source (data + one function)."""

    name: str
    description: str
    parameters: dict[str, Any]
    source: str = Field(min_length=1)

    @model_validator(mode="after")
    def _runnable(self) -> Self:
        reasons = static_check(self.source, self.spec)
        if reasons:
            raise ValueError(f"tool {self.name!r}: " + "; ".join(reasons))
        return self

    @property
    def spec(self) -> FunctionSpec:
        return FunctionSpec(name=self.name, description=self.description, parameters=self.parameters)


class CallTemplate(StrictModel):
    """A golden call: argument values are literals, ``{"$slot": name}`` or ``{"$call": i, "path": p}``.

    ``answer`` is the path into the call's output that is the sub-task's answer ("" = the whole output);
    a ``$call`` reference without ``path`` passes that answer on, which is what the dependency check needs.
    """

    tool: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    answer: str = ""
    question: str = Field(min_length=1, description="The sub-question, a template like the main one.")


class Family(StrictModel):
    """An arena template (see the module doc and ``docs/families.md``)."""

    id: str = Field(pattern=r"^[a-z0-9][a-z0-9_.-]*$")
    group: Group
    domain: str = Field(min_length=1)
    language: Language = "en"
    tools: list[str] = Field(min_length=1, description="Tool names from the file's library offered.")
    slots: dict[str, Slot] = Field(min_length=1)
    question: str = Field(min_length=1)
    calls: list[CallTemplate] = Field(min_length=1)
    answer: str = Field(min_length=1, description="Final-answer template over slots and call outputs.")

    @model_validator(mode="after")
    def _references(self) -> Self:
        problems = []
        for name, slot in self.slots.items():
            if not re.match(_SLOT_NAME, name):
                problems.append(f"slots.{name}: not an identifier")
            problems += [
                f"slots.{name}.differs_from: unknown slot {o!r}"
                for o in slot.differs_from
                if o not in self.slots
            ]
        used = {key for key, _ in _placeholders(self.question)}
        problems += [
            f"question: slot {name!r} does not appear in it" for name in self.slots if name not in used
        ]
        problems += _template_problems("question", self.question, self.slots, calls=0)
        problems += _template_problems("answer", self.answer, self.slots, calls=len(self.calls))
        for i, call in enumerate(self.calls):
            where = f"calls[{i}]"
            if call.tool not in self.tools:
                problems.append(f"{where}.tool: {call.tool!r} is not among the family's tools")
            problems += _template_problems(f"{where}.question", call.question, self.slots, calls=i)
            for key, value in call.arguments.items():
                for ref in _refs(value):
                    if "$slot" in ref and ref["$slot"] not in self.slots:
                        problems.append(f"{where}.arguments.{key}: unknown slot {ref['$slot']!r}")
                    if "$call" in ref and not (isinstance(ref["$call"], int) and 0 <= ref["$call"] < i):
                        problems.append(f"{where}.arguments.{key}: $call must name an earlier call (< {i})")
            refs = [r for v in call.arguments.values() for r in _refs(v) if isinstance(r.get("$call"), int)]
            for parent in sorted({r["$call"] for r in refs if 0 <= r["$call"] < i}):
                # The battery's dependency check: a dependency passes the parent's answer, not any field.
                paths = {r.get("path", self.calls[parent].answer) for r in refs if r["$call"] == parent}
                if self.calls[parent].answer not in paths:
                    problems.append(
                        f"{where}.arguments: uses calls[{parent}] only through {sorted(paths)}, "
                        f"never its answer {self.calls[parent].answer!r}"
                    )
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def parents(self, index: int) -> list[int]:
        """The earlier calls whose answers call ``index`` takes as arguments."""
        return sorted(
            {ref["$call"] for v in self.calls[index].arguments.values() for ref in _refs(v) if "$call" in ref}
        )


class FamilyFile(StrictModel):
    """One YAML file: where its data came from, a tool library, and the families built on it."""

    schema_version: Literal[1] = SCHEMA_VERSION
    provenance: Provenance
    tools: list[ToolDef] = Field(min_length=1)
    families: list[Family] = Field(min_length=1)

    @model_validator(mode="after")
    def _library(self) -> Self:
        names = [t.name for t in self.tools]
        problems = [f"tools: {n!r} defined twice" for n in sorted({n for n in names if names.count(n) > 1})]
        for fam in self.families:
            missing = [t for t in fam.tools if t not in names]
            if missing:
                problems.append(f"family {fam.id!r}: tools {missing} are not in the file's tool library")
        if problems:
            raise ValueError("; ".join(problems))
        return self


class BoundFamily(StrictModel):
    """A family with the tools it offers and its file's provenance: everything :func:`instantiate` needs."""

    family: Family
    tools: list[ToolDef]
    provenance: Provenance
    origin: str = Field(description="The file it was read from, for messages and provenance.")


def _refs(value: Any) -> Iterator[dict[str, Any]]:
    """Every ``$slot`` / ``$call`` reference inside an argument value (lists and objects are searched)."""
    if isinstance(value, dict):
        if "$slot" in value or "$call" in value:
            yield value
        else:
            for v in value.values():
                yield from _refs(v)
    elif isinstance(value, list):
        for v in value:
            yield from _refs(v)


def _placeholders(template: str) -> list[tuple[str, str]]:
    return [(m.group(1).strip(), m.group(2) or "") for m in _PLACEHOLDER.finditer(template)]


def _template_problems(where: str, template: str, slots: dict[str, Slot], calls: int) -> list[str]:
    """Placeholders that name no slot and no call among the first ``calls``."""
    problems = []
    for key, _ in _placeholders(template):
        head = key.split(".", 1)[0]
        if head.isdigit():
            if int(head) >= calls:
                problems.append(f"{where}: {{{key}}} names call {head}, only calls < {calls} are known there")
        elif "." in key or key not in slots:
            problems.append(f"{where}: {{{key}}} is not a slot")
    return problems


def _at_path(value: Any, path: str) -> Any:
    """The part of a JSON value a dotted path names (object keys, list indices); ValueError when absent."""
    for part in path.split(".") if path else []:
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            raise ValueError(f"path {path!r} does not exist in {render(value)[:120]}")
    return value


def _fill(template: str, slots: dict[str, Scalar], outputs: list[Any]) -> str:
    def one(match: re.Match[str]) -> str:
        key, spec = match.group(1).strip(), match.group(2) or ""
        head, _, path = key.partition(".")
        value = _at_path(outputs[int(head)], path) if head.isdigit() else slots[key]
        return format(value, spec) if spec else render(value)

    return _PLACEHOLDER.sub(one, template)


def _resolve(value: Any, slots: dict[str, Scalar], family: Family, outputs: list[Any]) -> Any:
    if isinstance(value, dict) and "$slot" in value:
        return slots[value["$slot"]]
    if isinstance(value, dict) and "$call" in value:
        index = value["$call"]
        return _at_path(outputs[index], value.get("path", family.calls[index].answer))
    if isinstance(value, dict):
        return {k: _resolve(v, slots, family, outputs) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v, slots, family, outputs) for v in value]
    return value


def _line_of(node: yaml.Node, loc: Sequence[int | str]) -> int:
    """1-based line of the deepest YAML node along a pydantic error location."""
    for part in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            child = node.value[part]
        if child is None:
            break
        node = child
    return node.start_mark.line + 1


def read_family_file(path: Path) -> FamilyFile:
    """One family file; any problem raises :class:`InputError` naming the file, line, family and field."""
    try:
        text = path.read_text(encoding="utf-8")
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except OSError as exc:
        raise InputError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except yaml.YAMLError as exc:
        raise InputError(f"{path}: invalid YAML: {exc}") from exc
    if root is None or not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with provenance, tools and families")
    try:
        return FamilyFile.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = err["loc"]
            where = ".".join(str(p) for p in loc) or "<root>"
            family = ""
            if len(loc) >= 2 and loc[0] == "families" and isinstance(loc[1], int):
                fams = data.get("families")
                entry = fams[loc[1]] if isinstance(fams, list) and loc[1] < len(fams) else None
                family = f" family {entry.get('id')!r}" if isinstance(entry, dict) else ""
            problems = _family_problems(err["msg"]) if family and len(loc) == 2 else []
            if not problems:
                lines.append(f"{path}:{_line_of(root, loc)}:{family} {where}: {err['msg']}")
            for field, parts, problem in problems:  # the family's own checks, each at its field's line
                lines.append(f"{path}:{_line_of(root, [*loc, *parts])}:{family} {field}: {problem}")
        raise InputError("\n".join(lines)) from exc


def _family_problems(message: str) -> list[tuple[str, list[int | str], str]]:
    """Split a :class:`Family` validator message into (field, location parts, problem) triples."""
    if not message.startswith(_VALUE_ERROR):
        return []
    found = []
    for problem in message.removeprefix(_VALUE_ERROR).split("; "):
        match = _FIELD.match(problem)
        if match is None:
            return []
        field = match.group(1)
        parts: list[int | str] = []
        for name, index in re.findall(r"([^.\[\]]+)(?:\[(\d+)\])?", field):
            parts += [name, int(index)] if index else [name]
        found.append((field, parts, match.group(2)))
    return found


def load_families(paths: Sequence[Path]) -> list[BoundFamily]:
    """The families of YAML files (a directory stands for its ``*.yaml``), ids unique across all of them."""
    files = [f for p in paths for f in (sorted(p.glob("*.yaml")) if p.is_dir() else [p])]
    if not files:
        raise InputError(f"no family files in {', '.join(map(str, paths))}")
    bound: list[BoundFamily] = []
    seen: dict[str, Path] = {}
    for file in files:
        loaded = read_family_file(file)
        library = {t.name: t for t in loaded.tools}
        for fam in loaded.families:
            if fam.id in seen:
                raise InputError(f"{file}: family {fam.id!r} is already defined in {seen[fam.id]}")
            seen[fam.id] = file
            tools = [library[name] for name in fam.tools]
            bound.append(BoundFamily(family=fam, tools=tools, provenance=loaded.provenance, origin=str(file)))
    return bound


def draw_slots(family: Family, n: int, rng: random.Random) -> list[dict[str, Scalar]]:
    """``n`` distinct slot assignments (``differs_from`` respected); FamilyError when there are fewer."""
    domains = {name: slot.values() for name, slot in family.slots.items()}
    size = 1
    for options in domains.values():
        size *= len(options)
    if size < n:
        raise FamilyError(f"family {family.id!r}: its slots allow at most {size} instances, {n} asked")
    drawn: dict[str, dict[str, Scalar]] = {}
    for _ in range(n * _MAX_DRAWS_PER_INSTANCE):
        if len(drawn) == n:
            break
        values = {name: rng.choice(options) for name, options in domains.items()}
        clash = any(values[o] == values[name] for name, s in family.slots.items() for o in s.differs_from)
        if not clash:
            drawn.setdefault(canonical_json(values), values)
    if len(drawn) < n:
        raise FamilyError(f"family {family.id!r}: drew only {len(drawn)} distinct slot assignments of {n}")
    return list(drawn.values())


def build_instance(
    bound: BoundFamily, slots: dict[str, Scalar], executor: ToolExecutor, config: EnvConfig | None = None
) -> Arena:
    """The arena of one slot assignment; the golden calls run in the sandbox and their outputs are the
    sub-answers and fill the final answer."""
    family = bound.family
    config = config or EnvConfig()
    sources = {t.name: t.source for t in bound.tools}
    outputs: list[Any] = []
    hops: list[int] = []  # parents are earlier calls, so one pass gives each call's depth
    tasks: list[SubTask] = []
    shown = canonical_json(slots)
    for i, call in enumerate(family.calls):
        try:
            args = {k: _resolve(v, slots, family, outputs) for k, v in call.arguments.items()}
        except ValueError as exc:
            raise FamilyError(
                f"family {family.id!r} with slots {shown}: calls[{i}].arguments: {exc}"
            ) from exc
        result = executor.execute(executor.load(sources[call.tool]), call.tool, args, config.timeout_s)
        if not result.ok:
            raise FamilyError(
                f"family {family.id!r} with slots {shown}: calls[{i}] {call.tool}({canonical_json(args)}) "
                f"gave {result.status}: {result.error}"
            )
        outputs.append(result.result)
        try:
            answer = render(_at_path(result.result, call.answer))
            question = _fill(call.question, slots, outputs)
        except ValueError as exc:  # a path the output lacks, a format spec that does not fit
            raise FamilyError(f"family {family.id!r} with slots {shown}: calls[{i}]: {exc}") from exc
        parents = family.parents(i)
        hops.append(1 + max((hops[p] for p in parents), default=0))
        tasks.append(
            SubTask(
                id=f"s{i + 1}",
                question=question,
                answer=answer,
                parents=[f"s{p + 1}" for p in parents],
                hop_level=hops[i],
                tool=call.tool,
                golden_call=GoldenCall(name=call.tool, arguments=args),
            )
        )
    system = SYSTEM_PROMPT_ZH if family.language == "zh" else SYSTEM_PROMPT
    origin = (
        f"{Path(bound.origin).name}: {bound.provenance.source}" if bound.provenance.source else bound.origin
    )
    digest = hashlib.sha256(shown.encode()).hexdigest()[:10]
    try:
        final = _fill(family.answer, slots, outputs)
    except ValueError as exc:
        raise FamilyError(f"family {family.id!r} with slots {shown}: answer: {exc}") from exc
    return Arena(
        id=f"{family.id}-{digest}",
        family=family.id,
        language=family.language,
        domain=family.domain,
        scenario_type=scenario_type(list(tasks)),
        messages=[
            ChatMessage(role="system", content=system),
            ChatMessage(role="user", content=_fill(family.question, slots, outputs)),
        ],
        tools=[ToolSchema(function=t.spec) for t in bound.tools],
        tool_sources={t.name: ToolSource.of(t.source, t.name) for t in bound.tools},
        subtasks=tasks,
        final_answer=final,
        provenance=bound.provenance.model_copy(update={"source": f"family {family.id} ({origin})"}),
    )


def instantiate(
    families: Sequence[BoundFamily],
    per_family: int,
    seed: int,
    executor: ToolExecutor,
    *,
    validate: bool = True,
    on_instance: Callable[[Arena], None] | None = None,
) -> list[Arena]:
    """``per_family`` distinct arenas of each family, the same for the same seed.

    With ``validate`` every arena must pass the validation battery and replay to reward 1 (else
    :class:`FamilyError` with the failed checks); ``on_instance`` is told of each finished arena.
    """
    config = ValidationConfig()
    arenas = []
    for bound in families:
        rng = random.Random(f"{seed}:{bound.family.id}")
        for slots in draw_slots(bound.family, per_family, rng):
            arena = build_instance(bound, slots, executor, config.env)
            if validate:
                card = check_arena(arena, executor, config)
                if not card.passed:
                    failed = "; ".join(f"{c.name}: {c.detail}" for c in card.failures) or (
                        f"replay {card.replay_rewards}, probes {card.probe_rewards}"
                    )
                    raise FamilyError(f"family {bound.family.id!r} arena {arena.id}: {failed}")
            arenas.append(arena)
            if on_instance is not None:
                on_instance(arena)
    return arenas


def split_instances(
    arenas: Sequence[Arena], groups: dict[str, Group], held_out: float, seed: int
) -> dict[str, list[Arena]]:
    """Files by family group and, for trained groups, train / held-out instances per family (seeded).

    Unseen families are never trained on, so all their instances go to one ``unseen`` split.
    """
    by_family: dict[str, list[Arena]] = {}
    for arena in arenas:
        assert arena.family is not None
        by_family.setdefault(arena.family, []).append(arena)
    splits: dict[str, list[Arena]] = {
        "warm-up.train": [],
        "warm-up.held-out": [],
        "rl.train": [],
        "rl.held-out": [],
        "unseen": [],
    }
    for family, members in by_family.items():
        group = groups[family]
        if group == "unseen":
            splits["unseen"] += members
            continue
        order = list(members)
        random.Random(f"{seed}:{family}:split").shuffle(order)
        n_out = min(len(order) - 1, max(1, round(len(order) * held_out))) if len(order) > 1 else 0
        held = {a.id for a in order[:n_out]}
        splits[f"{group}.held-out"] += [a for a in members if a.id in held]
        splits[f"{group}.train"] += [a for a in members if a.id not in held]
    return splits


class InstantiateManifest(StrictModel):
    """What ``astra arenas instantiate`` wrote: settings, families per group, arenas per file."""

    schema_version: Literal[1] = SCHEMA_VERSION
    seed: int
    per_family: int
    held_out: float
    groups: dict[str, list[str]]
    files: dict[str, int]


def write_splits(
    out: Path,
    families: Sequence[BoundFamily],
    arenas: Sequence[Arena],
    per_family: int,
    seed: int,
    held_out: float,
) -> InstantiateManifest:
    """``<split>.jsonl`` per split and ``manifest.json`` under ``out``."""
    groups = {b.family.id: b.family.group for b in families}
    splits = split_instances(arenas, groups, held_out, seed)
    out.mkdir(parents=True, exist_ok=True)
    for name, members in splits.items():
        write_arenas(out / f"{name}.jsonl", members)
    manifest = InstantiateManifest(
        seed=seed,
        per_family=per_family,
        held_out=held_out,
        groups={g: [f for f, fg in groups.items() if fg == g] for g in GROUPS},
        files={f"{name}.jsonl": len(members) for name, members in splits.items()},
    )
    (out / "manifest.json").write_text(manifest.model_dump_json(indent=2) + "\n", encoding="utf-8")
    return manifest
