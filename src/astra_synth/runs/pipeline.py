"""The pipeline runner: ordered stages, bounded async concurrency, resumable after ``kill -9`` at any point.

Stages run one after another; stage N's ok records, in input order, are stage N+1's inputs. Within a stage a
fixed pool of worker tasks pulls pending items, so hundreds of slow (LLM-bound) items stay in flight
without one task per item. Every outcome goes to the run directory (``store.py``); a resume recomputes the
item ids, skips what is already recorded and retries errors. Outputs are ordered by input, never by
completion, so a resumed run ends with the same ``output.jsonl`` as an uninterrupted one.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import traceback
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field, ValidationError

from astra_synth import __version__
from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.ledger import BudgetExceeded, Ledger, StageUsage, item_usage
from astra_synth.runs.ids import child_id, item_id
from astra_synth.runs.jsonl import describe_errors, read_jsonl
from astra_synth.runs.manifest import Manifest, RunStatus, StageCounts, StageManifest, utc_now
from astra_synth.runs.progress import RunProgress, StageBar
from astra_synth.runs.stage import Rejected, Stage, StageContext
from astra_synth.runs.store import (
    INPUT_STAGE,
    ErrorRecord,
    OkRecord,
    Outcome,
    RejectRecord,
    RunStore,
    StageStore,
)
from astra_synth.sandbox.executor import ToolExecutor

if TYPE_CHECKING:
    from astra_synth.llm.client import LLMClient

log = logging.getLogger(__name__)

_STAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_TRACEBACK_FRAMES = 8
_TRACEBACK_CHARS = 4000
_PROGRESS_INTERVAL_S = 0.2


class RunOptions(StrictModel):
    """How to run, not what. Only ``seed`` changes results (a resume must keep it); ``retry_rejected``
    decides whether earlier verdicts are revisited."""

    seed: int = 0
    concurrency: int = Field(default=64, ge=1, description="Items in flight per stage.")
    retry_rejected: bool = Field(default=False, description="Re-run items rejected by earlier sessions.")
    flush_interval_s: float = Field(default=0.5, gt=0, description="Longest a finished item waits for fsync.")
    manifest_interval_s: float = Field(default=2.0, gt=0, description="How often manifest.json is rewritten.")
    progress: bool | None = Field(default=None, description="Progress bars; None = only on a terminal.")


class RunResult(BaseModel):
    status: RunStatus
    outputs: list[OkRecord]
    manifest: Manifest


class RunMismatch(ValueError):
    """The run directory belongs to another pipeline or seed; resuming into it would mix results."""


@dataclass(frozen=True)
class _Item:
    key: str
    parent_id: str | None
    data: Any


class Pipeline:
    """Ordered stages with a name; ``await pipeline.run(inputs, run_dir)`` runs or resumes it."""

    def __init__(
        self,
        name: str,
        stages: Sequence[Stage[Any, Any]],
        *,
        config: BaseModel | None = None,
        stage_configs: Mapping[str, BaseModel] | None = None,
    ) -> None:
        names = [s.name for s in stages]
        if not stages:
            raise ValueError("a pipeline needs at least one stage")
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        for n in names:
            if n == INPUT_STAGE or not _STAGE_NAME.match(n):
                raise ValueError(f"stage name {n!r} cannot name a run sub-directory")
        unknown = set(stage_configs or {}) - set(names)
        if unknown:
            raise ValueError(f"configs for unknown stages: {sorted(unknown)}")
        self.name = name
        self.stages = list(stages)
        self.config = config
        self.stage_configs = dict(stage_configs or {})

    async def run(
        self,
        inputs: Path | Sequence[BaseModel],
        run_dir: Path,
        options: RunOptions | None = None,
        *,
        llm: LLMClient | None = None,
        sandbox: ToolExecutor | None = None,
        ledger: Ledger | None = None,
    ) -> RunResult:
        """Run into ``run_dir`` (resuming whatever is there). A budget stop returns normally with status
        ``stopped: budget``; any other exception marks the manifest ``failed`` and propagates."""
        options = options or RunOptions()
        if ledger is None and llm is not None:
            ledger = llm.ledger
        with RunStore(Path(run_dir), max_age_s=options.flush_interval_s) as store:
            session = _Session(self, store, options, llm, sandbox, ledger)
            with RunProgress(options.progress) as progress:
                return await session.run(inputs, progress)


class _Session:
    """One start or resume of a pipeline in one run directory."""

    def __init__(
        self,
        pipeline: Pipeline,
        store: RunStore,
        options: RunOptions,
        llm: LLMClient | None,
        sandbox: ToolExecutor | None,
        ledger: Ledger | None,
    ) -> None:
        self.pipeline = pipeline
        self.store = store
        self.options = options
        self.llm = llm
        self.sandbox = sandbox
        self.ledger = ledger
        self.budget_hit = False
        self.manifest = self._begin()
        # What earlier sessions (and earlier users of a shared ledger) spent, so this session adds its delta.
        self._usage_before = {s.name: s.usage.model_copy() for s in self.manifest.stages}
        self._ledger_start = ledger.by_stage() if ledger else {}
        self._seconds = {s.name: s.seconds for s in self.manifest.stages}
        self._stage_started: dict[str, float] = {}
        self._last_manifest = 0.0

    def _begin(self) -> Manifest:
        p = self.pipeline
        old = self.store.load_manifest()
        if old is not None and (old.pipeline != p.name or old.seed != self.options.seed):
            raise RunMismatch(
                f"{self.store.dir} holds pipeline {old.pipeline!r} with seed {old.seed}; "
                f"cannot resume it as {p.name!r} with seed {self.options.seed} (use a fresh run dir)"
            )
        previous = {s.name: s for s in old.stages} if old else {}
        stages = []
        for stage in p.stages:
            before = previous.get(stage.name)
            hashes = getattr(stage, "prompt_hashes", None)
            cfg = p.stage_configs.get(stage.name)
            stages.append(
                StageManifest(
                    name=stage.name,
                    version=stage.version,
                    prompt_hashes=dict(hashes()) if callable(hashes) else {},
                    config=cfg.model_dump(mode="json") if cfg is not None else None,
                    counts=before.counts if before else StageCounts(),
                    seconds=before.seconds if before else 0.0,
                    usage=before.usage if before else StageUsage(),
                )
            )
        manifest = Manifest(
            pipeline=p.name,
            package_version=__version__,
            seed=self.options.seed,
            config=p.config.model_dump(mode="json") if p.config is not None else None,
            created_at=old.created_at if old else utc_now(),
            sessions=(old.sessions if old else 0) + 1,
            stages=stages,
        )
        self.store.output_path.unlink(missing_ok=True)  # stale until this session finishes
        self.store.save_manifest(manifest)
        return manifest

    async def run(self, inputs: Path | Sequence[BaseModel], progress: RunProgress) -> RunResult:
        status: RunStatus = "finished"
        outputs: list[OkRecord] = []
        try:
            items: list[tuple[str | None, Any]] = self._read_inputs(inputs)
            for index, stage in enumerate(self.pipeline.stages):
                keyed = _dedupe(_Item(item_id(stage.name, stage.version, d), p, d) for p, d in items)
                stage_store = self.store.stage(stage.name)
                await self._run_stage(stage, stage_store, keyed, progress.stage(stage.name, len(keyed)))
                if self.budget_hit:
                    status = "stopped: budget"
                    break
                # Inputs order the outputs; parent ids come from this session's inputs so they never depend
                # on which session happened to compute an item first.
                produced = [
                    rec
                    if rec.parent_id == it.parent_id
                    else rec.model_copy(update={"parent_id": it.parent_id})
                    for it in keyed
                    for rec in stage_store.ok.get(it.key, [])
                ]
                if index == len(self.pipeline.stages) - 1:
                    outputs = produced
                items = [(rec.id, rec.data) for rec in produced]
        except BaseException as exc:
            self.manifest.status = "failed"
            self.manifest.error = f"{type(exc).__name__}: {exc}"
            self._save_manifest()
            raise
        if status == "finished":
            self.store.write_output(outputs)
            errors = sum(s.counts.errors for s in self.manifest.stages)
            if errors:
                log.warning("%d item(s) failed with errors (see errors.jsonl); resume to retry them", errors)
        self.manifest.status = status
        self._save_manifest()
        return RunResult(status=status, outputs=outputs, manifest=self.manifest)

    def _read_inputs(self, inputs: Path | Sequence[BaseModel]) -> list[tuple[str | None, Any]]:
        if not isinstance(inputs, Path):
            return [(None, m.model_dump(mode="json")) for m in inputs]
        model = self.pipeline.stages[0].input_model
        read = read_jsonl(inputs, model)
        for lineno, raw, error in read.errors:
            log.warning("%s", error)
            self.store.record_input_reject(
                RejectRecord(
                    id=item_id(INPUT_STAGE, str(lineno), raw),
                    stage=INPUT_STAGE,
                    reason="invalid_input",
                    detail=str(error),
                )
            )
        self.manifest.input_rejects = len(read.errors)
        return [(None, m.model_dump(mode="json")) for _, m in read.items]

    async def _run_stage(
        self, stage: Stage[Any, Any], store: StageStore, items: list[_Item], bar: StageBar
    ) -> None:
        entry = self._entry(stage.name)
        counts = entry.counts = _count(store, items)
        pending = iter(
            [it for it in items if not store.is_done(it.key, retry_rejected=self.options.retry_rejected)]
        )
        bar.update(counts, self._usage(stage.name).total_tokens)
        self._stage_started[stage.name] = time.monotonic()

        async def worker() -> None:
            for item in pending:  # one shared iterator: each item goes to exactly one worker
                if self.budget_hit:
                    return
                before = store.outcome(item.key)
                await self._process(stage, store, item)
                _shift(counts, before, store.outcome(item.key), len(store.ok.get(item.key, ())))

        async def ticker() -> None:
            """Flushes, progress and manifest on a clock, so the per-item path stays short."""
            while True:
                await asyncio.sleep(min(self.options.flush_interval_s, _PROGRESS_INTERVAL_S))
                store.flush_if_due()
                bar.update(counts, self._usage(stage.name).total_tokens)
                if time.monotonic() - self._last_manifest >= self.options.manifest_interval_s:
                    self._save_manifest()

        workers = [asyncio.create_task(worker()) for _ in range(self.options.concurrency)]
        tick = asyncio.create_task(ticker())
        try:
            await asyncio.gather(*workers)
        finally:
            tick.cancel()
            for task in workers:
                task.cancel()
            await asyncio.gather(tick, *workers, return_exceptions=True)
            store.flush()
            bar.update(counts, self._usage(stage.name).total_tokens)
            self._close_stage(stage.name)

    async def _process(self, stage: Stage[Any, Any], store: StageStore, item: _Item) -> None:
        """Run one item and record exactly one outcome, or none when the budget ran out mid-item."""
        try:
            value = stage.input_model.model_validate(item.data)
        except ValidationError as exc:
            self._reject(stage, store, item, "invalid_input", describe_errors(exc))
            return
        ctx = StageContext(
            stage=stage.name,
            item_id=item.key,
            seed=self.options.seed,
            llm=self.llm,
            sandbox=self.sandbox,
            config=self.pipeline.stage_configs.get(stage.name),
        )
        # Only the stage's own failures are caught here; a failing run directory (disk full) ends the run.
        spent = StageUsage()
        try:
            with item_usage() as spent:
                result = await stage.process(value, ctx)
            outcome = result if isinstance(result, Rejected) else _ok_records(stage, item, result)
        except BudgetExceeded as exc:
            if not self.budget_hit:
                log.warning("stopping: %s", exc)
            self.budget_hit = True  # abandoned: nothing recorded, the next session redoes it
        except Rejection as exc:
            self._reject(stage, store, item, exc.reason, exc.detail, spent)
        except Exception as exc:
            frames = "".join(traceback.format_exception(exc, limit=-_TRACEBACK_FRAMES))
            store.record_error(
                ErrorRecord(
                    id=item.key,
                    stage=stage.name,
                    parent_id=item.parent_id,
                    error=type(exc).__name__,
                    message=str(exc),
                    traceback=frames[-_TRACEBACK_CHARS:],
                )
            )
        else:
            if isinstance(outcome, Rejected):
                self._reject(stage, store, item, outcome.reason, outcome.detail, spent)
            else:
                store.record_ok(item.key, outcome)

    def _reject(
        self,
        stage: Stage[Any, Any],
        store: StageStore,
        item: _Item,
        reason: str,
        detail: str,
        spent: StageUsage | None = None,
    ) -> None:
        spent = spent or StageUsage()
        store.record_reject(
            RejectRecord(
                id=item.key,
                stage=stage.name,
                reason=reason,
                detail=detail,
                parent_id=item.parent_id,
                llm_calls=spent.calls,
                llm_tokens=spent.total_tokens,
            )
        )

    # --- manifest bookkeeping -------------------------------------------------------------------------------

    def _entry(self, name: str) -> StageManifest:
        entry = self.manifest.stage(name)
        if entry is None:  # cannot happen: _begin lists every stage
            raise KeyError(name)
        return entry

    def _usage(self, name: str) -> StageUsage:
        """This stage's usage over all sessions: earlier sessions plus this session's ledger delta."""
        total = self._usage_before.get(name, StageUsage()).model_copy()
        if self.ledger is None:
            return total
        now = self.ledger.by_stage().get(name, StageUsage())
        start = self._ledger_start.get(name, StageUsage())
        for field in StageUsage.model_fields:
            setattr(total, field, getattr(total, field) + getattr(now, field) - getattr(start, field))
        return total

    def _close_stage(self, name: str) -> None:
        self._seconds[name] = self._elapsed(name)
        self._stage_started.pop(name, None)
        self._save_manifest()

    def _elapsed(self, name: str) -> float:
        started = self._stage_started.get(name)
        return self._seconds.get(name, 0.0) + (time.monotonic() - started if started is not None else 0.0)

    def _save_manifest(self) -> None:
        for entry in self.manifest.stages:
            entry.usage = self._usage(entry.name)
            entry.seconds = round(self._elapsed(entry.name), 3)
        self.manifest.updated_at = utc_now()
        self.store.save_manifest(self.manifest)
        self._last_manifest = time.monotonic()


def _ok_records(stage: Stage[Any, Any], item: _Item, result: Any) -> list[OkRecord]:
    """The records for a stage's return value; anything but models (or a non-empty list of them) is a bug
    in the stage and raises, so it is recorded as an error."""
    if isinstance(result, list):
        if not result:
            raise Rejection("no_output", f"{stage.name} returned an empty list")
        if not all(isinstance(r, BaseModel) and not isinstance(r, Rejected) for r in result):
            raise TypeError(f"{stage.name}.process returned a list with non-model items")
        return [
            OkRecord(
                id=child_id(item.key, i),
                parent_id=item.parent_id,
                stage=stage.name,
                version=stage.version,
                data=r.model_dump(mode="json"),
                of=len(result),
            )
            for i, r in enumerate(result)
        ]
    if not isinstance(result, BaseModel):
        raise TypeError(f"{stage.name}.process returned {type(result).__name__}, expected a pydantic model")
    data = result.model_dump(mode="json")
    return [
        OkRecord(id=item.key, parent_id=item.parent_id, stage=stage.name, version=stage.version, data=data)
    ]


def _dedupe(items: Iterable[_Item]) -> list[_Item]:
    """Identical inputs are one item (same id); the first occurrence, in input order, is kept."""
    seen: dict[str, _Item] = {}
    for it in items:
        seen.setdefault(it.key, it)
    return list(seen.values())


def _count(store: StageStore, items: list[_Item]) -> StageCounts:
    counts = StageCounts(inputs=len(items))
    for it in items:
        _shift(counts, None, store.outcome(it.key), len(store.ok.get(it.key, ())))
    return counts


def _shift(counts: StageCounts, before: Outcome | None, after: Outcome | None, outputs: int) -> None:
    """Move one item between outcome columns (outcomes only ever get stronger: error < rejected < ok)."""
    if before == after:
        return
    for outcome, delta in ((before, -1), (after, 1)):
        if outcome == "ok":
            counts.ok += delta
            counts.outputs += delta * outputs
        elif outcome == "rejected":
            counts.rejected += delta
        elif outcome == "error":
            counts.errors += delta
