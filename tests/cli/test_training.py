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
    options = ["--distractors", "2", "--groups", "99", "--mask-rewarded-failures"]
    done = CliRunner().invoke(app, [*args, *options])
    assert "--distractors is ignored; the arena server draws them" in done.output
    assert isinstance(done.exception, InputError) and "GRPO needs at least 99 arenas" in str(done.exception)
    assert not (tmp_path / "rl").exists()


def test_train_sft_runs_from_the_command_line(tmp_path: Path) -> None:
    """``astra train sft`` with its batching options on two golden conversations of one family: one step,
    the policy and tokenizer saved where --out says."""
    from astra_synth.arenas.families import instantiate, load_families
    from astra_synth.arenas.golden import golden_example
    from astra_synth.sandbox import get_executor
    from astra_synth.training.models import embedded_checkpoint

    families = Path(__file__).resolve().parents[2] / "examples" / "families" / "logistics.yaml"
    (bound,) = [b for b in load_families([families]) if b.family.id == "logistics.postcode-rate"]
    data = tmp_path / "golden.jsonl"
    with get_executor("forkserver") as executor:
        arenas = instantiate([bound], per_family=2, seed=0, executor=executor, validate=False)
        data.write_text("".join(golden_example(a, executor).model_dump_json() + "\n" for a in arenas))
    args = ["train", "sft", "--data", str(data), "--out", str(tmp_path / "sft"), "--model"]
    options = ["--max-steps", "1", "--batch-size", "2", "--prefix-rows", "2", "--max-length", "1024"]
    done = CliRunner().invoke(app, [*args, str(embedded_checkpoint()), *options])
    assert done.exit_code == 0, done.output
    assert "sft: 2 conversations, 1 steps" in done.output
    assert (tmp_path / "sft" / "config.json").is_file() and (tmp_path / "sft" / "tokenizer.json").is_file()
