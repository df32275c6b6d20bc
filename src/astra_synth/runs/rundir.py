"""What kind of run a folder holds, its manifests, its exported files, and whether it is ready to publish.

Both pipelines run two resumable sub-runs in one folder, each with its own ``manifest.json`` (prompt hashes,
config, usage per stage), and write one ``summary.json`` at the run root (:mod:`astra_synth.runs.summary`:
stage rows, filters, contamination, status). The layout is fixed per pipeline (see the pipelines' docstrings).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import ValidationError

from astra_synth.runs.manifest import Manifest
from astra_synth.runs.summary import RunSummary, read_summary

RunKind = Literal["trajectories", "arenas"]
# Per pipeline: its sub-runs in order, and the exported parquet (relative to the run folder).
LAYOUTS: dict[RunKind, tuple[tuple[str, ...], str]] = {
    "trajectories": (("synth", "rollout"), "sft/sft.parquet"),
    "arenas": (("qa", "synth"), "arenas.parquet"),
}


class RunDirError(ValueError):
    """A folder that is not a run, or a run that cannot be published yet; the message says which and why."""


@dataclass(frozen=True)
class RunDir:
    path: Path
    kind: RunKind
    manifests: dict[str, Manifest]  # sub-run folder → its manifest, for the sub-runs that exist, in order

    @property
    def parquet(self) -> Path:
        return self.path / LAYOUTS[self.kind][1]

    @property
    def status(self) -> str:
        """``finished`` only when every sub-run finished; else the first sub-run's status that is not."""
        expected = len(LAYOUTS[self.kind][0])
        unfinished = [m.status for m in self.manifests.values() if m.status != "finished"]
        if unfinished:
            return unfinished[0]
        return "finished" if len(self.manifests) == expected else "running"

    def summary(self) -> RunSummary:
        """The run's ``summary.json``; a ``SummaryError`` says what is wrong with it."""
        return read_summary(self.path)


def _manifest(path: Path) -> Manifest:
    try:
        return Manifest.model_validate_json(path.read_bytes())
    except ValidationError as exc:
        raise RunDirError(f"{path}: not a run manifest: {exc}") from exc


def open_run(path: Path) -> RunDir:
    """Recognise a run folder by its first sub-run's manifest; a clear error when it is none of them."""
    if not path.is_dir():
        raise RunDirError(f"{path}: no such run directory")
    for kind, (subruns, _) in LAYOUTS.items():
        first = path / subruns[0] / "manifest.json"
        if first.exists() and _manifest(first).pipeline == f"{kind}.{subruns[0]}":
            manifests = {s: _manifest(p) for s in subruns if (p := path / s / "manifest.json").exists()}
            return RunDir(path, kind, manifests)
    layouts = "; ".join(f"{k}: {s[0]}/manifest.json" for k, (s, _) in LAYOUTS.items())
    raise RunDirError(f"{path}: not a pipeline run directory (expected one of {layouts})")


def require_exported(run: RunDir) -> None:
    """Refuse a run that has not finished or whose export files are missing: a card must not describe
    half a dataset."""
    if run.status != "finished":
        raise RunDirError(
            f"{run.path}: the {run.kind} run is not finished (status: {run.status}); "
            f"resume it with `astra {run.kind} run` before exporting"
        )
    if not run.parquet.exists():
        raise RunDirError(
            f"{run.parquet}: missing; the {run.kind} run finished without writing it "
            "(trajectories: set `parquet: true` and rerun, which resumes at no cost)"
        )
