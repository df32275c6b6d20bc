"""``astra export verl``: the rows and files it writes, and verl 0.9.1 itself (in its venv) loading the rows
with its ``RLHFDataset`` and playing an arena through our agent loop on a real arena server → reward 1."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

import astra_synth
from astra_synth.arenas.records import read_arenas, write_arenas
from astra_synth.arenas.server import ArenaCorpus, ArenaServer
from astra_synth.errors import InputError
from astra_synth.export.verl import (
    AGENT_LOOP_FILE,
    AGENT_NAME,
    DATA_SOURCE,
    OVERRIDES_FILE,
    ensure_verl_venv,
    export_verl,
)
from astra_synth.sandbox import get_executor
from astra_synth.testing.policy import golden_texts
from astra_synth.testing.servers import ThreadedServer

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


def test_rows_agent_loop_and_overrides(tmp_path: Path) -> None:
    arenas = read_arenas(SAMPLE)
    out = tmp_path / "verl"
    result = export_verl([SAMPLE], out, env_url="ws://10.0.0.5:8791", seed=3)
    assert result.rows == {"arenas.sample": len(arenas)}
    rows = pq.read_table(out / "data" / "arenas.sample.parquet").to_pylist()
    assert [r["extra_info"]["arena_id"] for r in rows] == [a.id for a in arenas]
    first = rows[0]
    assert first["data_source"] == DATA_SOURCE and first["agent_name"] == AGENT_NAME
    assert first["prompt"] == [{"role": m.role, "content": m.content} for m in arenas[0].messages]
    assert first["reward_model"] == {"style": "rule", "ground_truth": arenas[0].final_answer}
    assert first["extra_info"] == {"split": "arenas.sample", "index": 0, "arena_id": arenas[0].id, "seed": 3}
    (loop,) = yaml.safe_load((out / AGENT_LOOP_FILE).read_text())
    assert loop == {
        "name": AGENT_NAME,
        "_target_": "astra_synth.export.verl_agent_loop.ArenaAgentLoop",
        "env_url": "ws://10.0.0.5:8791",
    }
    overrides = dict(line.split("=", 1) for line in (out / OVERRIDES_FILE).read_text().splitlines())
    assert overrides["data.train_files"] == str(out.resolve() / "data" / "arenas.sample.parquet")
    assert overrides["actor_rollout_ref.rollout.agent.agent_loop_config_path"] == str(
        out.resolve() / AGENT_LOOP_FILE
    )
    assert overrides["reward.custom_reward_function.path"] == "pkg://astra_synth.export.verl_agent_loop"


def test_the_train_split_trains_the_others_validate(tmp_path: Path) -> None:
    arenas = read_arenas(SAMPLE)
    for name, part in [("val", arenas[:2]), ("train", arenas[2:])]:
        write_arenas(tmp_path / f"{name}.jsonl", part)
    out = tmp_path / "verl"
    result = export_verl([tmp_path / "val.jsonl", tmp_path / "train.jsonl"], out, env_url="ws://h:8791")
    assert result.rows == {"val": 2, "train": len(arenas) - 2}
    overrides = dict(line.split("=", 1) for line in (out / OVERRIDES_FILE).read_text().splitlines())
    assert overrides["data.train_files"] == str(out.resolve() / "data" / "train.parquet")
    assert overrides["data.val_files"] == f"[{out.resolve() / 'data' / 'val.parquet'}]"


def test_refuses_a_full_folder_clashing_split_names_and_a_bad_url(tmp_path: Path) -> None:
    out = tmp_path / "verl"
    export_verl([SAMPLE], out, env_url="ws://127.0.0.1:8791")
    with pytest.raises(InputError, match="not empty"):
        export_verl([SAMPLE], out, env_url="ws://127.0.0.1:8791")
    (tmp_path / "other").mkdir()
    twin = tmp_path / "other" / SAMPLE.name
    write_arenas(twin, read_arenas(SAMPLE)[:1])
    with pytest.raises(InputError, match="same name"):
        export_verl([SAMPLE, twin], out, env_url="ws://127.0.0.1:8791", force=True)
    result = export_verl([twin], out, env_url="ws://127.0.0.1:8791", force=True)
    assert result.rows == {"arenas.sample": 1}
    with pytest.raises(InputError, match="--env-url: not a ws://"):
        export_verl([twin], tmp_path / "other-out", env_url="127.0.0.1:8791")


@pytest.fixture(scope="module")
def server() -> Iterator[ThreadedServer]:
    with (
        get_executor("forkserver") as executor,
        ThreadedServer(
            ArenaServer(ArenaCorpus({"sample": read_arenas(SAMPLE)}), executor, token="").app()
        ) as running,
    ):
        yield running


@pytest.mark.slow
def test_verl_loads_the_rows_and_its_agent_loop_plays_an_arena_to_reward_one(
    tmp_path: Path, server: ThreadedServer
) -> None:
    from astra_synth.training.models import embedded_checkpoint

    venv = ensure_verl_venv()  # built once per machine (`make verl-venv`)
    arena = read_arenas(SAMPLE)[0]
    arenas_file = tmp_path / "arenas.jsonl"
    write_arenas(arenas_file, [arena])
    export = export_verl([arenas_file], tmp_path / "verl", env_url=server.ws_url)
    golden = golden_texts(arena)
    name = arena.tools[0].function.name
    broken = f'<tool_call>\n{{"name": "{name}", "arguments": {{'  # cut off: its arguments are not JSON
    scripts = tmp_path / "scripts.json"
    scripts.write_text(json.dumps([golden, [broken + "<|im_end|>", *golden]]))
    # astra_synth alone on the verl venv's path (our venv's site-packages would shadow verl's pins)
    (tmp_path / "path").mkdir()
    (tmp_path / "path" / "astra_synth").symlink_to(Path(astra_synth.__file__).parent)
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "path")}
    command = [str(venv.python), "-m", "astra_synth.testing.verl_rollout", str(export.out), str(arenas_file)]
    command += [str(embedded_checkpoint()), "--scripts", str(scripts)]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    played = json.loads(proc.stdout.strip().splitlines()[-1])
    assert played["rows"] == 1
    assert {"raw_prompt", "extra_info", "reward_model", "data_source", "agent_name"} <= set(
        played["row_keys"]
    )
    perfect, sloppy = played["episodes"]
    # verl's reward loop called the exported compute_score and wrote the F1 into rm_scores
    assert perfect["rm_score"] == pytest.approx(1.0)
    assert perfect["reward_extra_info"] == {
        "score": pytest.approx(1.0),
        "recall": 1.0,
        "precision": pytest.approx(1.0),
    }
    assert perfect["turns_left"] == 0  # every golden turn was asked for, the answer ended the episode
    assert perfect["tool_tokens"] > 0 and perfect["model_tokens"] > 0
    assert "<tool_response>" in perfect["response_text"]
    # a broken call reaches the server, is answered with an error and costs precision, not recall
    assert sloppy["calls"] == perfect["calls"] + 1
    assert sloppy["reward_extra_info"]["recall"] == 1.0 and sloppy["rm_score"] < 1.0
    assert "not valid JSON" in sloppy["response_text"]
