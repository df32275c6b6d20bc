"""docs/python_api.md's first example runs as written: an arena played in a user's own loop.

The page leaves ``policy`` to the reader (their model); here it is a stand-in that plays each arena's golden
calls as hermes text and then the final answer, so the example must print F1 1.00 for every arena.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import read_arenas
from astra_synth.testing.scripted import ScriptedLLM, text_reply

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "python_api.md"


def _arguments(call: dict[str, Any]) -> Any:
    return json.loads(call["function"]["arguments"])


def _first_block() -> str:
    match = re.search(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert match, "docs/python_api.md has no python example"
    return match.group(1)


def test_the_arena_loop_example_runs_and_scores_golden_play(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    arenas = {a.messages[-1].content: a for a in read_arenas(ROOT / "examples" / "arenas.sample.jsonl")}

    def policy(messages: list[dict[str, Any]], tools: list[dict[str, Any]]) -> str:
        arena = arenas[next(m["content"] for m in messages if m["role"] == "user")]
        done = sum(1 for m in messages if m["role"] == "assistant")
        turns = golden_turns(arena)
        if done < len(turns):
            return "".join(
                "<tool_call>"
                + json.dumps(
                    {"name": c["function"]["name"], "arguments": json.loads(c["function"]["arguments"])}
                )
                + "</tool_call>"
                for c in turns[done]
            )
        return arena.final_answer

    code = compile(_first_block(), str(DOC), "exec")
    exec(code, {"policy": policy})  # our own documentation's code, not model output
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3
    assert all("F1=1.00" in line for line in lines), lines


def test_the_endpoint_example_runs_against_a_real_http_endpoint(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], scripted_llm: ScriptedLLM
) -> None:
    """The second example, aimed at the scripted server (it answers without calling a tool): it runs to the
    end and prints F1 and success rate, both 0 for a model that never calls a tool."""
    monkeypatch.chdir(ROOT)
    scripted_llm.handler = lambda body: text_reply("I cannot help with that.")
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    code = blocks[1].replace("http://127.0.0.1:8000/v1", scripted_llm.base_url)
    assert code != blocks[1], "the example's endpoint URL changed: update this test"
    exec(compile(code, str(DOC), "exec"), {"__name__": "__doc_example__"})
    assert capsys.readouterr().out.split() == ["0.0", "0.0"]
