"""``astra eval bfcl``: the real bfcl-eval in its managed venv, generating and scoring against a scripted
endpoint.

A model that never calls a tool must score 0 in every category; one that replays BFCL's own ground truth
(read from the installed wheel's data) must score ≥ 99 %. Together they show the handler, the tool-result
plumbing, the holdout-function turns and BFCL's checker are wired to our endpoint, and that the scores we
print are BFCL's.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.evaluation.bfcl import (
    BFCL_EVAL_VERSION,
    CATEGORIES,
    DATA_PREFIX,
    REGISTRY_NAME,
    SUMMARY_FILE,
    BfclError,
    BfclReport,
    BfclVenv,
    ensure_bfcl_venv,
)
from astra_synth.testing.scripted import Reply, ScriptedLLM, text_reply, tool_call_reply

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]  # the first run on a machine builds the venv

HOLDOUT_PROMPT = "I have updated some more functions you can choose from. What about now?"
"""What BFCL's FC handler sends as the user turn after adding held-out functions (miss_func)."""


@pytest.fixture(scope="module")
def venv() -> BfclVenv:
    return ensure_bfcl_venv()


def _jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _parse_call(source: str, tools: list[dict[str, Any]]) -> tuple[str, dict[str, Any]]:
    """``sort('a.pdf')`` → ("sort", {"file_name": "a.pdf"}): positional arguments are named after the
    tool's parameters in schema order. Parsed, never evaluated."""
    call = ast.parse(source, mode="eval").body
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name), source
    name = call.func.id
    schema = next(t["function"]["parameters"] for t in tools if t["function"]["name"] == name)
    args = dict(zip(schema["properties"], (ast.literal_eval(a) for a in call.args), strict=False))
    return name, args | {str(kw.arg): ast.literal_eval(kw.value) for kw in call.keywords}


def _oracle(venv: BfclVenv, selection: dict[str, list[str]]) -> Any:
    """A handler that answers each user turn with that turn's ground-truth calls, all at once, then stops.

    The conversation's user messages so far identify entry and turn; the selection must keep that unambiguous.
    """
    answers: dict[str, list[str]] = {}
    for category, ids in selection.items():
        entries = {e["id"]: e for e in _jsonl(venv.data_dir / f"{DATA_PREFIX}_{category}.json")}
        truth = {
            e["id"]: e["ground_truth"]
            for e in _jsonl(venv.data_dir / "possible_answer" / f"{DATA_PREFIX}_{category}.json")
        }
        for entry_id in ids:
            history: list[str] = []
            for turn, messages in enumerate(entries[entry_id]["question"]):
                history += [m["content"] for m in messages] or [HOLDOUT_PROMPT]
                key = json.dumps(history)
                assert answers.get(key, truth[entry_id][turn]) == truth[entry_id][turn], entry_id
                answers[key] = truth[entry_id][turn]

    def handler(body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        if messages[-1]["role"] == "tool":
            return text_reply("Done.")
        calls = answers[json.dumps([m["content"] for m in messages if m["role"] == "user"])]
        if not calls:  # a turn where the model must not act (missing function or parameter)
            return text_reply("I cannot do that with the functions I have.")
        return tool_call_reply(*(_parse_call(c, body["tools"]) for c in calls))

    return handler


def _run(llm: ScriptedLLM, out: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        app, ["--base-url", llm.base_url, "--model", "scripted", "eval", "bfcl", "--out", str(out), *args]
    )
    return result.exit_code, result.output


@pytest.fixture
def never_calls() -> Iterator[ScriptedLLM]:
    with ScriptedLLM(handler=lambda body: "I would rather not use any tool.") as llm:
        yield llm


def test_model_that_never_calls_a_tool_scores_zero_and_reruns_resume(
    venv: BfclVenv, never_calls: ScriptedLLM, tmp_path: Path
) -> None:
    out = tmp_path / "noop"
    code, output = _run(never_calls, out, "--limit", "2", "--max-tokens", "64")
    assert code == 0, output
    report = BfclReport.model_validate_json((out / SUMMARY_FILE).read_text())
    assert report.bfcl_eval_version == BFCL_EVAL_VERSION
    assert tuple(s.category for s in report.categories) == CATEGORIES
    assert all(
        (s.accuracy, s.correct, s.total, s.inference_errors) == (0, 0, 2, 0) for s in report.categories
    )
    assert report.overall == 0 and report.entries == 8
    last = output.strip().splitlines()[-1]
    assert last.startswith("RESULT bfcl_overall=0.0000 ") and f"bfcl_eval={BFCL_EVAL_VERSION}" in last
    # BFCL's own files are kept; every failure is BFCL's "no call where one was due" verdict.
    score = out / "score" / REGISTRY_NAME / "multi_turn" / f"{DATA_PREFIX}_multi_turn_base_score.json"
    failures = _jsonl(score)[1:]
    assert {f["id"] for f in failures} == {"multi_turn_base_0", "multi_turn_base_1"}
    assert all(f["error"]["error_type"] == "multi_turn:empty_turn_model_response" for f in failures)
    # FC protocol: our model name, the tools (explicitly "auto"), no system prompt; the cap we asked for.
    requests = never_calls.chat_requests()
    assert len(requests) >= 8 and report.max_tokens == 64
    assert all(r["model"] == "scripted" and r["tools"] and r["tool_choice"] == "auto" for r in requests)
    assert all(r["max_tokens"] == 64 for r in requests)
    assert all(m["role"] != "system" for r in requests for m in r["messages"])

    # Same run again: BFCL finds every entry generated and sends nothing; another selection is refused.
    never_calls.reset()
    code, output = _run(never_calls, out, "--limit", "2", "--max-tokens", "64")
    assert code == 0, output
    assert never_calls.chat_requests() == []
    code, output = _run(never_calls, out, "--limit", "1", "--max-tokens", "64")
    assert code == 1 and "another" in output


def test_model_replaying_the_ground_truth_scores_at_least_99_percent(venv: BfclVenv, tmp_path: Path) -> None:
    # Different entry numbers per category: base_k, miss_func_k, … share their first questions.
    selection = {c: [f"{c}_{3 * i + k}" for k in range(3)] for i, c in enumerate(CATEGORIES)}
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps(selection))
    with ScriptedLLM(handler=_oracle(venv, selection)) as llm:
        code, output = _run(llm, tmp_path / "oracle", "--ids", str(ids_file), "--threads", "4")
    assert code == 0, output
    report = BfclReport.model_validate_json((tmp_path / "oracle" / SUMMARY_FILE).read_text())
    assert {s.category: s.total for s in report.categories} == dict.fromkeys(selection, 3)
    assert all(s.accuracy >= 0.99 for s in report.categories), output
    assert report.overall >= 0.99
    assert all("max_tokens" not in r for r in llm.chat_requests())  # BFCL's protocol: no cap
    echoed = [m for r in llm.chat_requests() for m in r["messages"] if m["role"] == "assistant"]
    assert echoed and all(None not in m.values() and m["content"] == "" for m in echoed if "tool_calls" in m)
    assert output.strip().splitlines()[-1].startswith("RESULT bfcl_overall=1.0000 ")


def test_ids_file_with_unknown_ids_is_refused(venv: BfclVenv, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.json"
    ids_file.write_text(json.dumps({"multi_turn_base": ["multi_turn_base_0", "multi_turn_base_9999"]}))
    with ScriptedLLM(handler=lambda body: "unused") as llm:
        code, output = _run(llm, tmp_path / "out", "--ids", str(ids_file))
        assert code == 1 and "multi_turn_base_9999" in output
        code, output = _run(llm, tmp_path / "out", "--ids", str(ids_file), "--limit", "1")
        assert code == 2 and "not both" in output
        assert llm.chat_requests() == []


def test_venv_that_cannot_be_created_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    with pytest.raises(BfclError, match="cannot create the BFCL venv"):
        ensure_bfcl_venv(blocker / "bfcl-venv")
