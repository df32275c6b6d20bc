"""QA instances: a main question decomposed into sub-questions that form a dependency DAG.

The authors' code resolved dependencies by list position (``trace[dep - 1]``) and trusted the model's
``hop_level`` and scenario label. Here sub-questions carry stable string ids, parents are resolved by id,
the DAG is validated (ids unique, parents exist, acyclic, hop level = depth) and the scenario type is
derived from the graph's shape, never taken from the model.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from astra_synth.config import StrictModel

ScenarioType = Literal["single-hop", "parallel-single-hop", "multi-hop", "parallel-multi-hop"]
Language = Literal["en", "zh"]
# What a tool-needing sub-question asks of its tool: facts from data (the tool keeps a table) or a result
# computed from its arguments (the tool's output, not the QA model's arithmetic, defines the answer).
ToolKind = Literal["lookup", "compute"]


class SubQuestion(StrictModel):
    id: str = Field(min_length=1, description="Stable id, unique within the instance (e.g. 'q1').")
    question: str = Field(min_length=1)
    answer: str = Field(min_length=1)
    parents: list[str] = Field(default_factory=list, description="Ids of the sub-questions it depends on.")
    hop_level: int = Field(ge=1, description="1 + the longest path from a root to this node.")
    needs_tool: bool | None = Field(default=None, description="Set by the tool-necessity stage.")
    necessity_reason: str | None = None
    kind: ToolKind | None = Field(
        default=None, description="Set with needs_tool: 'lookup' (data) or 'compute' (from arguments)."
    )


class DagError(ValueError):
    """The sub-question graph is not a valid DAG; ``problems`` lists every violation found."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def dag_problems(subs: list[SubQuestion]) -> list[str]:
    """Every violation of the DAG rules, by id (empty when the graph is valid)."""
    problems: list[str] = []
    ids = [s.id for s in subs]
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            problems.append(f"duplicate sub-question id {i!r}")
        seen.add(i)
    by_id = {s.id: s for s in subs}
    for s in subs:
        for p in s.parents:
            if p == s.id:
                problems.append(f"{s.id!r} depends on itself")
            elif p not in by_id:
                problems.append(f"{s.id!r} depends on unknown id {p!r}")
        if len(set(s.parents)) != len(s.parents):
            problems.append(f"{s.id!r} lists a parent twice")
    if problems:
        return problems
    depth = _depths(subs)
    if depth is None:
        return ["dependency cycle among sub-questions"]
    for s in subs:
        if s.hop_level != depth[s.id]:
            problems.append(f"{s.id!r} has hop_level {s.hop_level}, its depth in the DAG is {depth[s.id]}")
    return problems


def _depths(subs: list[SubQuestion]) -> dict[str, int] | None:
    """Longest-path depth of each node (roots = 1), or None when the graph has a cycle."""
    by_id = {s.id: s for s in subs}
    depth: dict[str, int] = {}
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done

    def visit(node: str) -> bool:
        if state.get(node) == 2:
            return True
        if state.get(node) == 1:
            return False
        state[node] = 1
        parents = by_id[node].parents
        for p in parents:
            if not visit(p):
                return False
        depth[node] = 1 + max((depth[p] for p in parents), default=0)
        state[node] = 2
        return True

    return depth if all(visit(s.id) for s in subs) else None


def validate_dag(subs: list[SubQuestion]) -> None:
    """Raise :class:`DagError` listing every problem, or return when the graph is valid."""
    problems = dag_problems(subs)
    if problems:
        raise DagError(problems)


def depths(subs: list[SubQuestion]) -> dict[str, int]:
    """Depth of each node of a valid DAG (used to fill ``hop_level`` when a caller derives it)."""
    d = _depths(subs)
    if d is None:
        raise DagError(["dependency cycle among sub-questions"])
    return d


def leaves(subs: list[SubQuestion]) -> set[str]:
    """Ids no other sub-question depends on."""
    non_leaf = {p for s in subs for p in s.parents}
    return {s.id for s in subs} - non_leaf


def scenario_type(subs: list[SubQuestion]) -> ScenarioType:
    """The paper's four structures, read off the graph: hops = depth, parallel = some layer has ≥ 2 nodes."""
    d = depths(subs)
    max_depth = max(d.values())
    widest = max(list(d.values()).count(level) for level in set(d.values()))
    if max_depth == 1:
        return "single-hop" if len(subs) == 1 else "parallel-single-hop"
    return "multi-hop" if widest == 1 else "parallel-multi-hop"


def legitimacy_problems(subs: list[SubQuestion]) -> list[str]:
    """The legitimacy rule: a sub-question that needs no tool may only be a leaf (nothing depends on it).

    A sub-question whose necessity is still unknown counts as a violation: fail closed.
    """
    non_leaf = {p for s in subs for p in s.parents}
    problems = []
    for s in subs:
        if s.needs_tool is None:
            problems.append(f"{s.id!r} has no tool-necessity decision")
        elif not s.needs_tool and s.id in non_leaf:
            problems.append(f"{s.id!r} needs no tool but other sub-questions depend on it")
    return problems


class Verification(StrictModel):
    """The paper's quality score QS = mean of four dimensions, each in [0, 1], with the judges' reasons."""

    dependency_consistency: float = Field(ge=0, le=1)
    atomicity: float = Field(ge=0, le=1)
    sequential_rationality: float = Field(ge=0, le=1)
    completeness: float = Field(ge=0, le=1)
    notes: dict[str, str] = Field(default_factory=dict, description="Per-dimension judge remarks.")

    @property
    def score(self) -> float:
        return (
            self.dependency_consistency + self.atomicity + self.sequential_rationality + self.completeness
        ) / 4


class QAInstance(StrictModel):
    """A verified-or-not decomposition of one main question, as it flows through arena synthesis."""

    schema_version: Literal[1] = 1
    language: Language
    domain: str
    scenario_type: ScenarioType
    main_question: str = Field(min_length=1)
    final_answer: str = Field(min_length=1)
    sub_questions: list[SubQuestion] = Field(min_length=1)
    seed: dict[str, object] = Field(default_factory=dict, description="The QASeed it was generated from.")
    verification: Verification | None = None

    def sub(self, sub_id: str) -> SubQuestion:
        return next(s for s in self.sub_questions if s.id == sub_id)
