"""``astra export verl``: the summary it prints, and exit 2 for a folder it must not overwrite."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from astra_synth.cli import app

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


def test_export_verl_writes_then_refuses_a_full_folder(tmp_path: Path) -> None:
    args = ["export", "verl", str(SAMPLE), "--out", str(tmp_path / "verl"), "--env-url", "ws://h:1"]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "arenas.sample: 12 rows" in done.output and "verl_overrides.txt" in done.output
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 2
    assert "not empty (use --force" in again.output
