"""``astra arenas instantiate``: family files in, validated split files and a manifest out."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from astra_synth.arenas.records import read_arenas
from astra_synth.cli import app

FAMILIES = Path(__file__).resolve().parents[2] / "examples" / "families"


def test_writes_the_split_files(tmp_path: Path) -> None:
    files = [str(FAMILIES / "travel.yaml"), str(FAMILIES / "library.yaml")]
    args = ["arenas", "instantiate", *files, "--per-family", "20", "--seed", "3", "--out", str(tmp_path)]
    done = CliRunner().invoke(app, args)
    assert done.exit_code == 0, done.output
    assert "RESULT families=6 arenas=120 warm-up.train.jsonl=48 warm-up.held-out.jsonl=12 " in done.output
    manifest = json.loads((tmp_path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["seed"] == 3 and len(manifest["groups"]["unseen"]) == 3
    for name, count in manifest["files"].items():
        arenas = read_arenas(tmp_path / name)
        assert len(arenas) == count and all(a.family for a in arenas)
    assert {a.family for a in read_arenas(tmp_path / "unseen.jsonl")} == set(manifest["groups"]["unseen"])


def test_a_bad_family_file_exits_2_with_file_and_line(tmp_path: Path) -> None:
    text = (
        (FAMILIES / "travel.yaml")
        .read_text(encoding="utf-8")
        .replace("    group: warm-up", "    group: warmup", 1)
    )
    bad = tmp_path / "travel.yaml"
    bad.write_text(text, encoding="utf-8")
    done = CliRunner().invoke(app, ["arenas", "instantiate", str(bad), "--out", str(tmp_path / "out")])
    line = 1 + text.splitlines().index("    group: warmup")
    assert done.exit_code == 2
    assert f"{bad}:{line}: family 'travel.flight-duration' families.0.group: Input should be" in done.output
    assert not (tmp_path / "out").exists()
