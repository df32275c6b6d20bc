"""``astra arenas check`` end to end: a real CLI process, the real sandbox, the shipped sample file."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from astra_synth.cli import app

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"
RESULT = re.compile(r"^RESULT arenas=(\d+) replay_ok=(\d+) max_probe_reward=([0-9.]+)$", re.MULTILINE)


def test_sample_file_passes_in_a_real_cli_process() -> None:
    command = [sys.executable, "-m", "astra_synth.cli", "arenas", "check", str(SAMPLE)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    match = RESULT.search(done.stdout)
    assert match is not None, done.stdout
    arenas, replay_ok, max_probe = match.groups()
    assert (arenas, replay_ok) == ("12", "12") and float(max_probe) <= 0.1
    assert "travel-flight-duration" in done.stdout and "same_call_x20" in done.stdout


def test_a_wrong_golden_answer_fails_the_file(tmp_path: Path) -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    broken = json.loads(lines[0])
    broken["subtasks"][0]["answer"] = "446"  # the tool says 445 minutes
    path = tmp_path / "broken.jsonl"
    path.write_text(lines[6] + "\n" + json.dumps(broken, ensure_ascii=False) + "\n", encoding="utf-8")
    done = CliRunner().invoke(app, ["arenas", "check", str(path)])
    assert done.exit_code == 1, done.output
    assert "RESULT arenas=2 replay_ok=1 " in done.output
    assert "golden_output[s1]" in done.output


def test_an_invalid_record_names_file_line_and_field(tmp_path: Path) -> None:
    lines = SAMPLE.read_text(encoding="utf-8").splitlines()
    twice = json.loads(lines[1])
    twice["tools"].append(twice["tools"][0])  # the released ASTRA data had duplicate tool names
    path = tmp_path / "invalid.jsonl"
    path.write_text(lines[0] + "\n\n" + json.dumps(twice) + "\n{not json\n", encoding="utf-8")
    done = CliRunner().invoke(app, ["arenas", "check", str(path)])
    assert done.exit_code == 2 and "RESULT" not in done.stdout
    assert f"{path}:3: invalid Arena: field '<record>': Value error, duplicate tool names" in done.stderr
    assert f"{path}:4: invalid JSON at column 2" in done.stderr
