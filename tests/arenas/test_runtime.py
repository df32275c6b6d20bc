"""ArenaEnv through a real sandbox: errors become messages, distractors run their own code, seeded order."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from astra_synth.arenas.records import Arena, ToolSchema, ToolSource
from astra_synth.arenas.runtime import ArenaEnv, EnvConfig, ExtraTool
from astra_synth.sandbox.executor import ToolCall, ToolExecutor, ToolResult

HEALTH = "healthcare-bmi-and-clinic-hours"
ArenaFactory = Callable[..., Arena]


def _call(name: str, arguments: Any, call_id: str = "c1") -> dict[str, Any]:
    raw = arguments if isinstance(arguments, str) else json.dumps(arguments)
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": raw}}


def _extras(arena: Arena) -> list[ExtraTool]:
    return [ExtraTool(tool=t, source=arena.tool_sources[t.function.name]) for t in arena.tools]


class CountingExecutor(ToolExecutor):
    """A real executor that counts the calls that reach it."""

    def __init__(self, inner: ToolExecutor) -> None:
        self.inner = inner
        self.executed = 0

    def load(self, source: str) -> str:
        return self.inner.load(source)

    def execute(
        self, env_id: str, fn: str, args: dict[str, Any], timeout_s: float | None = None
    ) -> ToolResult:
        self.executed += 1
        return self.inner.execute(env_id, fn, args, timeout_s)

    def execute_batch(self, calls: list[ToolCall]) -> list[ToolResult]:
        self.executed += len(calls)
        return self.inner.execute_batch(calls)


def test_reset_offers_arena_tools_and_distractors_in_a_seeded_order(
    executor: ToolExecutor, sample_arenas: dict[str, Arena]
) -> None:
    arena = sample_arenas[HEALTH]
    extras = _extras(sample_arenas["energy-tariff-costs"]) + _extras(
        sample_arenas["hr-unpaid-leave-deduction"]
    )

    def order(seed: int) -> list[str]:
        messages, tools = ArenaEnv(arena, executor, extra_tools=extras, seed=seed).reset()
        assert messages == [m.model_dump() for m in arena.messages]
        return [t["function"]["name"] for t in tools]

    names = {"compute_bmi", "get_clinic_hours", "annual_energy_cost", "count_working_days"}
    assert names <= set(order(0)) and len(order(0)) == 6
    assert order(3) == order(3)
    assert len({tuple(order(seed)) for seed in range(8)}) > 1


def test_parallel_golden_calls_solve_everything_in_one_turn(
    executor: ToolExecutor, sample_arenas: dict[str, Arena]
) -> None:
    arena = sample_arenas[HEALTH]
    env = ArenaEnv(arena, executor)
    env.reset()
    calls = [s.golden_call.as_tool_call(f"id-{s.id}") for s in arena.subtasks if s.golden_call]
    messages = env.step(calls)
    assert [m["tool_call_id"] for m in messages] == ["id-s1", "id-s2"]
    assert all(m["role"] == "tool" for m in messages)
    assert json.loads(messages[0]["content"]) == {"bmi": 25.88, "category": "overweight"}
    breakdown = env.reward()
    assert breakdown.reward == pytest.approx(1.0) and breakdown.turns == 1 and breakdown.calls == 2


def test_model_mistakes_become_error_messages_and_count_as_calls(
    executor: ToolExecutor, sample_arenas: dict[str, Arena]
) -> None:
    env = ArenaEnv(sample_arenas[HEALTH], executor)
    env.reset()
    bad = [
        _call("book_flight", {}),
        _call("compute_bmi", "{weight_kg: 82"),
        _call("compute_bmi", {"weight_kg": "82", "height_m": 1.78}),
        _call("compute_bmi", {"weight_kg": 82}),
        _call("compute_bmi", {"weight_kg": 82, "height_m": 1.78, "age": 40}),
        _call("compute_bmi", {"weight_kg": True, "height_m": 1.78}),
        _call("get_clinic_hours", {"clinic": "Riverside Clinic", "weekday": "someday"}),
        _call("get_clinic_hours", {"clinic": "Nowhere", "weekday": "monday"}),
        _call("compute_bmi", "[1, 2]"),
        {"id": "c9", "type": "function"},
        "not a tool call",
    ]
    messages = env.step(bad)
    contents = [m["content"] for m in messages]
    assert all(c.startswith("Error: ") for c in contents), contents
    assert "unknown tool 'book_flight'" in contents[0] and "compute_bmi" in contents[0]
    assert "not valid JSON" in contents[1]
    assert "must be of type number, got str" in contents[2]
    assert "missing required argument(s) ['height_m']" in contents[3]
    assert "unexpected argument(s) ['age']" in contents[4]
    assert "got bool" in contents[5]
    assert "must be one of" in contents[6]
    assert "ValueError" in contents[7] and "unknown clinic" in contents[7]  # raised inside the sandbox
    assert "must be a JSON object" in contents[8]
    assert "malformed tool call" in contents[9] and "malformed tool call" in contents[10]
    assert messages[10]["tool_call_id"] == ""
    breakdown = env.reward()
    assert (breakdown.calls, breakdown.reward) == (11, 0.0)


def test_distractor_runs_its_own_source_and_lowers_precision(
    executor: ToolExecutor, sample_arenas: dict[str, Arena]
) -> None:
    arena = sample_arenas[HEALTH]
    env = ArenaEnv(arena, executor, extra_tools=_extras(sample_arenas["travel-flight-duration"]))
    env.reset()
    [flight] = env.step([_call("get_flight_schedule", {"flight_number": "TP 207"})])
    assert json.loads(flight["content"])["duration_minutes"] == 445
    env.step([s.golden_call.as_tool_call(s.id) for s in arena.subtasks if s.golden_call])
    breakdown = env.reward()
    assert breakdown.solved == {"s1": True, "s2": True} and breakdown.calls == 3 and breakdown.turns == 2
    assert [c.name for c in env.calls] == ["get_flight_schedule", "compute_bmi", "get_clinic_hours"]
    assert breakdown.precision == pytest.approx(2 / 3)


def test_extra_tool_may_not_shadow_an_arena_tool(
    executor: ToolExecutor, sample_arenas: dict[str, Arena]
) -> None:
    arena = sample_arenas[HEALTH]
    with pytest.raises(ValueError, match="compute_bmi"):
        ArenaEnv(arena, executor, extra_tools=_extras(arena)[:1])


def test_timeout_and_truncation(executor: ToolExecutor, make_arena: ArenaFactory) -> None:
    source = "def report(words):\n    return {'text': ' '.join(['word'] * words), 'words': words}\n"
    arena = make_arena(source, "report", {"words": {"type": "integer"}}, {"words": 300}, "300")
    spin_src = "def spin(n):\n    while True:\n        n += 1\n"
    spin = ExtraTool(
        tool=ToolSchema.model_validate(
            {
                "function": {
                    "name": "spin",
                    "description": "Never returns.",
                    "parameters": {
                        "type": "object",
                        "properties": {"n": {"type": "integer"}},
                        "required": ["n"],
                    },
                }
            }
        ),
        source=ToolSource.of(spin_src, "spin"),
    )
    env = ArenaEnv(arena, executor, EnvConfig(max_output_chars=100, timeout_s=0.5), extra_tools=[spin])
    env.reset()
    long, hung = env.step([_call("report", {"words": 300}, "a"), _call("spin", {"n": 1}, "b")])
    assert long["content"].startswith('{"text": "word word') and len(long["content"]) < 160
    full = json.dumps({"text": " ".join(["word"] * 300), "words": 300})
    assert long["content"] == f"{full[:100]}… [output truncated: {len(full) - 100} more characters]"
    assert hung["content"] == "Error: the tool timed out after 0.5 s"
    # The reward judges the full result, not the truncated text the model saw.
    assert env.reward().solved == {"s1": True}


def test_repeated_calls_run_once_per_episode_but_all_count(
    executor: ToolExecutor, sample_arenas: dict[str, Arena]
) -> None:
    arena = sample_arenas["travel-flight-duration"]
    counting = CountingExecutor(executor)
    env = ArenaEnv(arena, counting)
    env.reset()
    golden = arena.subtasks[0].golden_call
    assert golden is not None
    messages = env.step([golden.as_tool_call(str(i)) for i in range(5)])
    assert len({m["content"] for m in messages}) == 1 and counting.executed == 1
    breakdown = env.reward()
    assert breakdown.calls == 5 and breakdown.precision == pytest.approx(0.2)
    env.reset()
    env.step([golden.as_tool_call("again")])
    assert counting.executed == 3  # golden reference once per env, the call again after reset


@pytest.mark.parametrize(("golden", "policy"), [(118.0, 118), (118, 118.0)])
def test_result_reward_credits_either_spelling_of_an_integral_number(
    executor: ToolExecutor, make_arena: ArenaFactory, golden: float, policy: float
) -> None:
    source = (
        "def stay_cost(nightly_rate, nights):\n"
        "    return {'total': nightly_rate * nights, 'currency': 'EUR'}\n"
    )
    props = {"nightly_rate": {"type": "number"}, "nights": {"type": "integer"}}
    arena = make_arena(source, "stay_cost", props, {"nightly_rate": golden, "nights": 3}, "354")
    env = ArenaEnv(arena, executor)
    reward = env.replay([[_call("stay_cost", {"nightly_rate": policy, "nights": 3})]])
    assert reward.solved == {"s1": True} and reward.reward == pytest.approx(1.0)
