import re

import pytest

from astra_synth.arenas.instance import (
    DagError,
    SubQuestion,
    dag_problems,
    leaves,
    legitimacy_problems,
    scenario_type,
    validate_dag,
)


def sq(i: str, parents: list[str] | None = None, hop: int = 1, needs_tool: bool | None = True) -> SubQuestion:
    return SubQuestion(
        id=i,
        question=f"question {i}?",
        answer=f"a{i}",
        parents=parents or [],
        hop_level=hop,
        needs_tool=needs_tool,
    )


def test_valid_diamond_has_no_problems() -> None:
    subs = [sq("a"), sq("b"), sq("c", ["a", "b"], 2), sq("d", ["c"], 3)]
    assert dag_problems(subs) == []
    validate_dag(subs)
    assert leaves(subs) == {"d"}
    assert scenario_type(subs) == "parallel-multi-hop"


def test_ids_not_positions_resolve_parents() -> None:
    # listed out of order: a position-based resolver would mis-wire these; ids make it irrelevant
    subs = [sq("q9", ["q2"], 2), sq("q2")]
    assert dag_problems(subs) == []
    assert scenario_type(subs) == "multi-hop"


@pytest.mark.parametrize(
    ("subs", "expected"),
    [
        ([sq("a"), sq("a")], "duplicate sub-question id 'a'"),
        ([sq("a", ["zz"], 2)], "'a' depends on unknown id 'zz'"),
        ([sq("a", ["a"], 2)], "'a' depends on itself"),
        ([sq("a", ["b"], 2), sq("b", ["a"], 2)], "dependency cycle among sub-questions"),
        ([sq("a"), sq("b", ["a"], 1)], "'b' has hop_level 1, its depth in the DAG is 2"),
        ([sq("a"), sq("b", ["a", "a"], 2)], "'b' lists a parent twice"),
    ],
)
def test_each_violation_is_named(subs: list[SubQuestion], expected: str) -> None:
    assert expected in dag_problems(subs)
    with pytest.raises(DagError, match=re.escape(expected)):
        validate_dag(subs)


def test_hop_level_is_longest_path() -> None:
    # c depends on a (depth 1) and b (depth 2): its depth is 3, not 2
    subs = [sq("a"), sq("b", ["a"], 2), sq("c", ["a", "b"], 3)]
    assert dag_problems(subs) == []
    bad = [sq("a"), sq("b", ["a"], 2), sq("c", ["a", "b"], 2)]
    assert dag_problems(bad) == ["'c' has hop_level 2, its depth in the DAG is 3"]


@pytest.mark.parametrize(
    ("subs", "kind"),
    [
        ([sq("a")], "single-hop"),
        ([sq("a"), sq("b")], "parallel-single-hop"),
        ([sq("a"), sq("b", ["a"], 2), sq("c", ["b"], 3)], "multi-hop"),
        ([sq("a"), sq("b"), sq("c", ["a"], 2)], "parallel-multi-hop"),
    ],
)
def test_scenario_type_from_shape(subs: list[SubQuestion], kind: str) -> None:
    assert scenario_type(subs) == kind


def test_legitimacy_rule_allows_no_tool_leaf_only() -> None:
    ok = [sq("a"), sq("b", ["a"], 2, needs_tool=False)]
    assert legitimacy_problems(ok) == []
    bad = [sq("a", needs_tool=False), sq("b", ["a"], 2)]
    assert legitimacy_problems(bad) == ["'a' needs no tool but other sub-questions depend on it"]


def test_legitimacy_fails_closed_on_missing_decision() -> None:
    assert legitimacy_problems([sq("a", needs_tool=None)]) == ["'a' has no tool-necessity decision"]
