"""``astra eval arenas``: a golden-replaying endpoint scores 1, a silent one 0, junk costs precision."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.server import ArenaCorpus, ArenaServer
from astra_synth.evaluation.arenas import ArenaEvalConfig, EpisodeScore, evaluate_arenas
from astra_synth.evaluation.endpoint_errors import ErrorPolicy
from astra_synth.llm.client import LLMClient
from astra_synth.runs.ids import canonical_json
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolCall as SandboxCall
from astra_synth.sandbox.executor import ToolExecutor, ToolResult
from astra_synth.testing.scripted import (
    Reply,
    ScriptedLLM,
    server_error_reply,
    text_reply,
    tool_call_reply,
)
from astra_synth.testing.servers import ThreadedServer

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


@pytest.fixture(scope="module")
def arenas() -> list[Arena]:
    return read_arenas(SAMPLE)


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ToolExecutor]:
    with get_executor() as executor:
        yield executor


@pytest.fixture
async def llm(scripted_llm: ScriptedLLM) -> AsyncIterator[LLMClient]:
    async with LLMClient(scripted_llm.endpoint()) as client:
        yield client


def golden_player(arenas: list[Arena], junk_first: bool = False) -> Any:
    """Answers like a perfect agent: the next DAG layer's golden calls, then the final answer."""
    by_question = {a.messages[-1].content: a for a in arenas}

    def handler(body: dict[str, Any]) -> Reply:
        messages = body["messages"]
        arena = by_question[next(m["content"] for m in messages if m["role"] == "user")]
        turns = golden_turns(arena)
        done = sum(1 for m in messages if m["role"] == "assistant")
        if junk_first:
            if done == 0:
                # An unknown tool, and a real tool called with arguments that are not JSON.
                return tool_call_reply(("no_such_tool", {}), (arena.tools[0].function.name, "{not json"))
            done -= 1
        if done < len(turns):
            calls = [(c["function"]["name"], json.loads(c["function"]["arguments"])) for c in turns[done]]
            return tool_call_reply(*calls)
        return text_reply(arena.final_answer)

    return handler


async def test_golden_replaying_endpoint_scores_one(
    scripted_llm: ScriptedLLM, llm: LLMClient, arenas: list[Arena], sandbox: ToolExecutor
) -> None:
    scripted_llm.on(".*", golden_player(arenas))
    report = await evaluate_arenas(arenas, llm, sandbox, ArenaEvalConfig(repeats=2))
    assert report.success_rate.mean == 1.0 and report.success_rate.ci95 == 0.0
    assert report.f1.mean == pytest.approx(1.0, abs=1e-6)
    assert all(e.status == "completed" for e in report.episodes)
    assert report.turns_per_arena > 1


async def test_silent_endpoint_scores_zero(
    scripted_llm: ScriptedLLM, llm: LLMClient, arenas: list[Arena], sandbox: ToolExecutor
) -> None:
    scripted_llm.on(".*", text_reply("I cannot help with that."))
    report = await evaluate_arenas(arenas, llm, sandbox, ArenaEvalConfig())
    assert report.success_rate.mean == 0.0 and report.f1.mean == 0.0 and report.calls_per_arena == 0


async def test_junk_calls_count_against_precision(
    scripted_llm: ScriptedLLM, llm: LLMClient, arenas: list[Arena], sandbox: ToolExecutor
) -> None:
    scripted_llm.on(".*", golden_player(arenas, junk_first=True))
    report = await evaluate_arenas(arenas[:3], llm, sandbox, ArenaEvalConfig())
    assert report.success_rate.mean == 1.0  # every sub-task still solved
    assert report.precision.mean < 1.0 and report.f1.mean < 1.0
    for e in report.episodes:
        assert e.calls == sum(len(t) for t in golden_turns(next(a for a in arenas if a.id == e.arena_id))) + 2


def seen_by_model(bodies: list[dict[str, Any]]) -> list[str]:
    """What the model was shown, one canonical line per request, sorted (episodes interleave)."""
    return sorted(canonical_json([b["messages"], b.get("tools")]) for b in bodies)


@pytest.mark.parametrize("junk_first", [False, True])
async def test_an_arena_server_gives_the_local_results(
    scripted_llm: ScriptedLLM, llm: LLMClient, arenas: list[Arena], sandbox: ToolExecutor, junk_first: bool
) -> None:
    scripted_llm.on(".*", golden_player(arenas, junk_first=junk_first))
    config = ArenaEvalConfig(repeats=2, seed=5)
    local = await evaluate_arenas(arenas, llm, sandbox, config)
    local_seen = seen_by_model(scripted_llm.chat_requests())
    server = ArenaServer(ArenaCorpus({"sample": arenas}), sandbox, token="")
    with ThreadedServer(server.app()) as running:
        remote_config = config.model_copy(update={"env_url": running.ws_url})
        remote = await evaluate_arenas(arenas, llm, None, remote_config)
    assert remote.model_dump() == local.model_dump()
    assert seen_by_model(scripted_llm.chat_requests()[len(local_seen) :]) == local_seen
    assert (local.f1.mean == pytest.approx(1.0)) is not junk_first


async def test_server_breaking_mid_run_gives_errors_apart_from_the_score(
    scripted_llm: ScriptedLLM, llm: LLMClient, arenas: list[Arena], sandbox: ToolExecutor
) -> None:
    """Two arenas played whole, then every request gets a 500 (after the client's retries): two errors,
    scored 0 by default (success 0.5), left out with allow_errors (success 1.0); both fail the policy."""
    four = arenas[:4]
    scripted_llm.on(".*", golden_player(four))
    scripted_llm.fail_after(sum(len(golden_turns(a)) + 1 for a in four[:2]), server_error_reply())
    strict = ArenaEvalConfig(concurrency=1)
    report = await evaluate_arenas(four, llm, sandbox, strict)
    assert report.errors == 2 and [e.status for e in report.episodes][2:] == ["llm_error"] * 2
    assert report.success_rate.mean == 0.5 and report.error_violation is not None
    allowed = strict.model_copy(update={"errors": ErrorPolicy(allow_errors=True)})
    report = await evaluate_arenas(four, llm, sandbox, allowed)
    assert report.errors == 4 and report.success_rate.mean == 0.0  # still broken: nothing left to score
    tolerant = strict.model_copy(update={"errors": ErrorPolicy(allow_errors=True, max_error_rate=1.0)})
    scripted_llm.reset()
    scripted_llm.on(".*", golden_player(four))
    scripted_llm.fail_after(sum(len(golden_turns(a)) + 1 for a in four[:2]), server_error_reply())
    report = await evaluate_arenas(four, llm, sandbox, tolerant)
    assert report.errors == 2 and report.success_rate.mean == 1.0 and report.f1.mean == pytest.approx(1.0)
    assert report.error_violation is None


def test_model_mistakes_are_failures_not_errors() -> None:
    mistaken = EpisodeScore(
        arena_id="a",
        repeat=0,
        status="completed",
        reward=0.0,
        recall=0.0,
        precision=0.0,
        calls=1,
        turns=1,
        solved_all=False,
        error=None,
    )
    assert not mistaken.endpoint_error
    assert mistaken.model_copy(update={"status": "llm_error"}).endpoint_error


class CountingSandbox(ToolExecutor):
    """The real sandbox, recording every (tool, arguments) that reaches it."""

    def __init__(self, inner: ToolExecutor) -> None:
        self.inner = inner
        self.ran: Counter[tuple[str, str]] = Counter()

    def load(self, source: str) -> str:
        return self.inner.load(source)

    def execute(
        self, env_id: str, fn: str, args: dict[str, Any], timeout_s: float | None = None
    ) -> ToolResult:
        return self.execute_batch([SandboxCall(env_id=env_id, fn=fn, args=args, timeout_s=timeout_s)])[0]

    def execute_batch(self, calls: list[SandboxCall]) -> list[ToolResult]:
        self.ran.update((c.fn, canonical_json(c.args)) for c in calls)
        return self.inner.execute_batch(calls)


async def test_each_emitted_call_reaches_the_sandbox_at_most_once(
    scripted_llm: ScriptedLLM, llm: LLMClient, arenas: list[Arena], sandbox: ToolExecutor
) -> None:
    scripted_llm.on(".*", golden_player(arenas, junk_first=True))
    for arena in arenas[:2]:
        counting = CountingSandbox(sandbox)
        report = await evaluate_arenas([arena], llm, counting, ArenaEvalConfig())
        golden = [
            (s.golden_call.name, canonical_json(s.golden_call.arguments))
            for s in arena.subtasks
            if s.golden_call
        ]
        # The model's golden calls run once each (the episode is played and scored in one env; the unknown
        # tool and the malformed call never reach the sandbox but count in precision); the reward runs each
        # golden reference call once more to compare results.
        assert counting.ran == Counter(set(golden)) + Counter(golden)
        [episode] = report.episodes
        assert episode.calls == len(golden) + 2 and episode.precision < 1.0 and episode.recall == 1.0


@pytest.mark.slow
def test_cli_prints_table_and_result(scripted_llm: ScriptedLLM, arenas: list[Arena], tmp_path: Path) -> None:
    scripted_llm.on(".*", golden_player(arenas))
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "astra_synth.cli",
            "--base-url",
            scripted_llm.base_url,
            "--model",
            "scripted",
            "eval",
            "arenas",
            "--arenas",
            str(SAMPLE),
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    last = proc.stdout.strip().splitlines()[-1]
    assert last == "RESULT arenas=12 success_rate=1.0000 f1=1.0000 errors=0"
    assert json.loads(out.read_text())["arenas"] == 12
