"""Golden SFT conversations from the hand-written sample arenas, with real sandbox outputs."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astra_synth.arenas.golden import golden_example, golden_turns, recovery_example
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ToolExecutor]:
    with get_executor() as executor:
        yield executor


@pytest.fixture(scope="module")
def arenas() -> list[Arena]:
    return read_arenas(SAMPLE)


def test_turns_follow_the_dag_layers(arenas: list[Arena]) -> None:
    for arena in arenas:
        turns = golden_turns(arena)
        levels = [
            {s.hop_level for s in arena.subtasks if f"call_{s.id}" in {c["id"] for c in t}} for t in turns
        ]
        assert all(len(level) == 1 for level in levels)
        assert [min(x) for x in levels] == sorted(min(x) for x in levels)
        assert sum(len(t) for t in turns) == sum(s.golden_call is not None for s in arena.subtasks)


def test_every_sample_arena_gives_a_verified_conversation(arenas: list[Arena], sandbox: ToolExecutor) -> None:
    for arena in arenas:
        ex = golden_example(arena, sandbox)
        assert ex.reward == pytest.approx(1.0, abs=1e-6)
        roles = [m["role"] for m in ex.messages]
        assert roles[0] == "system" and roles[1] == "user" and roles[-1] == "assistant"
        assert ex.messages[-1]["content"] == arena.final_answer
        calls = [c for m in ex.messages if m["role"] == "assistant" for c in m.get("tool_calls", [])]
        tool_msgs = [m for m in ex.messages if m["role"] == "tool"]
        assert len(calls) == len(tool_msgs) > 0
        for call in calls:
            assert isinstance(call["function"]["arguments"], str)
            json.loads(call["function"]["arguments"])
        assert {m["tool_call_id"] for m in tool_msgs} == {c["id"] for c in calls}
        assert not any(m["content"].startswith("Error:") for m in tool_msgs)
        assert {t["function"]["name"] for t in ex.tools} == {t.function.name for t in arena.tools}


def test_a_recovery_example_errs_once_with_the_runtimes_message_then_plays_the_golden_turns(
    arenas: list[Arena], sandbox: ToolExecutor
) -> None:
    for arena in arenas:
        golden = golden_example(arena, sandbox)
        ex = recovery_example(arena, sandbox, seed=3)
        assert ex == recovery_example(arena, sandbox, seed=3)  # seeded
        n = ex.learn_from
        assert n is not None and ex.source == "arena-recovery"
        mistake, error = ex.messages[n - 2], ex.messages[n - 1]
        assert ex.messages[: n - 2] == golden.messages[: n - 2]  # the same prompt
        [wrong] = mistake["tool_calls"]
        first = golden.messages[n - 2]["tool_calls"][0]
        assert wrong["function"]["name"] == first["function"]["name"]
        assert json.loads(wrong["function"]["arguments"]) != json.loads(first["function"]["arguments"])
        assert error["role"] == "tool" and error["tool_call_id"] == wrong["id"]
        assert error["content"].startswith("Error: ") and (
            "unexpected argument" in error["content"] or "missing required argument" in error["content"]
        )
        assert [m.get("tool_calls") for m in ex.messages[n:]] == [
            m.get("tool_calls") for m in golden.messages[n - 2 :]
        ]  # then the golden conversation, answer included
        calls = sum(len(m.get("tool_calls") or []) for m in golden.messages)
        assert ex.reward == pytest.approx(2 * (calls / (calls + 1)) / (calls / (calls + 1) + 1))  # recall 1


def test_an_arena_whose_golden_call_fails_is_refused(arenas: list[Arena], sandbox: ToolExecutor) -> None:
    arena = arenas[0]
    name = arena.tools[0].function.name
    broken_src = f"def {name}(**kwargs):\n    raise ValueError('down')\n"
    broken = arena.model_copy(
        update={"tool_sources": {**arena.tool_sources, name: arena.tool_sources[name].of(broken_src, name)}}
    )
    with pytest.raises(ValueError, match=r"not 1|golden call failed"):
        golden_example(broken, sandbox)


def _to_sft(out: Path, *options: str) -> tuple[str, list[dict[str, Any]]]:
    """``astra arenas to-sft`` on the sample arenas, as a user runs it: its RESULT line and rows."""
    command = [sys.executable, "-m", "astra_synth.cli", "arenas", "to-sft", str(SAMPLE), "--out", str(out)]
    proc = subprocess.run([*command, *options], capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.strip().splitlines()[-1], [json.loads(line) for line in out.read_text().splitlines()]


def test_to_sft_cli_writes_one_conversation_per_arena(tmp_path: Path) -> None:
    result, rows = _to_sft(tmp_path / "golden.jsonl")
    assert result.startswith("RESULT arenas=12 conversations=12 skipped=0")
    assert len(rows) == 12 and all(r["source"] == "arena-golden" and r["tools"] for r in rows)


def test_to_sft_cli_with_recovery_adds_a_recovery_conversation_per_arena(tmp_path: Path) -> None:
    result, rows = _to_sft(tmp_path / "golden.jsonl", "--recovery", "--seed", "1")
    assert result.startswith("RESULT arenas=12 conversations=24 skipped=0")
    assert [r["source"] for r in rows] == ["arena-golden", "arena-recovery"] * 12
    assert all(r["learn_from"] is None for r in rows[::2]) and all(r["learn_from"] for r in rows[1::2])
