"""The F1 trajectory reward: the paper's worked examples, the edge cases it leaves open, and properties."""

from __future__ import annotations

import random

import pytest

from astra_synth.arenas.answer_match import contains_answer, normalise
from astra_synth.arenas.reward import ExecutedCall, RewardConfig, SubTaskTarget, f1_reward

ANSWER = RewardConfig(match="answer")


def _target(i: int, *, needs_tool: bool = True) -> SubTaskTarget:
    golden = ExecutedCall(name=f"tool{i}", ok=True, result={"value": 100 + i}) if needs_tool else None
    return SubTaskTarget(
        id=f"s{i}", answer=str(100 + i), needs_tool=needs_tool, tool=golden and golden.name, golden=golden
    )


def _hit(i: int) -> ExecutedCall:
    return ExecutedCall(name=f"tool{i}", ok=True, result={"value": 100 + i})


def _miss(i: int) -> ExecutedCall:
    return ExecutedCall(name=f"tool{i}", ok=True, result={"value": -1})


TARGETS = [_target(i) for i in range(4)]


@pytest.mark.parametrize(
    ("calls", "expected"),
    [
        ([_hit(0), _hit(1), _hit(2), _hit(3)], 1.0),  # n=4, n̂=4, c=4
        ([_hit(0), _hit(1), _hit(2), _hit(3), _miss(0), _miss(1)], 0.8),  # c=6
        ([_hit(0), _hit(1), _hit(2), _miss(3)], 0.75),  # n̂=3, c=4
        ([], 0.0),  # c=0
    ],
)
def test_paper_examples(calls: list[ExecutedCall], expected: float) -> None:
    assert f1_reward(TARGETS, calls).reward == pytest.approx(expected, abs=1e-6)


def test_no_calls_is_zero_without_dividing_by_zero() -> None:
    b = f1_reward(TARGETS, [])
    assert (b.reward, b.recall, b.precision, b.calls) == (0.0, 0.0, 0.0, 0)
    assert b.solved == {"s0": False, "s1": False, "s2": False, "s3": False}


def test_duplicates_solve_once_and_lower_precision() -> None:
    once = f1_reward(TARGETS[:1], [_hit(0)])
    thrice = f1_reward(TARGETS[:1], [_hit(0)] * 3)
    assert once.reward == pytest.approx(1.0)
    assert thrice.recall == 1.0 and thrice.precision == pytest.approx(1 / 3)
    assert thrice.reward == pytest.approx(0.5)


def test_one_call_never_solves_two_subtasks() -> None:
    # Two sub-tasks with the same golden outcome: one call may claim only one of them.
    same = [_target(0), _target(0).model_copy(update={"id": "twin"})]
    b = f1_reward(same, [_hit(0)])
    assert sum(b.solved.values()) == 1 and b.precision <= 1.0
    assert f1_reward(same, [_hit(0), _hit(0)]).reward == pytest.approx(1.0)


def test_answer_mode_dump_everything_buys_one_subtask_per_call() -> None:
    dump = ExecutedCall(name="dump", ok=True, result={t.id: t.answer for t in TARGETS})
    b = f1_reward(TARGETS, [dump], ANSWER)
    assert sum(b.solved.values()) == 1
    assert b.reward == pytest.approx(2 * 1 * 0.25 / 1.25)


def test_parallel_calls_in_any_order_are_matched() -> None:
    calls = [_hit(3), _hit(1), _hit(0), _hit(2)]
    b = f1_reward(TARGETS, calls, turns=1)
    assert b.reward == pytest.approx(1.0) and b.turns == 1
    assert list(b.solved) == ["s0", "s1", "s2", "s3"]


def test_matching_finds_the_assignment_greedy_would_miss() -> None:
    # In answer mode call A solves s0 or s1, call B only s0: the maximum matching solves both.
    targets = [SubTaskTarget(id="s0", answer="alpha"), SubTaskTarget(id="s1", answer="beta")]
    a = ExecutedCall(name="t", ok=True, result="alpha beta")
    b = ExecutedCall(name="t", ok=True, result="alpha")
    assert f1_reward(targets, [a, b], ANSWER).solved == {"s0": True, "s1": True}


def test_irrelevant_and_failed_calls_count_in_precision() -> None:
    failed = ExecutedCall(name="tool1", ok=False, result=None)
    irrelevant = ExecutedCall(name="distractor", ok=True, result={"value": 101})
    b = f1_reward(TARGETS[:2], [_hit(0), failed, irrelevant])
    assert b.calls == 3 and b.solved == {"s0": True, "s1": False}
    assert b.precision == pytest.approx(1 / 3)


def test_result_match_needs_the_subtasks_tool_and_an_ok_golden() -> None:
    wrong_tool = ExecutedCall(name="tool9", ok=True, result={"value": 100})
    assert not f1_reward(TARGETS[:1], [wrong_tool]).solved["s0"]
    broken = TARGETS[0].model_copy(update={"golden": ExecutedCall(name="tool0", ok=False)})
    assert not f1_reward([broken], [ExecutedCall(name="tool0", ok=False)]).solved["s0"]
    assert not f1_reward([TARGETS[0].model_copy(update={"golden": None})], [_hit(0)]).solved["s0"]


def test_answer_mode_uses_normalised_containment() -> None:
    target = SubTaskTarget(id="s", answer="11,024.40 EUR")
    ok = ExecutedCall(name="t", ok=True, result={"amount": 11024.4, "currency": "eur"})
    assert f1_reward([target], [ok], ANSWER).solved["s"] is False  # JSON puts '"' between number and unit
    target = SubTaskTarget(id="s", answer="11,024.40")
    assert f1_reward([target], [ok], ANSWER).reward == pytest.approx(1.0)
    assert f1_reward([target], [ok]).reward == 0.0  # result mode: no golden outcome given


def test_leaf_subtasks_count_in_recall_never_in_precision() -> None:
    targets = [_target(0), SubTaskTarget(id="leaf", answer="Porto is cheaper", needs_tool=False)]
    config = RewardConfig(leaf_subtasks="final_message")
    assert f1_reward(targets, [], config, final_message="Porto is cheaper").reward == 0.0
    both = f1_reward(targets, [_hit(0)], config, final_message="In the end, Porto is cheaper.")
    assert both.solved == {"s0": True, "leaf": True} and both.reward == pytest.approx(1.0)
    excluded = f1_reward(targets, [_hit(0)])
    assert excluded.solved == {"s0": True} and excluded.reward == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(30))
def test_properties_over_random_episodes(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(1, 6)
    targets = [_target(i) for i in range(n)]
    calls = [_hit(i) if rng.random() < 0.5 else _miss(i) for i in range(n)]
    calls += [_miss(rng.randrange(n)) for _ in range(rng.randint(0, 3))]
    rng.shuffle(calls)
    base = f1_reward(targets, calls)
    assert 0.0 <= base.reward <= 1.0
    unsolved = [i for i in range(n) if not base.solved[f"s{i}"]]
    if unsolved:
        # Monotone in solved: turning a wrong call into a right one never lowers the reward.
        i = rng.choice(unsolved)
        swapped = [_hit(i) if c == _miss(i) else c for c in calls]
        if swapped != calls:
            assert f1_reward(targets, swapped).reward > base.reward
    # A duplicate of any call never raises the reward.
    if calls:
        assert f1_reward(targets, [*calls, rng.choice(calls)]).reward <= base.reward
    # Removing every call gives 0.
    assert f1_reward(targets, []).reward == 0.0


@pytest.mark.parametrize(
    ("text", "answer", "expected"),
    [
        ("30 nights", "3", False),
        ("3.5 km", "3", False),
        ("-3 °C", "3", False),
        ("room 3 of 5", "3", True),
        ('{"bmi": 25.88}', "25.88", True),
        ("total 1,234.50", "1234.5", True),
        ("ＴＯＴＡＬ　１２", "total 12", True),
        ("北京南站到达", "北京南", True),
        ("flight AX118", "X118", False),
        ("B", "B", True),
        ("grade B-", "B", False),
        ("Grade: B-", "b-", True),
        ("", "x", False),
        ("anything", "", False),
    ],
)
def test_contains_answer(text: str, answer: str, expected: bool) -> None:
    assert contains_answer(text, answer) is expected


def test_normalise_numbers_and_unicode() -> None:
    assert normalise("  Total:\t1,200.50  EUR ") == "total: 1200.5 eur"
    assert normalise("0.0 and -0") == "0 and 0"
    assert normalise("Ⅻ ｆｕｌｌ") == "xii full"


def test_result_match_ignores_number_spelling_not_booleans() -> None:
    golden = ExecutedCall(name="stay_cost", ok=True, result={"total": 354.0, "nights": [3.0], "paid": True})
    target = SubTaskTarget(id="s", answer="354", tool="stay_cost", golden=golden)
    ints = ExecutedCall(name="stay_cost", ok=True, result={"total": 354, "nights": [3], "paid": True})
    assert f1_reward([target], [ints]).solved["s"] is True
    as_number = ExecutedCall(name="stay_cost", ok=True, result={"total": 354, "nights": [3], "paid": 1})
    assert f1_reward([target], [as_number]).solved["s"] is False
