"""What kind of run a folder holds, its manifests, its exported files, and whether it is ready to publish.

Both pipelines run two resumable sub-runs in one folder, each with its own ``manifest.json``; the sub-run
manifests are the record of counts, prompt hashes and usage, so the card reads them rather than the
pipelines' summaries. The layout is fixed per pipeline (see the pipelines' module docstrings).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import ValidationError

from astra_synth.runs.manifest import ContaminationSummary, Manifest

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

    def json(self, name: str) -> Any:
        """A JSON side file of the run (``funnel.json``, ``dedupe.json`` …), or None when absent."""
        path = self.path / name
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None

    def contamination(self) -> ContaminationSummary | None:
        """The firewall's summary, wherever the export recorded it: a sub-run manifest, the report next to
        the parquet (``contamination.json``: ``{"summary": …}``), the trajectories funnel's export summary, or
        the arenas run's own ``manifest.json``."""
        for manifest in reversed(self.manifests.values()):
            if manifest.contamination is not None:
                return manifest.contamination
        report = self.parquet.parent / "contamination.json"
        funnel = self.json("funnel.json") or {}
        top = self.json("manifest.json") or {}
        for found in (
            json.loads(report.read_text(encoding="utf-8")).get("summary") if report.exists() else None,
            (funnel.get("export") or {}).get("contamination"),
            top.get("contamination"),
        ):
            if found:
                return ContaminationSummary.model_validate(found)
        return None


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
