"""The runner with pure stages: ordering, outcomes, resume, retries, budget stop, manifest."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from astra_synth.config import BudgetConfig
from astra_synth.errors import Rejection
from astra_synth.llm.ledger import Ledger
from astra_synth.runs.pipeline import Pipeline, RunMismatch, RunOptions
from astra_synth.runs.stage import Rejected, StageContext


class Num(BaseModel):
    n: int


class Text(BaseModel):
    text: str


class Jitter:
    """n -> n * 10 after a seeded random sleep, so completion order differs from input order."""

    name = "jitter"
    version = "1"
    input_model = Num

    def __init__(self) -> None:
        self.calls = 0

    async def process(self, item: Num, ctx: StageContext) -> Num:
        self.calls += 1
        await asyncio.sleep(ctx.rng.random() * 0.01)
        return Num(n=item.n * 10)

    def prompt_hashes(self) -> dict[str, str]:
        return {"jitter.md": "abc123"}


class Split:
    """Fan-out into two; multiples of 30 are rejected, 70 raises a Rejection, 110 yields nothing."""

    name = "split"
    version = "1"
    input_model = Num

    async def process(self, item: Num, ctx: StageContext) -> list[Text] | Rejected:
        if item.n == 70:
            raise Rejection("lucky", "seven")
        if item.n == 110:
            return []
        if item.n % 30 == 0:
            return Rejected(reason="divisible", detail=f"{item.n} % 30 == 0")
        return [Text(text=f"{item.n}a"), Text(text=f"{item.n}b")]


class Flaky:
    """Raises for the items in ``fail`` (until they are removed): a stand-in for a transient bug."""

    name = "flaky"
    version = "1"
    input_model = Text

    def __init__(self, fail: set[str]) -> None:
        self.fail = fail
        self.seen: list[str] = []

    async def process(self, item: Text, ctx: StageContext) -> Text:
        self.seen.append(item.text)
        if item.text in self.fail:
            raise ValueError(f"transient failure on {item.text}")
        return Text(text=item.text.upper())


class Config(BaseModel):
    threshold: float = 0.5


def _pipeline(*stages: Any) -> Pipeline:
    return Pipeline(
        "demo", list(stages), config=Config(), stage_configs={stages[0].name: Config(threshold=0.9)}
    )


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _opts(**kw: Any) -> RunOptions:
    return RunOptions(progress=False, **kw)


async def test_outputs_follow_input_order_and_outcomes_are_recorded(tmp_path: Path) -> None:
    inputs = [Num(n=n) for n in range(1, 13)]
    result = await _pipeline(Jitter(), Split()).run(inputs, tmp_path, _opts(concurrency=8))

    assert result.status == "finished"
    expected = [f"{n * 10}{s}" for n in range(1, 13) if n * 10 % 30 and n not in (7, 11) for s in "ab"]
    assert [r.data["text"] for r in result.outputs] == expected
    assert [r.of for r in result.outputs] == [2] * len(expected)
    assert _lines(tmp_path / "output.jsonl") == [r.model_dump(mode="json") for r in result.outputs]
    # The first stage's records are in completion order on disk, but every record names its parent.
    jitter_ok = {r["id"]: r for r in _lines(tmp_path / "jitter" / "ok.jsonl")}
    assert all(jitter_ok[r.parent_id]["data"]["n"] * 1 == int(r.data["text"][:-1]) for r in result.outputs)

    rejects = {r["detail"]: r for r in _lines(tmp_path / "split" / "rejects.jsonl")}
    assert {r["reason"] for r in rejects.values()} == {"divisible", "lucky", "no_output"}
    assert len(rejects) == 6  # 30, 60, 90, 120, 70, 110
    assert all(r["stage"] == "split" and r["parent_id"] in jitter_ok for r in rejects.values())
    assert not (tmp_path / "split" / "errors.jsonl").read_text()

    counts = {s.name: s.counts for s in result.manifest.stages}
    assert counts["jitter"].model_dump() == {
        "inputs": 12,
        "ok": 12,
        "rejected": 0,
        "errors": 0,
        "outputs": 12,
    }
    assert counts["split"].model_dump() == {"inputs": 12, "ok": 6, "rejected": 6, "errors": 0, "outputs": 12}


async def test_a_finished_run_resumes_to_no_work_and_the_same_output(tmp_path: Path) -> None:
    jitter = Jitter()
    pipeline = _pipeline(jitter, Split())
    inputs = [Num(n=n) for n in range(20)]
    await pipeline.run(inputs, tmp_path, _opts())
    first = (tmp_path / "output.jsonl").read_bytes()
    assert jitter.calls == 20

    result = await pipeline.run(inputs, tmp_path, _opts())
    assert jitter.calls == 20  # nothing recomputed
    assert (tmp_path / "output.jsonl").read_bytes() == first
    assert result.manifest.sessions == 2
    assert len(_lines(tmp_path / "jitter" / "ok.jsonl")) == 20  # nothing recorded twice


async def test_errors_are_recorded_then_retried_on_resume(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = Flaky(fail={"20a", "40b"})
    pipeline = _pipeline(Jitter(), Split(), flaky)
    inputs = [Num(n=n) for n in (1, 2, 4)]

    result = await pipeline.run(inputs, tmp_path, _opts())
    assert result.status == "finished"
    assert [r.data["text"] for r in result.outputs] == ["10A", "10B", "20B", "40A"]
    errors = _lines(tmp_path / "flaky" / "errors.jsonl")
    assert {e["error"] for e in errors} == {"ValueError"}
    assert {e["message"] for e in errors} == {"transient failure on 20a", "transient failure on 40b"}
    assert all("raise ValueError" in e["traceback"] for e in errors)
    assert result.manifest.stage("flaky").counts.errors == 2  # type: ignore[union-attr]
    assert "2 item(s) failed with errors" in caplog.text

    flaky.fail.clear()
    flaky.seen.clear()
    result = await pipeline.run(inputs, tmp_path, _opts())
    assert sorted(flaky.seen) == ["20a", "40b"]  # only the errored items ran again
    assert [r.data["text"] for r in result.outputs] == ["10A", "10B", "20A", "20B", "40A", "40B"]
    counts = result.manifest.stage("flaky").counts  # type: ignore[union-attr]
    assert (counts.ok, counts.errors) == (6, 0)


async def test_retry_rejected_reruns_rejections_and_the_old_verdict_no_longer_counts(tmp_path: Path) -> None:
    class Gate:
        name = "gate"
        version = "1"
        input_model = Num

        def __init__(self) -> None:
            self.open = False
            self.calls = 0

        async def process(self, item: Num, ctx: StageContext) -> Num | Rejected:
            self.calls += 1
            return item if self.open or item.n % 2 else Rejected(reason="closed")

    gate = Gate()
    pipeline = Pipeline("gated", [gate])
    inputs = [Num(n=n) for n in range(6)]
    first = await pipeline.run(inputs, tmp_path, _opts())
    assert [r.data["n"] for r in first.outputs] == [1, 3, 5]

    gate.open = True
    await pipeline.run(inputs, tmp_path, _opts())
    assert gate.calls == 6  # a plain resume does not revisit verdicts

    result = await pipeline.run(inputs, tmp_path, _opts(retry_rejected=True))
    assert gate.calls == 9
    assert [r.data["n"] for r in result.outputs] == list(range(6))
    counts = result.manifest.stage("gate").counts  # type: ignore[union-attr]
    assert (counts.ok, counts.rejected) == (6, 0)


async def test_a_version_bump_recomputes_the_stage(tmp_path: Path) -> None:
    jitter = Jitter()
    await Pipeline("p", [jitter]).run([Num(n=1)], tmp_path, _opts())
    jitter.version = "2"
    result = await Pipeline("p", [jitter]).run([Num(n=1)], tmp_path, _opts())
    assert jitter.calls == 2
    assert [r.version for r in result.outputs] == ["2"]


async def test_bad_input_lines_are_rejected_with_location_and_the_rest_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    source = tmp_path / "in.jsonl"
    source.write_text('{"n": 1}\n{"n": "two"}\n{"n": 3\n{"n": 4}\n')
    run_dir = tmp_path / "run"
    pipeline = Pipeline("p", [Jitter()])
    result = await pipeline.run(source, run_dir, _opts())
    assert [r.data["n"] for r in result.outputs] == [10, 40]
    rejects = _lines(run_dir / "input" / "rejects.jsonl")
    assert [r["stage"] for r in rejects] == ["input", "input"]
    assert rejects[0]["detail"].startswith(f"{source}:2: ") and "field 'n'" in rejects[0]["detail"]
    assert rejects[1]["detail"].startswith(f"{source}:3: invalid JSON")
    assert f"{source}:2:" in caplog.text
    assert result.manifest.input_rejects == 2

    await pipeline.run(source, run_dir, _opts())
    assert len(_lines(run_dir / "input" / "rejects.jsonl")) == 2


async def test_stage_inputs_are_validated_and_wrong_return_types_are_errors(tmp_path: Path) -> None:
    class Wrong:
        name = "wrong"
        version = "1"
        input_model = Num

        async def process(self, item: Num, ctx: StageContext) -> Any:
            return {"n": item.n} if item.n else [Rejected(reason="x")]

    result = await Pipeline("p", [Split(), Wrong()]).run([Num(n=1), Num(n=0)], tmp_path, _opts())
    rejects = _lines(tmp_path / "wrong" / "rejects.jsonl")
    assert {r["reason"] for r in rejects} == {"invalid_input"}  # Text records do not fit Num
    assert "field 'n'" in rejects[0]["detail"]
    assert result.outputs == []

    result = await Pipeline("q", [Wrong()]).run([Num(n=1), Num(n=0)], tmp_path / "q", _opts())
    errors = _lines(tmp_path / "q" / "wrong" / "errors.jsonl")
    assert {e["error"] for e in errors} == {"TypeError"}
    assert result.manifest.stages[0].counts.errors == 2


async def test_budget_stop_keeps_finished_work_and_a_resume_completes_it(tmp_path: Path) -> None:
    class Spender:
        """Books one call per item in the ledger, checking the cap first as the LLM client does."""

        name = "spend"
        version = "1"
        input_model = Num

        def __init__(self, ledger: Ledger) -> None:
            self.ledger = ledger

        async def process(self, item: Num, ctx: StageContext) -> Num:
            self.ledger.check_budget()
            await asyncio.sleep(0.005)
            self.ledger.record(ctx.stage, prompt_tokens=10, completion_tokens=5, latency_s=0.005)
            return Num(n=item.n + 1)

    inputs = [Num(n=n) for n in range(40)]
    ledger = Ledger(BudgetConfig(max_calls=10))
    stopped = await Pipeline("b", [Spender(ledger), Jitter()]).run(
        inputs, tmp_path / "run", _opts(concurrency=4), ledger=ledger
    )
    assert stopped.status == "stopped: budget"
    assert stopped.manifest.status == "stopped: budget"
    assert not (tmp_path / "run" / "output.jsonl").exists()
    assert not (tmp_path / "run" / "jitter").exists()  # later stages never started
    done = _lines(tmp_path / "run" / "spend" / "ok.jsonl")
    assert 10 <= len(done) <= 10 + 4  # the cap, plus what was in flight
    assert stopped.manifest.stages[0].counts.ok == len(done)
    assert not (tmp_path / "run" / "spend" / "errors.jsonl").read_text()
    assert json.loads((tmp_path / "run" / "manifest.json").read_text())["status"] == "stopped: budget"

    ledger2 = Ledger()
    resumed = await Pipeline("b", [Spender(ledger2), Jitter()]).run(
        inputs, tmp_path / "run", _opts(), ledger=ledger2
    )
    assert resumed.status == "finished"
    assert ledger2.total().calls == 40 - len(done)
    assert resumed.manifest.stages[0].usage.calls == 40  # usage adds up across sessions
    assert resumed.manifest.stages[0].usage.prompt_tokens == 400

    ledger3 = Ledger()
    clean = await Pipeline("b", [Spender(ledger3), Jitter()]).run(
        inputs, tmp_path / "clean", _opts(), ledger=ledger3
    )
    assert (tmp_path / "run" / "output.jsonl").read_bytes() == (
        tmp_path / "clean" / "output.jsonl"
    ).read_bytes()
    assert len(clean.outputs) == 40


async def test_manifest_records_what_the_run_is_and_how_far_it_got(tmp_path: Path) -> None:
    await _pipeline(Jitter(), Split()).run([Num(n=n) for n in range(1, 5)], tmp_path, _opts(seed=3))
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "finished"
    assert manifest["pipeline"] == "demo" and manifest["seed"] == 3 and manifest["sessions"] == 1
    assert manifest["package_version"]
    assert manifest["config"] == {"threshold": 0.5}
    jitter, split = manifest["stages"]
    assert (jitter["name"], jitter["version"], split["name"]) == ("jitter", "1", "split")
    assert jitter["prompt_hashes"] == {"jitter.md": "abc123"} and split["prompt_hashes"] == {}
    assert jitter["config"] == {"threshold": 0.9} and split["config"] is None
    assert jitter["counts"] == {"inputs": 4, "ok": 4, "rejected": 0, "errors": 0, "outputs": 4}
    assert split["counts"]["rejected"] == 1 and split["counts"]["outputs"] == 6
    assert jitter["seconds"] > 0
    assert jitter["usage"]["calls"] == 0


async def test_resuming_with_another_seed_or_pipeline_is_refused(tmp_path: Path) -> None:
    await Pipeline("p", [Jitter()]).run([Num(n=1)], tmp_path, _opts(seed=1))
    with pytest.raises(RunMismatch, match="seed 1"):
        await Pipeline("p", [Jitter()]).run([Num(n=1)], tmp_path, _opts(seed=2))
    with pytest.raises(RunMismatch):
        await Pipeline("other", [Jitter()]).run([Num(n=1)], tmp_path, _opts(seed=1))


async def test_hundreds_of_items_in_flight(tmp_path: Path) -> None:
    class Slow:
        name = "slow"
        version = "1"
        input_model = Num

        def __init__(self) -> None:
            self.active = 0
            self.peak = 0

        async def process(self, item: Num, ctx: StageContext) -> Num:
            self.active += 1
            self.peak = max(self.peak, self.active)
            await asyncio.sleep(0.05)
            self.active -= 1
            return item

    slow = Slow()
    result = await Pipeline("p", [slow]).run([Num(n=n) for n in range(900)], tmp_path, _opts(concurrency=300))
    assert slow.peak == 300
    assert len(result.outputs) == 900


def test_pipeline_refuses_ambiguous_stage_layouts() -> None:
    with pytest.raises(ValueError, match="unique"):
        Pipeline("p", [Jitter(), Jitter()])
    bad = Jitter()
    bad.name = "input"
    with pytest.raises(ValueError, match="sub-directory"):
        Pipeline("p", [bad])
    with pytest.raises(ValueError, match="unknown stages"):
        Pipeline("p", [Jitter()], stage_configs={"nope": Config()})


async def test_progress_bars_render_per_stage_when_asked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    await _pipeline(Jitter(), Split()).run(
        [Num(n=n) for n in range(1, 4)], tmp_path, RunOptions(progress=True)
    )
    err = capsys.readouterr().err
    assert "jitter" in err and "split" in err and "ok 3" in err
