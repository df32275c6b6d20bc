"""``astra export verl``: arenas as verl 0.9.1 training data, played by an agent loop of ours.

verl's own ``ToolAgentLoop`` cannot play an arena faithfully: it creates, executes and releases a tool per
call (no episode state), never asks a tool for its reward, cuts tool output to 256 characters and drops
nested parameter schemas. So the export points verl at :mod:`astra_synth.export.verl_agent_loop`, whose
loop plays each episode on ``astra arenas serve`` (tools run in our sandbox, the F1 is our ``ArenaEnv``'s)
and whose ``compute_score`` hands that F1 to verl's reward hook. The folder holds the parquet rows (one file
per arena file, the server's split names), the agent-loop registry file and the command-line overrides.

verl 0.9.1 pins transformers < 5.11, so it cannot share our venv: the check that the rows load with verl's
``RLHFDataset`` and that its agent loop plays an arena runs in a venv of its own (:func:`ensure_verl_venv`,
built once per machine from ``verl_constraints.txt``, CPU torch).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml
from pydantic import Field

from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.remote import ws_url
from astra_synth.config import StrictModel
from astra_synth.errors import InputError
from astra_synth.venvs import PinnedVenv, SideVenv, VenvError, run_step

VERL_VERSION = "0.9.1"
DATA_SOURCE = "astra_arenas"
AGENT_NAME = "astra_arena"
LOOP_MODULE = "astra_synth.export.verl_agent_loop"
AGENT_LOOP_FILE = "agent_loop.yaml"
OVERRIDES_FILE = "verl_overrides.txt"
LOCK_FILE = Path(__file__).with_name("verl_constraints.txt")


class VerlVenv(PinnedVenv):
    """A ready verl venv (the marker written after a successful install)."""

    verl_version: str


class VerlExport(StrictModel):
    """What ``astra export verl`` wrote."""

    out: Path
    rows: dict[str, int] = Field(description="Rows per split (parquet file stem).")
    files: list[str] = Field(description="Files written, relative to ``out``.")
    env_url: str


def _check_import(venv: VerlVenv, where: str) -> None:
    probe = "import verl.experimental.agent_loop.agent_loop, verl.utils.dataset.rl_dataset"
    run_step([str(venv.python), "-c", probe], f"{where}: import verl", error=VenvError)


_VENV = SideVenv(
    "verl-venv",
    LOCK_FILE,
    "astra-verl-venv.json",
    VerlVenv,
    "the verl venv",
    VenvError,
    {"verl_version": VERL_VERSION},
    check=_check_import,
)
ensure_verl_venv = _VENV.ensure
"""The verl venv (CPU torch), built once per machine under the cache; raises :class:`VenvError`."""


def verl_rows(arenas: list[Arena], split: str, seed: int = 0) -> list[dict[str, Any]]:
    """One verl row per arena: the prompt, the arena's final answer as ground truth, and in ``extra_info``
    the arena id and the seed that orders its tools (what the agent loop resets the server with)."""
    return [
        {
            "data_source": DATA_SOURCE,
            "agent_name": AGENT_NAME,
            "prompt": [{"role": m.role, "content": m.content} for m in arena.messages],
            "ability": "tool_use",
            "reward_model": {"style": "rule", "ground_truth": arena.final_answer},
            "extra_info": {"split": split, "index": index, "arena_id": arena.id, "seed": seed},
        }
        for index, arena in enumerate(arenas)
    ]


def overrides(out: Path, splits: list[str]) -> list[str]:
    """verl's command-line overrides that wire the export in (data files, agent loop, reward hook). The
    ``train`` split (else the first) trains; the others validate (none: the train split does)."""
    train = "train" if "train" in splits else splits[0]
    val = ",".join(str(out / "data" / f"{s}.parquet") for s in [s for s in splits if s != train] or [train])
    return [
        f"data.train_files={out / 'data' / f'{train}.parquet'}",
        f"data.val_files=[{val}]",
        "data.return_raw_chat=True",
        "actor_rollout_ref.rollout.mode=async",
        f"actor_rollout_ref.rollout.agent.agent_loop_config_path={out / AGENT_LOOP_FILE}",
        f"actor_rollout_ref.rollout.agent.default_agent_loop={AGENT_NAME}",
        f"reward.custom_reward_function.path=pkg://{LOOP_MODULE}",
        "reward.custom_reward_function.name=compute_score",
    ]


def export_verl(
    arena_files: list[Path], out: Path, env_url: str, seed: int = 0, force: bool = False
) -> VerlExport:
    """Write ``out/data/<split>.parquet`` (split = arena file stem), ``agent_loop.yaml`` (our loop, talking
    to the arena server at ``env_url``) and ``verl_overrides.txt``. Serve the same arena files with
    ``astra arenas serve`` for training. Refuses a non-empty ``out`` without ``force`` and two files with
    the same stem, and a URL that is not ws://, wss://, http:// or https:// (:class:`InputError`)."""
    if not arena_files:
        raise InputError("give at least one arena file")
    try:
        ws_url(env_url)
    except ValueError as exc:
        raise InputError(f"--env-url: {exc}") from exc
    splits = {Path(f).stem: read_arenas(f) for f in arena_files}
    if len(splits) != len(arena_files):
        raise InputError("two arena files have the same name; their stems are the split names")
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} is a file, not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise InputError(f"{out} is not empty (use --force to overwrite it)")
        shutil.rmtree(out)
    out = out.resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    rows: dict[str, int] = {}
    files: list[str] = []
    for split, arenas in splits.items():
        table = pa.Table.from_pylist(verl_rows(arenas, split, seed))
        pq.write_table(table, out / "data" / f"{split}.parquet")
        rows[split] = table.num_rows
        files.append(f"data/{split}.parquet")
    loop = [{"name": AGENT_NAME, "_target_": f"{LOOP_MODULE}.ArenaAgentLoop", "env_url": env_url}]
    (out / AGENT_LOOP_FILE).write_text(yaml.safe_dump(loop, sort_keys=False), encoding="utf-8")
    (out / OVERRIDES_FILE).write_text("\n".join(overrides(out, list(splits))) + "\n", encoding="utf-8")
    files += [AGENT_LOOP_FILE, OVERRIDES_FILE]
    return VerlExport(out=out, rows=rows, files=files, env_url=env_url)
