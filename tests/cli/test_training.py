"""``astra train rl`` options checked before any model loads."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from astra_synth.cli import app

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


def test_env_url_with_distractors_is_refused(tmp_path: Path) -> None:
    args = ["train", "rl", "--arenas", str(SAMPLE), "--out", str(tmp_path / "rl"), "--env-url", "ws://h:1"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 2, done.output
    assert "no distractor tools; pass --distractors 0" in done.output
    assert not (tmp_path / "rl").exists()
