"""``astra train rl`` options checked before any model loads."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.errors import InputError

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


def test_env_url_leaves_distractors_to_the_server(tmp_path: Path) -> None:
    """--distractors is not refused with --env-url: noted as ignored, and the run goes on (here to the
    arena-count check, which fails before any model loads)."""
    args = ["train", "rl", "--arenas", str(SAMPLE), "--out", str(tmp_path / "rl"), "--env-url", "ws://h:1"]
    done = CliRunner().invoke(app, [*args, "--distractors", "2", "--groups", "99"])
    assert "--distractors is ignored; the arena server draws them" in done.output
    assert isinstance(done.exception, InputError) and "GRPO needs at least 99 arenas" in str(done.exception)
    assert not (tmp_path / "rl").exists()
