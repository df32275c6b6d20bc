"""Arena families: the format's errors, seeded instantiation, sandbox-computed answers, the shipped
curriculum and its splits.

The curriculum test instantiates 20 arenas of every shipped family (answers computed in the sandbox) and
runs the full validation battery — replay to reward 1 included — on 5 of each family, to keep the test
short; ``astra arenas instantiate`` validates every arena.
"""

from __future__ import annotations

import random
from collections import Counter
from pathlib import Path

import pytest

from astra_synth.arenas.families import (
    BoundFamily,
    FamilyError,
    instantiate,
    load_families,
    split_instances,
)
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.validate import check_arena
from astra_synth.errors import InputError
from astra_synth.sandbox.executor import ToolExecutor

CURRICULUM = Path(__file__).resolve().parents[2] / "examples" / "families"
SAMPLE = CURRICULUM.parent / "arenas.sample.jsonl"

FAMILY_FILE = """\
schema_version: 1
provenance: {{method: hand-written, licence: Apache-2.0, source: "test data, fictional"}}
tools:
  - name: get_price
    description: Price of a fruit per kilogram.
    parameters:
      type: object
      properties:
        fruit: {{type: string}}
      required: [fruit]
    source: |
      PRICES = {{"apple": {apple}, "pear": 3.5, "plum": 4.25, "kiwi": 5.75}}


      def get_price(fruit):
          if fruit not in PRICES:
              raise ValueError(f"unknown fruit {{fruit!r}}")
          return {{"fruit": fruit, "eur_per_kg": PRICES[fruit]}}
  - name: get_cost
    description: Cost of some kilograms at a price per kilogram.
    parameters:
      type: object
      properties:
        eur_per_kg: {{type: number}}
        kg: {{type: integer}}
      required: [eur_per_kg, kg]
    source: |
      def get_cost(eur_per_kg, kg):
          if kg <= 0:
              raise ValueError("kg must be positive")
          return {{"cost_eur": round(eur_per_kg * kg, 2)}}
families:
  - id: test.fruit-cost
    group: warm-up
    domain: grocery
    tools: [get_price, get_cost]
    slots:
      fruit: {{choices: [apple, pear, plum, kiwi]}}
      kg: {{min: 2, max: 7}}
    question: What do {{kg}} kg of {{fruit}} cost?
    calls:
      - tool: get_price
        arguments: {{fruit: {{$slot: fruit}}}}
        answer: eur_per_kg
        question: What does a kilogram of {{fruit}} cost?
      - tool: {second_tool}
        arguments: {{eur_per_kg: {{$call: 0}}, kg: {{$slot: kg}}}}
        answer: cost_eur
        question: What do {{kg}} kg at {{0.eur_per_kg}} EUR/kg cost?
    answer: "{{kg}} kg of {{fruit}} cost {{1.cost_eur}} EUR."
"""


def _family(tmp_path: Path, apple: str = "2.75", second_tool: str = "get_cost") -> list[BoundFamily]:
    path = tmp_path / "fruit.yaml"
    path.write_text(FAMILY_FILE.format(apple=apple, second_tool=second_tool), encoding="utf-8")
    return load_families([path])


def test_a_bad_family_names_file_line_family_and_field(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        _family(tmp_path, second_tool="get_costs")
    line = 1 + FAMILY_FILE.splitlines().index("      - tool: {second_tool}")
    expected = "family 'test.fruit-cost' calls[1].tool: 'get_costs' is not among the family's tools"
    assert str(info.value) == f"{tmp_path / 'fruit.yaml'}:{line}: {expected}"


def test_a_field_of_the_wrong_type_points_at_its_line(tmp_path: Path) -> None:
    path = tmp_path / "fruit.yaml"
    text = FAMILY_FILE.format(apple="2.75", second_tool="get_cost").replace(
        "{min: 2, max: 7}", "{min: 2, max: NO}"
    )
    path.write_text(text, encoding="utf-8")
    with pytest.raises(InputError) as info:
        load_families([path])
    line = 1 + text.splitlines().index("      kg: {min: 2, max: NO}")
    assert f"fruit.yaml:{line}: family 'test.fruit-cost' families.0.slots.kg.max:" in str(info.value)


def test_too_few_distinct_instances_fail_clearly(tmp_path: Path, executor: ToolExecutor) -> None:
    with pytest.raises(
        FamilyError, match=r"'test.fruit-cost': its slots allow at most 24 instances, 25 asked"
    ):
        instantiate(_family(tmp_path), 25, 0, executor)


def test_same_seed_same_arenas(tmp_path: Path, executor: ToolExecutor) -> None:
    family = _family(tmp_path)
    first = instantiate(family, 6, 3, executor)
    again = instantiate(family, 6, 3, executor)
    other = instantiate(family, 6, 4, executor, validate=False)
    assert [a.model_dump() for a in first] == [a.model_dump() for a in again]
    assert {a.id for a in first} != {a.id for a in other}
    assert len({a.messages[-1].content for a in first}) == 6
    assert all(a.family == "test.fruit-cost" and a.scenario_type == "multi-hop" for a in first)


def test_answers_are_computed_by_the_tools(tmp_path: Path, executor: ToolExecutor) -> None:
    def apple_answers(price: str) -> dict[str, tuple[str, str, str]]:
        arenas = instantiate(_family(tmp_path, apple=price), 24, 0, executor, validate=False)
        return {
            a.messages[-1].content: (a.subtasks[0].answer, a.subtasks[1].answer, a.final_answer)
            for a in arenas
            if "apple" in a.messages[-1].content
        }

    cheap, dear = apple_answers("2.75"), apple_answers("3.1")
    question = "What do 4 kg of apple cost?"
    assert cheap[question] == ("2.75", "11.0", "4 kg of apple cost 11.0 EUR.")
    assert dear[question] == ("3.1", "12.4", "4 kg of apple cost 12.4 EUR.")
    first, second = instantiate(_family(tmp_path), 1, 0, executor)[0].subtasks
    assert second.parents == ["s1"] and second.hop_level == 2 and second.golden_call is not None
    assert second.golden_call.arguments["eur_per_kg"] == float(first.answer)  # the call's output, passed on


@pytest.fixture(scope="module")
def curriculum() -> list[BoundFamily]:
    return load_families([CURRICULUM])


@pytest.fixture(scope="module")
def shipped(curriculum: list[BoundFamily], executor: ToolExecutor) -> list[Arena]:
    return instantiate(curriculum, 20, 0, executor, validate=False)


def test_the_curriculum_covers_what_the_issue_asks(curriculum: list[BoundFamily]) -> None:
    groups = Counter(b.family.group for b in curriculum)
    assert len(curriculum) >= 30 and len({b.family.domain for b in curriculum}) >= 8
    assert groups["unseen"] >= 6 and groups["warm-up"] > 0 and groups["rl"] > 0
    assert {b.family.language for b in curriculum} == {"en", "zh"}
    extra = sum(len(b.tools) > len({c.tool for c in b.family.calls}) for b in curriculum)
    assert extra > len(curriculum) / 2  # most families offer tools they do not need
    tools = {g: {t.name for b in curriculum if b.family.group == g for t in b.tools} for g in groups}
    assert not (
        tools["warm-up"] & tools["rl"] or tools["warm-up"] & tools["unseen"] or tools["rl"] & tools["unseen"]
    )


def test_every_shipped_family_gives_20_valid_distinct_arenas(
    curriculum: list[BoundFamily], shipped: list[Arena], executor: ToolExecutor
) -> None:
    by_family: dict[str, list[Arena]] = {}
    for arena in shipped:
        assert arena.family is not None
        by_family.setdefault(arena.family, []).append(arena)
    assert set(by_family) == {b.family.id for b in curriculum}
    for members in by_family.values():
        assert len({a.id for a in members}) == len({a.messages[-1].content for a in members}) == 20
    shapes = {a.scenario_type for a in shipped}
    assert shapes == {"single-hop", "parallel-single-hop", "multi-hop"}
    assert max(max(s.hop_level for s in a.subtasks) for a in shipped) == 3
    rng = random.Random(0)
    for members in by_family.values():
        for arena in rng.sample(members, 5):
            card = check_arena(arena, executor)
            assert card.passed, (
                arena.id,
                [f"{c.name}: {c.detail}" for c in card.failures],
                card.probe_rewards,
            )
            assert all(r == pytest.approx(1.0) for r in card.replay_rewards.values())


def test_splits_are_disjoint_and_seeded(curriculum: list[BoundFamily], shipped: list[Arena]) -> None:
    groups = {b.family.id: b.family.group for b in curriculum}
    splits = split_instances(shipped, groups, 0.2, seed=0)
    ids = [a.id for members in splits.values() for a in members]
    assert sorted(ids) == sorted(a.id for a in shipped)  # every arena in exactly one split
    families = {name: {a.family for a in members} for name, members in splits.items()}
    assert (
        families["warm-up.train"]
        == families["warm-up.held-out"]
        == {f for f, g in groups.items() if g == "warm-up"}
    )
    assert families["rl.train"] == families["rl.held-out"] == {f for f, g in groups.items() if g == "rl"}
    assert families["unseen"] == {f for f, g in groups.items() if g == "unseen"}
    assert len(splits["warm-up.held-out"]) == 4 * len(families["warm-up.train"])
    again = split_instances(shipped, groups, 0.2, seed=0)
    other = split_instances(shipped, groups, 0.2, seed=1)
    assert {k: [a.id for a in v] for k, v in again.items()} == {
        k: [a.id for a in v] for k, v in splits.items()
    }
    assert {a.id for a in other["rl.held-out"]} != {a.id for a in splits["rl.held-out"]}


def test_old_arena_files_still_load() -> None:
    assert all(a.family is None for a in read_arenas(SAMPLE))


def test_a_dependency_must_pass_the_parents_answer(tmp_path: Path) -> None:
    path = tmp_path / "fruit.yaml"
    text = FAMILY_FILE.format(apple="2.75", second_tool="get_cost")
    path.write_text(text.replace("{$call: 0}", "{$call: 0, path: fruit}"), encoding="utf-8")
    with pytest.raises(InputError, match=r"calls\[1\]\.arguments: uses calls\[0\] only through \['fruit'\]"):
        load_families([path])


def test_a_path_the_output_lacks_fails_with_the_call(tmp_path: Path, executor: ToolExecutor) -> None:
    path = tmp_path / "fruit.yaml"
    text = FAMILY_FILE.format(apple="2.75", second_tool="get_cost")
    path.write_text(text.replace("{1.cost_eur} EUR", "{1.cost_usd} USD"), encoding="utf-8")
    expected = r"'test.fruit-cost' with slots .*: answer: .*path 'cost_usd' does not exist"
    with pytest.raises(FamilyError, match=expected):
        instantiate(load_families([path]), 1, 0, executor)
