"""``astra eval …`` fails loudly: a dead endpoint stops each command before any work, naming the URL; a
server that breaks mid-run makes the command exit 1 with ``errors=N`` on its RESULT line."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.testing.scripted import ScriptedLLM, error_reply, text_reply

DEAD = "http://127.0.0.1:9/v1"
ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "examples" / "arenas.sample.jsonl"
ACEBENCH = ROOT / "tests" / "evaluation" / "data" / "acebench"


def _eval(base_url: str, *args: str) -> tuple[int, str, float]:
    started = time.monotonic()
    result = CliRunner().invoke(app, ["--base-url", base_url, "--model", "x", "eval", *args])
    return result.exit_code, result.output, time.monotonic() - started


@pytest.mark.parametrize(
    "command",
    [
        ["arenas", "--arenas", str(SAMPLE)],
        ["bfcl", "--limit", "1"],
        ["acebench", "--data", str(ACEBENCH)],
        ["tau2", "--limit", "1"],
    ],
    ids=["arenas", "bfcl", "acebench", "tau2"],
)
def test_dead_endpoint_fails_before_any_work(command: list[str], tmp_path: Path) -> None:
    out = tmp_path / "out"
    extra = [] if command[0] == "arenas" else ["--out", str(out)]
    code, output, seconds = _eval(DEAD, *command, *extra)
    assert code == 1, output
    assert f"endpoint {DEAD} is not usable: cannot connect" in output
    assert "RESULT" not in output
    assert not out.exists()  # nothing written: no venv step, no answers, no report
    assert seconds < 30


def test_server_breaking_mid_run_exits_1_with_errors_on_the_result_line(
    scripted_llm: ScriptedLLM, tmp_path: Path
) -> None:
    scripted_llm.on(".*", text_reply("I cannot help with that."))
    scripted_llm.fail_after(3, error_reply(400))  # not retried: the CLI's endpoint backs off for seconds
    args = ["arenas", "--arenas", str(SAMPLE), "--concurrency", "1"]
    code, output, _ = _eval(scripted_llm.base_url, *args)
    assert code == 1, output
    assert "RESULT arenas=12 success_rate=0.0000 f1=0.0000 errors=9" in output
    assert "9 of 12 episodes (75.0%) failed at the endpoint" in output
    scripted_llm.reset()
    scripted_llm.on(".*", text_reply("I cannot help with that."))
    scripted_llm.fail_after(3, error_reply(400))
    code, output, _ = _eval(scripted_llm.base_url, *args, "--allow-errors", "--max-error-rate", "0.8")
    assert code == 0, output
    assert "errors=9" in output
