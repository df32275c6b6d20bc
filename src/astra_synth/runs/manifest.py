"""``manifest.json``: what a run is (config, versions, prompt hashes) and how far it got (counts, time, cost).

It is rewritten atomically as the run goes, so it is always a complete document; after ``kill -9`` it still
says ``running``, which is how a resume (or a reader) tells an interrupted run from a finished one. Usage and
time add up across resumes: each session adds what it spent to what the previous sessions recorded.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from astra_synth.config import StrictModel
from astra_synth.llm.ledger import StageUsage

RunStatus = Literal["running", "finished", "stopped: budget", "failed"]
MANIFEST_SCHEMA_VERSION = 1


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class StageCounts(BaseModel):
    """Per stage, counted over distinct item ids of the current inputs: each item is in exactly one of
    ok / rejected / errors, or still pending."""

    inputs: int = 0
    ok: int = 0
    rejected: int = 0
    errors: int = 0
    outputs: int = Field(default=0, description="Records produced: fan-out stages produce several per item.")


class StageManifest(BaseModel):
    name: str
    version: str
    prompt_hashes: dict[str, str] = Field(default_factory=dict)
    config: dict[str, Any] | None = None
    counts: StageCounts = Field(default_factory=StageCounts)
    seconds: float = 0.0
    usage: StageUsage = Field(default_factory=StageUsage)


class ContaminationSummary(BaseModel):
    """What the benchmark-contamination firewall did to a run's published set (kept in ``summary.json``)."""

    checked: int = 0
    dropped: int = 0
    by_reason: dict[str, int] = Field(default_factory=dict, description="Dropped items per reason.")
    benchmarks: list[str] = Field(default_factory=list, description="Benchmark sources compared against.")
    method: str = Field(default="", description="Text similarity used: embedder id, or 'ngram'.")
    thresholds: dict[str, float] = Field(default_factory=dict)


class Manifest(StrictModel):
    schema_version: int = MANIFEST_SCHEMA_VERSION
    pipeline: str
    package_version: str
    seed: int
    status: RunStatus = "running"
    error: str | None = None
    config: dict[str, Any] | None = None
    created_at: str = Field(default_factory=utc_now)
    updated_at: str = Field(default_factory=utc_now)
    sessions: int = Field(default=0, description="How many times the run was started or resumed.")
    input_rejects: int = 0
    stages: list[StageManifest] = Field(default_factory=list)
    contamination: ContaminationSummary | None = Field(
        default=None, description="Written here by runs before summary.json; now only read from old runs."
    )

    def stage(self, name: str) -> StageManifest | None:
        return next((s for s in self.stages if s.name == name), None)
