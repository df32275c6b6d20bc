"""The runner with LLM-backed stages over real HTTP (scripted server): cache replay, budget stop, kill -9."""

from __future__ import annotations

import asyncio
import json
import random
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from astra_synth.config import BudgetConfig
from astra_synth.llm.cache import ResponseCache
from astra_synth.llm.client import LLMClient
from astra_synth.llm.ledger import Ledger
from astra_synth.runs.pipeline import RunOptions
from astra_synth.runs.summary import stage_rows
from astra_synth.testing import toy_pipeline as sp
from astra_synth.testing.scripted import ScriptedLLM

SCRIPT = Path(sp.__file__)
STAGES = ("ask", "explode", "judge")


def _lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


async def test_a_second_run_on_the_same_cache_makes_zero_llm_calls(
    tmp_path: Path, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.handler = sp.answer
    inputs = tmp_path / "topics.jsonl"
    sp.write_topics(inputs, 30)
    cache = tmp_path / "llm.sqlite"
    options = RunOptions(progress=False, concurrency=16)

    async with LLMClient(scripted_llm.endpoint(), ledger=Ledger(), cache=ResponseCache(cache)) as client:
        first = await sp.build_pipeline().run(inputs, tmp_path / "run1", options, llm=client)
    sent = len(scripted_llm.chat_requests())
    assert first.status == "finished" and sent > 30
    assert first.outputs and first.manifest.stage("judge").counts.rejected > 0  # type: ignore[union-attr]
    ask_usage = first.manifest.stage("ask").usage  # type: ignore[union-attr]
    assert ask_usage.calls > 0 and ask_usage.prompt_tokens > 0

    async with LLMClient(scripted_llm.endpoint(), ledger=Ledger(), cache=ResponseCache(cache)) as client:
        second = await sp.build_pipeline().run(inputs, tmp_path / "run2", options, llm=client)
        assert client.calls_made == 0
    assert len(scripted_llm.chat_requests()) == sent
    assert (tmp_path / "run1" / "output.jsonl").read_bytes() == (
        tmp_path / "run2" / "output.jsonl"
    ).read_bytes()
    for name in ("ask", "judge"):
        usage = second.manifest.stage(name).usage  # type: ignore[union-attr]
        assert usage.calls == 0 and usage.cached_calls > 0 and usage.prompt_tokens == 0


async def test_llm_budget_stops_the_run_cleanly_and_a_resume_finishes_it(
    tmp_path: Path, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.handler = sp.answer
    inputs = tmp_path / "topics.jsonl"
    sp.write_topics(inputs, 30)
    options = RunOptions(progress=False, concurrency=8)

    capped = Ledger(BudgetConfig(max_calls=15))
    async with LLMClient(scripted_llm.endpoint(), ledger=capped) as client:
        stopped = await sp.build_pipeline().run(inputs, tmp_path / "run", options, llm=client)
    assert stopped.status == "stopped: budget"
    assert 15 <= capped.total().calls < 15 + 8  # the cap, overshot only by calls already in flight
    assert not _lines(tmp_path / "run" / "ask" / "errors.jsonl")
    assert not (tmp_path / "run" / "output.jsonl").exists()

    async with LLMClient(scripted_llm.endpoint(), ledger=Ledger()) as client:
        resumed = await sp.build_pipeline().run(inputs, tmp_path / "run", options, llm=client)
        clean = await sp.build_pipeline().run(inputs, tmp_path / "clean", options, llm=client)
    assert clean.status == "finished" and clean.outputs
    assert resumed.status == "finished"
    assert (tmp_path / "run" / "output.jsonl").read_bytes() == (
        tmp_path / "clean" / "output.jsonl"
    ).read_bytes()


def _launch(server: ScriptedLLM, run_dir: Path, inputs: Path, cache: Path) -> subprocess.Popen[str]:
    args = [
        "--base-url",
        server.base_url,
        "--run-dir",
        str(run_dir),
        "--inputs",
        str(inputs),
        "--cache",
        str(cache),
    ]
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _finish(proc: subprocess.Popen[str]) -> None:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and out.split()[-1] == "finished", err


def _recorded(run_dir: Path) -> int:
    return sum(len(_lines(run_dir / s / name)) for s in STAGES for name in ("ok.jsonl", "rejects.jsonl"))


@pytest.mark.slow
async def test_kill_9_at_random_points_then_resume_loses_and_duplicates_nothing(tmp_path: Path) -> None:
    inputs = tmp_path / "topics.jsonl"
    sp.write_topics(inputs, 60)
    ref, run = tmp_path / "ref", tmp_path / "run"
    with ScriptedLLM(handler=sp.answer) as server:
        # The uninterrupted reference runs in this process: same code, one interpreter start saved.
        assert (
            await sp.run(server.base_url, ref, inputs, tmp_path / "ref.sqlite", concurrency=8) == "finished"
        )
        total = _recorded(ref)

        # Kill points are random in progress (records on disk) plus a random delay, so they land in every
        # stage and anywhere between two flushes, however loaded the machine is.
        server.latency_s = 0.2
        rng = random.Random(20260126)
        progress = []
        for target in sorted(rng.sample(range(5, total * 3 // 4), 3)):
            proc = _launch(server, run, inputs, tmp_path / "run.sqlite")
            assert proc.stdout is not None and proc.stdout.readline().strip() == "started"
            while _recorded(run) < target and proc.poll() is None:
                await asyncio.sleep(0.02)
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            assert proc.poll() is None, "the run finished before its kill point"
            proc.send_signal(signal.SIGKILL)
            proc.communicate()
            progress.append(_recorded(run))
        _finish(_launch(server, run, inputs, tmp_path / "run.sqlite"))

    assert progress == sorted(progress) and progress[-1] < total, progress
    assert (run / "output.jsonl").read_bytes() == (ref / "output.jsonl").read_bytes()
    for stage in STAGES:
        ok = [r["id"] for r in _lines(run / stage / "ok.jsonl")]
        rejected = [r["id"] for r in _lines(run / stage / "rejects.jsonl")]
        assert len(ok) == len(set(ok)) and len(rejected) == len(set(rejected)), f"{stage}: duplicates"
        assert set(ok) == {r["id"] for r in _lines(ref / stage / "ok.jsonl")}, f"{stage}: lost or extra"
        assert set(rejected) == {r["id"] for r in _lines(ref / stage / "rejects.jsonl")}, stage
        assert not set(ok) & set(rejected)
        assert not _lines(run / stage / "errors.jsonl")
    assert _lines(run / "input" / "rejects.jsonl") == _lines(ref / "input" / "rejects.jsonl")
    manifest, ref_manifest = (json.loads((d / "manifest.json").read_text()) for d in (run, ref))
    assert manifest["status"] == "finished" and manifest["sessions"] == 4
    assert [s["counts"] for s in manifest["stages"]] == [s["counts"] for s in ref_manifest["stages"]]
    assert {r["reason"] for r in _lines(ref / "ask" / "rejects.jsonl")} == {"structured_output_invalid"}
    assert {r["reason"] for r in _lines(ref / "explode" / "rejects.jsonl")} == {"no_output"}
    assert {r["reason"] for r in _lines(ref / "judge" / "rejects.jsonl")} == {"low_score"}


async def test_rejected_items_carry_the_calls_spent_on_them_into_the_funnel(
    tmp_path: Path, scripted_llm: ScriptedLLM
) -> None:
    scripted_llm.handler = sp.answer
    inputs = tmp_path / "topics.jsonl"
    sp.write_topics(inputs, 30)
    options = RunOptions(progress=False, concurrency=8)
    async with LLMClient(scripted_llm.endpoint(), ledger=Ledger()) as client:
        result = await sp.build_pipeline().run(inputs, tmp_path / "run", options, llm=client)
    rejects = _lines(tmp_path / "run" / "judge" / "rejects.jsonl")
    assert rejects and all(r["llm_calls"] == 1 and r["llm_tokens"] > 0 for r in rejects)  # one verdict each
    rows = {r.stage: r for r in stage_rows(tmp_path / "run", result.manifest)}
    judge = rows["judge"]
    assert judge.rejected_llm_calls == len(rejects) == judge.rejected
    assert judge.llm_calls == result.manifest.stage("judge").usage.calls  # type: ignore[union-attr]
    assert judge.rejected_tokens == sum(r["llm_tokens"] for r in rejects)
    assert rows["explode"].rejected_llm_calls == 0  # no LLM in that stage
