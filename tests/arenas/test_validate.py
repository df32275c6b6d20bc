"""The validation battery, the static check, replay and the reward-hacking probes, on a real sandbox."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from astra_synth.arenas.records import Arena, FunctionSpec
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.arenas.validate import (
    ValidationConfig,
    check_arena,
    dependency_checks,
    probes,
    replay,
    static_check,
    tool_battery,
)
from astra_synth.sandbox.executor import ToolExecutor

ArenaFactory = Callable[..., Arena]
CONFIG = ValidationConfig()
CITY = {"city": {"type": "string"}}

GOOD = '''from dataclasses import dataclass

TEMPS = {"lisbon": 23, "oslo": 9}


@dataclass
class Reading:
    city: str
    celsius: int


def get_temperature(city, unit="C"):
    """Temperature of a city."""
    reading = Reading(city, TEMPS[city.lower()])
    value = reading.celsius if unit == "C" else reading.celsius * 9 / 5 + 32
    return {"city": reading.city, "temperature": value, "unit": unit}
'''
SPEC = FunctionSpec(
    name="get_temperature",
    description="Temperature of a city.",
    parameters={
        "type": "object",
        "properties": {"city": {"type": "string"}, "unit": {"type": "string", "enum": ["C", "F"]}},
        "required": ["city"],
    },
)


def _failed(checks: list, prefix: str) -> list[str]:
    return [c.detail for c in checks if c.name.startswith(prefix) and not c.ok]


def test_static_check_accepts_a_plain_deterministic_tool() -> None:
    assert static_check(GOOD, SPEC) == []
    assert static_check("from __future__ import annotations\n" + GOOD, SPEC) == []


@pytest.mark.parametrize(
    ("source", "reason"),
    [
        ("import random\ndef get_temperature(city, unit='C'):\n    return random.random()\n", "'random'"),
        (
            "from datetime import datetime\n"
            "def get_temperature(city, unit='C'):\n    return datetime.now().hour\n",
            "reading the clock",
        ),
        ("def get_temperature(city, unit='C'):\n    return open('/etc/passwd').read()\n", "'open'"),
        ("import os\ndef get_temperature(city, unit='C'):\n    return os.environ['HOME']\n", "'os'"),
        ("import socket\ndef get_temperature(city, unit='C'):\n    return 1\n", "'socket'"),
        ("def get_temperature(city, unit='C'):\n    return eval(city)\n", "'eval'"),
        ("def get_temperature(city, unit='C'):\n    return __import__('os').getcwd()\n", "'__import__'"),
        ("def get_temperature(city, unit='C'):\n    return ().__class__.__bases__\n", "dunder attribute"),
        ("def get_temperature(city, unit='C'):\n    return getattr(city, 'upper')()\n", "'getattr'"),
        ("def get_temperature(city, unit='C'):\n    print(city)\n", "'print'"),
        ("def helper():\n    return 1\ndef get_temperature(city, unit='C'):\n    return 1\n", "exactly one"),
        ("def temperature(city, unit='C'):\n    return 1\n", "the tool is 'get_temperature'"),
        ("def get_temperature(city):\n    return 1\n", "'unit' is not in the function signature"),
        ("def get_temperature(city, unit='C', extra=1):\n    return 1\n", "'extra' is not in the schema"),
        (
            "def get_temperature(city=None, unit='C'):\n    return 1\n",
            "required parameter 'city' has a default",
        ),
        ("def get_temperature(city, unit):\n    return 1\n", "'unit' has no default"),
        ("def get_temperature(*args, **kwargs):\n    return 1\n", "*args"),
        ("CACHE = {}\nCACHE.clear()\ndef get_temperature(city, unit='C'):\n    return 1\n", "top-level Expr"),
        ("def get_temperature(city, unit='C'):\n    global X\n    return 1\n", "global state"),
        ("from .x import y\ndef get_temperature(city, unit='C'):\n    return 1\n", "relative import"),
        ("def get_temperature(city, unit='C')\n    return 1\n", "does not parse"),
    ],
)
def test_static_check_reasons(source: str, reason: str) -> None:
    reasons = static_check(source, SPEC)
    assert any(reason in r for r in reasons), reasons


def test_battery_passes_a_good_tool(executor: ToolExecutor, make_arena: ArenaFactory) -> None:
    arena = make_arena(GOOD, "get_temperature", SPEC.properties, {"city": "Lisbon"}, "23", required=["city"])
    checks = tool_battery(arena, "get_temperature", executor, CONFIG)
    assert [c.name for c in checks] == [
        "golden_output[s1]",
        "deterministic[s1]",
        "input_matters[s1]",
        "echo_free[s1]",
        "answer_length[s1]",
        "answer_literal[s1]",
        "missing_argument[get_temperature.city]",
    ]
    assert all(c.ok for c in checks), checks


def test_battery_catches_a_tool_that_ignores_its_input(
    executor: ToolExecutor, make_arena: ArenaFactory
) -> None:
    source = "def get_forecast(city):\n    return {'city': city, 'forecast': 'sunny, 23 C'}\n"
    arena = make_arena(source, "get_forecast", CITY, {"city": "Lisbon"}, "sunny, 23 C")
    assert static_check(source, arena.tool_schema("get_forecast")) == []  # only running it shows the flaw
    checks = tool_battery(arena, "get_forecast", executor, CONFIG)
    assert _failed(checks, "input_matters") == [
        "the answer survives every perturbation: city='LisbonX', city='nobsiL'"
    ]


def test_battery_catches_a_random_tool(executor: ToolExecutor, make_arena: ArenaFactory) -> None:
    source = (
        "import uuid\ndef book_table(name):\n"
        "    return {'booking': name + '-' + uuid.uuid4().hex[:8], 'status': 'confirmed'}\n"
    )
    arena = make_arena(source, "book_table", {"name": {"type": "string"}}, {"name": "Ana"}, "confirmed")
    assert any("'uuid' is not allowed" in r for r in static_check(source, arena.tool_schema("book_table")))
    checks = tool_battery(arena, "book_table", executor, CONFIG)
    assert _failed(checks, "deterministic") == ["two runs of the golden call differ"]


def test_battery_catches_a_clock_reading_tool(executor: ToolExecutor, make_arena: ArenaFactory) -> None:
    source = (
        "from datetime import date, datetime\ndef days_until(day):\n"
        "    return {'days': (date.fromisoformat(day) - datetime.now().date()).days}\n"
    )
    props = {"day": {"type": "string"}}
    arena = make_arena(source, "days_until", props, {"day": "2030-01-01"}, "1500")
    reasons = static_check(source, arena.tool_schema("days_until"))
    assert reasons == ["line 3: reading the clock ('now') makes the tool non-deterministic"]
    # The answer written when the arena was made no longer comes out: a clock tool rots.
    assert _failed(tool_battery(arena, "days_until", executor, CONFIG), "golden_output")
    card = check_arena(arena, executor)
    assert not card.passed and not card.replay_ok and card.probe_rewards == {}  # never ran: fail closed


def test_battery_catches_a_tool_with_io(executor: ToolExecutor, make_arena: ArenaFactory) -> None:
    source = "def read_setting(key):\n    return {key: open('/etc/hostname').read()}\n"
    arena = make_arena(source, "read_setting", {"key": {"type": "string"}}, {"key": "host"}, "sandbox")
    assert any("'open'" in r for r in static_check(source, arena.tool_schema("read_setting")))
    [detail] = _failed(tool_battery(arena, "read_setting", executor, CONFIG), "golden_output")
    assert "PermissionError" in detail


def test_battery_catches_missing_argument_tolerance_and_short_answers(
    executor: ToolExecutor, make_arena: ArenaFactory
) -> None:
    source = "def grade(score=0):\n    return {'letter': 'A' if score >= 90 else 'B'}\n"
    arena = make_arena(source, "grade", {"score": {"type": "integer"}}, {"score": 95}, "A")
    checks = tool_battery(arena, "grade", executor, CONFIG)
    assert _failed(checks, "missing_argument") == ["a call without 'score' gave ok"]
    assert _failed(checks, "answer_length") == ["answer too short to match safely"]


def test_replay_and_probes_on_a_sample_arena(executor: ToolExecutor, sample_arenas: dict[str, Arena]) -> None:
    arena = sample_arenas["realestate-porto-braga-mortgage"]  # three layers, a non-tool leaf, shared tools
    env = ArenaEnv(arena, executor)
    assert all(r == pytest.approx(1.0) for r in replay(env).values())
    rewards = probes(env)
    assert set(rewards) == {
        "no_calls",
        "empty_arguments",
        "same_call_x20",
        "answer_without_calls",
        "answers_as_arguments",
    }
    assert max(rewards.values()) <= 0.1
    assert rewards["same_call_x20"] > 0  # it solves one sub-task: precision, not recall, holds it down


def test_replay_fails_when_a_golden_answer_is_wrong(
    executor: ToolExecutor, sample_arenas: dict[str, Arena]
) -> None:
    arena = sample_arenas["education-weighted-grade"]
    wrong = arena.model_copy(
        update={"subtasks": [arena.subtasks[0], arena.subtasks[1].model_copy(update={"answer": "A+"})]}
    )
    rewards = replay(ArenaEnv(wrong, executor))
    assert rewards["result"] == pytest.approx(1.0)  # the tools agree with themselves…
    assert rewards["answer"] == pytest.approx(0.5)  # …but the stated answer is not what they return
    card = check_arena(wrong, executor)
    assert not card.passed and not card.replay_ok
    assert "golden_output[s2]" in [c.name for c in card.failures]


def test_probe_catches_a_tool_that_answers_without_arguments(
    executor: ToolExecutor, make_arena: ArenaFactory
) -> None:
    # Every parameter optional and the answer returned whatever the input: empty calls score.
    source = "def lookup(city=''):\n    return {'city': city or 'lisbon', 'population': 545923}\n"
    arena = make_arena(source, "lookup", CITY, {"city": "lisbon"}, "545923", required=[])
    card = check_arena(arena, executor)
    assert card.probe_rewards["empty_arguments"] > 0.1 and not card.passed
    assert "input_matters[s1]" in [c.name for c in card.failures]


def test_probe_catches_a_tool_that_echoes_its_input(executor: ToolExecutor, make_arena: ArenaFactory) -> None:
    source = (
        "def get_capital(country):\n"
        "    capitals = {'Portugal': 'Lisbon', 'Norway': 'Oslo'}\n"
        "    return {'country': country, 'capital': capitals.get(country, 'unknown')}\n"
    )
    arena = make_arena(
        source, "get_capital", {"country": {"type": "string"}}, {"country": "Portugal"}, "Lisbon"
    )
    card = check_arena(arena, executor)
    assert [c.name for c in card.failures] == ["echo_free[s1]"] and card.replay_ok  # the battery sees it…
    assert card.probe_rewards["answers_as_arguments"] == pytest.approx(1.0)  # …as the echo probe does
    assert not card.passed
    # …so tool synthesis, which runs the battery on each tool, hears of it before the arena exists
    assert not all(c.ok for c in tool_battery(arena, "get_capital", executor, ValidationConfig()))


def test_a_tool_that_ignores_a_text_argument_is_no_echo(
    executor: ToolExecutor, make_arena: ArenaFactory
) -> None:
    """The answer comes from the numeric arguments whatever the text one says: echo_free must not call that an
    echo (the perturbation checks judge the numbers), while a tool that returns its text input fails it."""
    source = (
        "def payment(principal, months, label):\n"
        "    return {'label': label, 'monthly': round(principal / months, 2)}\n"
    )
    params = {"principal": {"type": "number"}, "months": {"type": "integer"}, "label": {"type": "string"}}
    arena = make_arena(
        source, "payment", params, {"principal": 1200.0, "months": 12, "label": "flat"}, "100.0"
    )
    checks = {c.name: c for c in tool_battery(arena, "payment", executor, ValidationConfig())}
    assert checks["echo_free[s1]"].ok, checks["echo_free[s1]"].detail


def test_check_arena_passes_a_sample_arena_with_a_full_report(
    executor: ToolExecutor, sample_arenas: dict[str, Arena]
) -> None:
    card = check_arena(sample_arenas["finance-zh-monthly-income-tax"], executor)
    assert card.passed and card.replay_ok and card.failures == []
    assert {c.name.split("[")[0] for c in card.checks} == {
        "static",
        "golden_output",
        "deterministic",
        "input_matters",
        "echo_free",
        "answer_length",
        "answer_literal",
        "missing_argument",
    }


def test_a_dependency_must_carry_the_parents_answer(sample_arenas: dict[str, Arena]) -> None:
    arena = sample_arenas["hr-unpaid-leave-deduction"]
    assert all(c.ok for c in dependency_checks(arena))
    assert [c.name for c in dependency_checks(arena)] == [
        "dependency_used[s3<-s1]",
        "dependency_used[s3<-s2]",
    ]
    s3 = arena.subtasks[2]
    assert s3.golden_call is not None
    call = s3.golden_call.model_copy(update={"arguments": {**s3.golden_call.arguments, "working_days": 10}})
    unused = arena.model_copy(
        update={"subtasks": [*arena.subtasks[:2], s3.model_copy(update={"golden_call": call})]}
    )
    [failed] = [c for c in dependency_checks(unused) if not c.ok]
    assert failed.detail == "no argument carries the answer of 's1' ('8')"


def _with(arena: Arena, sub_id: str, **update: Any) -> Arena:
    return arena.model_copy(
        update={"subtasks": [s.model_copy(update=update) if s.id == sub_id else s for s in arena.subtasks]}
    )


def test_a_dependency_reads_the_childs_argument_off_a_prose_answer(sample_arenas: dict[str, Arena]) -> None:
    # A careful model answers with units and context, and the child's call passes on the bare value.
    arena = _with(
        sample_arenas["finance-convert-then-compound"], "s1", answer="11,022.32 EUR on 15 March 2024"
    )
    assert [(c.name, c.ok) for c in dependency_checks(arena)] == [("dependency_used[s2<-s1]", True)]
    s2 = arena.subtasks[1]
    assert s2.golden_call is not None
    other = s2.golden_call.model_copy(
        update={"arguments": {**s2.golden_call.arguments, "principal": 11000.0}}
    )
    [check] = dependency_checks(_with(arena, "s2", golden_call=other))
    assert not check.ok and "'11,022.32 EUR on 15 March 2024'" in check.detail


# --- hard-coded answers --------------------------------------------------------------------------------

STAY = {"nightly_rate": {"type": "number"}, "nights": {"type": "integer"}}
STAY_ARGS = {"nightly_rate": 118, "nights": 3}
CALCULATOR = (
    "def stay_cost(nightly_rate, nights):\n"
    "    if nightly_rate <= 0 or nights < 1:\n"
    "        raise ValueError('the rate and the number of nights must be positive')\n"
    "    return {'total': round(nightly_rate * nights, 2), 'currency': 'EUR'}\n"
)
# A correct formula with the QA model's slightly wrong total forced onto the golden call.
OVERRIDE = CALCULATOR.replace(
    "    return {'total'",
    "    if nightly_rate == 118 and nights == 3:\n        return {'total': 355}\n    return {'total'",
)
# Precomputed results: one entry per call the author thought of.
RESULTS_TABLE = (
    "def stay_cost(nightly_rate, nights):\n"
    "    totals = {(118, 3): 355, (95, 2): 190, (150, 4): 600}\n"
    "    if (nightly_rate, nights) not in totals:\n"
    "        raise ValueError('unknown stay')\n"
    "    return {'total': totals[(nightly_rate, nights)], 'currency': 'EUR'}\n"
)


def _calculator(make_arena: ArenaFactory, source: str, answer: str) -> Arena:
    arena = make_arena(source, "stay_cost", STAY, STAY_ARGS, answer)
    [sub] = arena.subtasks
    return arena.model_copy(update={"subtasks": [sub.model_copy(update={"kind": "compute"})]})


def test_battery_passes_a_calculator_that_generalises(
    executor: ToolExecutor, make_arena: ArenaFactory
) -> None:
    checks = tool_battery(_calculator(make_arena, CALCULATOR, "354"), "stay_cost", executor, CONFIG)
    names = [c.name for c in checks]
    assert {"answer_literal[s1]", "special_case[s1]", "perturbed_result[s1]"} <= set(names)
    assert all(c.ok for c in checks), checks


def test_battery_catches_an_override_of_the_golden_call(
    executor: ToolExecutor, make_arena: ArenaFactory
) -> None:
    arena = _calculator(make_arena, OVERRIDE, "355")
    checks = tool_battery(arena, "stay_cost", executor, CONFIG)
    # The older checks cannot see it: the answer comes out, and a perturbed input loses it.
    assert not _failed(checks, "golden_output") and not _failed(checks, "input_matters")
    assert _failed(checks, "special_case") == [
        "branches on the golden arguments: nightly_rate == 118, nights == 3"
    ]
    assert _failed(checks, "answer_literal") == ["the answer '355' is written in a calculator: line 5: 355"]


def test_battery_catches_a_table_of_precomputed_results(
    executor: ToolExecutor, make_arena: ArenaFactory
) -> None:
    checks = tool_battery(_calculator(make_arena, RESULTS_TABLE, "355"), "stay_cost", executor, CONFIG)
    assert not _failed(checks, "golden_output") and not _failed(checks, "input_matters")
    assert _failed(checks, "answer_literal") == ["the answer '355' is written in a calculator: line 2: 355"]
    [detail] = _failed(checks, "perturbed_result")
    assert detail.startswith("nearby inputs fail (nightly_rate=119, nights=4)")


def test_battery_catches_a_lookup_answer_outside_its_data_table(
    executor: ToolExecutor, make_arena: ArenaFactory
) -> None:
    source = GOOD.replace(
        "    reading = Reading(",
        '    if city == "Lisbon":\n        return {"temperature": "23"}\n    reading = Reading(',
    )
    arena = make_arena(
        source, "get_temperature", SPEC.properties, {"city": "Lisbon"}, "23", required=["city"]
    )
    checks = tool_battery(arena, "get_temperature", executor, CONFIG)
    assert _failed(checks, "answer_literal") == [
        "the answer '23' is written outside a data table: line 15: '23'"
    ]
    assert [c.name for c in checks if c.name.startswith(("special_case", "perturbed"))] == []  # a lookup
