"""RunSession against the scripted server: parts opened and closed together, the run-dir cache rule, and a
budget cap that counts every session of a run."""

from __future__ import annotations

from pathlib import Path

import pytest

from astra_synth.config import BudgetConfig
from astra_synth.llm.ledger import BudgetExceeded
from astra_synth.runs.session import CACHE_FILE, USAGE_FILE, PipelineConfig, RunSession, run_cache_path
from astra_synth.testing.scripted import ScriptedLLM, text_reply


def test_cache_path_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRA_CACHE_DIR", str(tmp_path / "shared"))
    run = tmp_path / "run"
    assert run_cache_path(run, tmp_path / "mine.sqlite") == tmp_path / "mine.sqlite"
    assert run_cache_path(run) == run / CACHE_FILE
    # A run dir written before the run-dir default: manifests, no run-dir cache, the shared cache present.
    (run / "qa").mkdir(parents=True)
    (run / "qa" / "manifest.json").write_text("{}")
    assert run_cache_path(run) == run / CACHE_FILE  # no shared cache: nothing to keep
    (tmp_path / "shared").mkdir()
    (tmp_path / "shared" / "llm.sqlite").write_bytes(b"")
    assert run_cache_path(run) == tmp_path / "shared" / "llm.sqlite"
    (run / CACHE_FILE).write_bytes(b"")
    assert run_cache_path(run) == run / CACHE_FILE  # a run-dir cache always wins


async def test_session_wires_cache_and_closes(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.on("hello", text_reply("hi"))
    async with RunSession.for_run(tmp_path, PipelineConfig(endpoint=scripted_llm.endpoint())) as session:
        first = await session.llm.chat([{"role": "user", "content": "hello"}], stage="s")
        again = await session.llm.chat([{"role": "user", "content": "hello"}], stage="s")
        assert first.message["content"] == again.message["content"] == "hi"
    assert len(scripted_llm.chat_requests()) == 1 and (tmp_path / CACHE_FILE).exists()
    assert session.ledger.total().calls == 1 and session.ledger.total().cached_calls == 1
    with pytest.raises(RuntimeError):
        _ = session.llm
    with pytest.raises(RuntimeError, match="no sandbox"):
        _ = session.sandbox


async def test_budget_cap_counts_every_session(scripted_llm: ScriptedLLM, tmp_path: Path) -> None:
    scripted_llm.on("", text_reply("ok"))
    config = PipelineConfig(endpoint=scripted_llm.endpoint(), budget=BudgetConfig(max_calls=3))

    async def ask(session: RunSession, i: int) -> None:
        await session.llm.chat([{"role": "user", "content": f"q{i}"}], stage="s")

    async with RunSession.for_run(tmp_path, config) as first:
        for i in range(2):
            await ask(first, i)
    assert (tmp_path / USAGE_FILE).exists()
    async with RunSession.for_run(tmp_path, config) as resumed:
        await ask(resumed, 0)  # cached: free
        await ask(resumed, 2)  # the third real call of the run
        with pytest.raises(BudgetExceeded, match="3 done"):
            await ask(resumed, 3)
    assert len(scripted_llm.chat_requests()) == 3
    assert resumed.ledger.total().calls == 1 and resumed.ledger.spent().calls == 3
