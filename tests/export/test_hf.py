"""``astra export hf``: the folder loads with ``datasets``, holds no secrets, and bad runs are refused."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.export.hf import DATA_FILE
from astra_synth.runs.manifest import Manifest
from tests.export.conftest import RunCopy, split_card


def export(run: Path, out: Path, *extra: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["export", "hf", str(run), "--out", str(out), *extra])
    return result.exit_code, result.output


def load(folder: Path, cache: Path) -> datasets.DatasetDict:
    loaded = datasets.load_dataset(str(folder), cache_dir=str(cache))
    assert isinstance(loaded, datasets.DatasetDict)
    return loaded


@pytest.mark.parametrize(
    ("fixture", "parquet"), [("trajectories_run", "sft/sft.parquet"), ("arenas_run", "arenas.parquet")]
)
def test_exported_folder_loads_with_datasets(
    fixture: str, parquet: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    run: Path = request.getfixturevalue(fixture)
    out = tmp_path / "hf"
    code, output = export(run, out)
    assert code == 0, output
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()) == ["README.md", DATA_FILE]
    source = pq.read_table(run / parquet)
    loaded = load(out, tmp_path / "cache")
    assert list(loaded) == ["train"]
    assert loaded["train"].num_rows == source.num_rows > 0
    assert loaded["train"]["id"] == source.column("id").to_pylist()
    front, _ = split_card((out / "README.md").read_text(encoding="utf-8"))
    assert front["configs"][0]["data_files"] == [{"split": "train", "path": DATA_FILE}]
    assert front["dataset_info"]["splits"][0]["num_examples"] == source.num_rows


def test_license_option_and_force(trajectories_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "hf"
    assert export(trajectories_run, out)[0] == 0
    code, output = export(trajectories_run, out)
    assert code == 2 and "not empty; pass --force" in output
    (out / "stale.txt").write_text("from an earlier export")
    code, output = export(trajectories_run, out, "--force", "--license", "cc-by-4.0")
    assert code == 0, output
    assert not (out / "stale.txt").exists()
    front, _ = split_card((out / "README.md").read_text(encoding="utf-8"))
    assert front["license"] == "cc-by-4.0" and "license_name" not in front


def test_secrets_in_the_config_do_not_reach_the_export(
    trajectories_run: Path, run_copy: RunCopy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ASTRA_TEST_TOKEN", "tok-0123456789-secret")
    run = run_copy(trajectories_run)
    for sub in ("synth", "rollout"):
        path = run / sub / "manifest.json"
        manifest = Manifest.model_validate_json(path.read_bytes())
        assert manifest.config is not None
        manifest.config["endpoint"] |= {
            "base_url": "https://bob:hunter2@llm.example.com/v1",
            "model": "tok-0123456789-secret",
        }
        manifest.config["cassette"] = str(Path.home() / "private" / "tapes.sqlite")
        path.write_text(manifest.model_dump_json())
    out = tmp_path / "hf"
    code, output = export(run, out)
    assert code == 0, output
    text = (out / "README.md").read_text(encoding="utf-8")
    for secret in ("hunter2", "bob:", "tok-0123456789-secret", str(Path.home()), str(tmp_path)):
        assert secret not in text, secret
    assert "base_url: https://llm.example.com/v1" in text and "cassette: <local>/tapes.sqlite" in text


def test_a_run_without_rows_needs_allow_empty(arenas_run: Path, run_copy: RunCopy, tmp_path: Path) -> None:
    run = run_copy(arenas_run)
    parquet = run / "arenas.parquet"
    pq.write_table(pq.read_table(parquet).slice(0, 0), parquet)
    code, output = export(run, tmp_path / "o1")
    assert code == 2 and "0 rows" in output and "--allow-empty" in output
    assert not (tmp_path / "o1").exists()
    code, output = export(run, tmp_path / "o2", "--allow-empty")
    assert code == 0 and "0 rows" in output, output


def test_refuses_runs_that_cannot_be_published(
    trajectories_run: Path, run_copy: RunCopy, tmp_path: Path
) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    code, output = export(empty, tmp_path / "o1")
    assert code == 2 and "not a pipeline run directory" in output
    code, output = export(tmp_path / "missing", tmp_path / "o1")
    assert code == 2 and "no such run directory" in output

    run = run_copy(trajectories_run)
    code, output = export(run, run / "hf")
    assert code == 0, output  # a folder inside the run is fine …
    code, output = export(run, run, "--force")
    assert code == 2 and "holds the run itself" in output  # … the run itself never is

    (run / "sft" / "sft.parquet").unlink()
    code, output = export(run, tmp_path / "o2")
    assert code == 2 and "sft.parquet: missing" in output

    path = run / "rollout" / "manifest.json"
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "status": "stopped: budget"}))
    code, output = export(run, tmp_path / "o3")
    assert code == 2 and "not finished (status: stopped: budget)" in output
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()
