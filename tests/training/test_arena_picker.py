"""The arena picker: families whose groups carried a signal are drawn more, degenerate ones are retried."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from astra_synth.arenas.records import Arena
from astra_synth.training.arena_picker import ArenaPicker


def _picker(window: int = 4) -> ArenaPicker:
    return ArenaPicker(families={"solved": ["s1", "s2"], "learnable": ["l1"], "new": ["n1"]}, window=window)


def test_family_of_an_arena_groups_instances_and_a_familyless_arena_stands_alone(
    family_arenas: list[Arena], sample_arenas: list[Arena]
) -> None:
    picker = ArenaPicker.of([*family_arenas, *sample_arenas[:2]])
    assert picker.families["logistics.postcode-rate"] == sorted(a.id for a in family_arenas)
    for arena in sample_arenas[:2]:
        assert arena.family is None and picker.families[arena.id] == [arena.id]


def test_weights_follow_the_recent_share_of_valid_groups() -> None:
    picker = _picker(window=4)
    for _ in range(4):
        picker.record("s1", valid=False)
        picker.record("l1", valid=True)
    assert picker.weight("solved") == pytest.approx(1 / 6)
    assert picker.weight("learnable") == pytest.approx(5 / 6)
    assert picker.weight("new") == pytest.approx(1 / 2)  # never tried: the prior
    draws = Counter(picker._family[a] for a in picker.draw(random.Random(0), 3000))
    total = 1 / 6 + 5 / 6 + 1 / 2
    for family, expected in (("solved", 1 / 6), ("learnable", 5 / 6), ("new", 1 / 2)):
        assert draws[family] / 3000 == pytest.approx(expected / total, abs=0.03), draws
    assert draws["solved"] > 0  # a degenerate family is still retried


def test_the_window_forgets_so_a_family_can_become_learnable_again() -> None:
    picker = _picker(window=4)
    for _ in range(4):
        picker.record("s2", valid=False)
    for _ in range(4):
        picker.record("s1", valid=True)  # the policy moved: the family's groups now differ
    assert picker.weight("solved") == pytest.approx(5 / 6)


def test_state_round_trip_gives_the_same_draws() -> None:
    picker = _picker()
    picker.record("s1", valid=False)
    picker.record("l1", valid=True)
    copy = _picker()
    copy.restore(picker.state())
    assert copy.state() == picker.state() == {"learnable": [True], "solved": [False]}
    assert copy.draw(random.Random(5), 20) == picker.draw(random.Random(5), 20)
