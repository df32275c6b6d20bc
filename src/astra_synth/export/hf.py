"""``astra export hf``: a finished run as a folder ready for ``huggingface-cli upload`` / ``load_dataset``.

The Hub's layout: the card as ``README.md`` at the root, the data under ``data/`` with shard names the Hub
recognises as the ``train`` split. Only the parquet and the card go in: the run's caches, logs and config
files (which may name local paths or key variables) stay behind, and the card's config is redacted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow.parquet as pq
from pydantic import BaseModel

from astra_synth.export.card import DEFAULT_LICENSE, build_card, render_card
from astra_synth.runs.jsonl import write_bytes_atomic
from astra_synth.runs.rundir import RunDirError, open_run, require_exported

DATA_FILE = "data/train-00000-of-00001.parquet"


class HfExport(BaseModel):
    kind: str
    rows: int
    out: str
    files: list[str]


def _prepare(out: Path, run_dir: Path, force: bool) -> None:
    """An empty (or new) folder to write into; ``force`` empties one that has files, never the run."""
    resolved, run = out.resolve(), run_dir.resolve()
    if resolved == run or run.is_relative_to(resolved):
        raise RunDirError(f"{out}: refusing to export into a folder that holds the run itself")
    if out.exists() and not out.is_dir():
        raise RunDirError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise RunDirError(f"{out}: folder is not empty; pass --force to overwrite it")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)


def export_hf(
    run_dir: Path,
    out: Path,
    *,
    force: bool = False,
    license_id: str = DEFAULT_LICENSE,
    allow_empty: bool = False,
) -> HfExport:
    """Copy the run's parquet into ``out/data/`` and write the dataset card as ``out/README.md``.

    A run whose filters left no rows is refused unless ``allow_empty``: publishing it is almost always a
    mistake (the card's funnel says where the items went)."""
    run = open_run(run_dir)
    require_exported(run)
    if not allow_empty and pq.read_metadata(run.parquet).num_rows == 0:
        raise RunDirError(
            f"{run.parquet}: 0 rows (every item was filtered out; its funnel says where): "
            "pass --allow-empty to publish it anyway"
        )
    _prepare(out, run_dir, force)
    data = out / DATA_FILE
    data.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(run.parquet, data)
    card = build_card(run, data_file=DATA_FILE, license_id=license_id)
    write_bytes_atomic(out / "README.md", render_card(card).encode("utf-8"))
    return HfExport(kind=run.kind, rows=card.rows, out=str(out), files=["README.md", DATA_FILE])
