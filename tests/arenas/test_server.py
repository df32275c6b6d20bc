"""The arena server over a real WebSocket: golden episodes score 1, sessions are separate, bad actions are
observations, a missing or wrong token is refused before anything runs, distractors are drawn as in GRPO."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from astra_synth.agent.chat import parse_openai_calls
from astra_synth.arenas.distractors import DistractorConfig, DistractorDraw, DistractorSampler
from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena
from astra_synth.arenas.remote import RemoteArenaEnv, RemoteEnvError, ws_url
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.arenas.server import ArenaCorpus, ArenaServer, ArenaServerConfig
from astra_synth.llm.embeddings import LocalEmbedder, VectorCache
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolCall as SandboxCall
from astra_synth.sandbox.executor import ToolExecutor, ToolResult
from astra_synth.testing.servers import ThreadedServer

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


class CountingSandbox(ToolExecutor):
    """The real sandbox, counting the calls that reach it."""

    def __init__(self, inner: ToolExecutor) -> None:
        self.inner = inner
        self.ran = 0
        self.loaded = 0

    def load(self, source: str) -> str:
        self.loaded += 1
        return self.inner.load(source)

    def execute(
        self, env_id: str, fn: str, args: dict[str, Any], timeout_s: float | None = None
    ) -> ToolResult:
        return self.execute_batch([SandboxCall(env_id=env_id, fn=fn, args=args, timeout_s=timeout_s)])[0]

    def execute_batch(self, calls: list[SandboxCall]) -> list[ToolResult]:
        self.ran += len(calls)
        return self.inner.execute_batch(calls)


@pytest.fixture(scope="module")
def corpus() -> ArenaCorpus:
    return ArenaCorpus.from_files([SAMPLE])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[ToolExecutor]:
    with get_executor() as executor:
        yield executor


@pytest.fixture(scope="module")
def server(corpus: ArenaCorpus, sandbox: ToolExecutor) -> Iterator[ThreadedServer]:
    config = ArenaServerConfig(max_calls_per_step=8, max_message_bytes=4096, max_sessions=16)
    with ThreadedServer(ArenaServer(corpus, sandbox, config, token="").app()) as running:
        yield running


async def send(ws: ClientConnection, kind: str, data: dict[str, Any] | None = None) -> dict[str, Any]:
    await ws.send(json.dumps({"type": kind, "data": data or {}}))
    frame: dict[str, Any] = json.loads(await ws.recv())
    return frame


async def play_golden(ws: ClientConnection, arena: Arena, seed: int = 0) -> dict[str, Any]:
    """Reset on ``arena``, step every golden turn, answer; the last observation frame's data."""
    reset = await send(ws, "reset", {"arena_id": arena.id, "seed": seed})
    assert reset["type"] == "observation" and reset["data"]["done"] is False
    assert reset["data"]["observation"]["messages"][-1]["content"] == arena.messages[-1].content
    for turn in golden_turns(arena):
        step = await send(ws, "step", {"tool_calls": turn})
        observation = step["data"]["observation"]
        assert observation["error"] is None and all(observation["call_ok"])
        assert [m["tool_call_id"] for m in observation["messages"]] == [c["id"] for c in turn]
    final = await send(ws, "step", {"content": arena.final_answer})
    data: dict[str, Any] = final["data"]
    return data


async def test_golden_episodes_over_the_websocket_score_one(
    server: ThreadedServer, corpus: ArenaCorpus
) -> None:
    async with connect(f"{server.ws_url}/ws") as ws:
        for arena in corpus.all:
            final = await play_golden(ws, arena)
            assert final["done"] is True and final["reward"] == pytest.approx(1.0)
            assert final["metadata"]["recall"] == 1.0
            assert final["metadata"]["precision"] == pytest.approx(1.0)
        state = await send(ws, "state")
        assert state["type"] == "state" and state["data"]["done"] is True
        assert state["data"]["arena_id"] == corpus.all[-1].id


async def test_concurrent_sessions_keep_separate_state(server: ThreadedServer, corpus: ArenaCorpus) -> None:
    first, second = corpus.all[0], corpus.all[1]
    async with connect(f"{server.ws_url}/ws") as a, connect(f"{server.ws_url}/ws") as b:
        await send(a, "reset", {"arena_id": first.id})
        await send(b, "reset", {"arena_id": second.id})
        await send(a, "step", {"tool_calls": golden_turns(first)[0]})
        state_a, state_b = (await send(a, "state"))["data"], (await send(b, "state"))["data"]
        assert state_a["arena_id"] == first.id and state_a["calls"] == len(golden_turns(first)[0])
        assert state_b["arena_id"] == second.id and state_b["calls"] == 0 and state_b["step_count"] == 0
        finals = await asyncio.gather(play_golden(a, first), play_golden(b, second))
        assert [f["reward"] for f in finals] == [pytest.approx(1.0)] * 2


async def test_bad_actions_are_observations_with_errors(server: ThreadedServer, corpus: ArenaCorpus) -> None:
    arena = corpus.all[0]
    tool = arena.tools[0].function.name
    async with connect(f"{server.ws_url}/ws") as ws:
        early = await send(ws, "step", {"tool_calls": []})
        assert "reset first" in early["data"]["observation"]["error"]
        unknown = await send(ws, "reset", {"arena_id": "no-such-arena"})
        assert "unknown arena id" in unknown["data"]["observation"]["error"]
        await send(ws, "reset", {"arena_id": arena.id})
        bad_calls = [
            {"id": "c1", "type": "function", "function": {"name": "no_such_tool", "arguments": "{}"}},
            {"id": "c2", "type": "function", "function": {"name": tool, "arguments": "{not json"}},
            {"id": "c3", "type": "function", "function": {"name": tool, "arguments": {"zzz": 1}}},
            "not a call at all",
        ]
        step = (await send(ws, "step", {"tool_calls": bad_calls}))["data"]["observation"]
        assert step["error"] is None and step["call_ok"] == [False] * 4
        contents = [m["content"] for m in step["messages"]]
        assert "unknown tool 'no_such_tool'" in contents[0] and "not valid JSON" in contents[1]
        assert "unexpected argument" in contents[2] and "malformed tool call" in contents[3]
        too_many = [bad_calls[0]] * 9
        refused = await send(ws, "step", {"tool_calls": too_many})
        assert "the limit is 8" in refused["data"]["observation"]["error"]
        shape = await send(ws, "step", {"tool_calls": "everything"})
        assert "invalid action" in shape["data"]["observation"]["error"]
        extra = await send(ws, "step", {"tool_calls": [], "launch": True})
        assert "invalid action" in extra["data"]["observation"]["error"]
        huge = await send(ws, "step", {"tool_calls": [bad_calls[1]], "content": "x" * 10_000})
        assert "the limit is 4096" in huge["data"]["observation"]["error"]
        await ws.send("{this is not json")
        assert json.loads(await ws.recv())["data"]["code"] == "INVALID_JSON"
        assert (await send(ws, "dance"))["data"]["code"] == "UNKNOWN_TYPE"
        assert (await send(ws, "reset", {"seed": -1}))["data"]["code"] == "VALIDATION_ERROR"
        # The session survived all of it; only the four bad calls counted against precision.
        final = await play_golden(ws, arena)
        assert final["metadata"]["recall"] == 1.0
        state = (await send(ws, "state"))["data"]
        assert state["calls"] == sum(len(t) for t in golden_turns(arena))  # the reset cleared the calls


async def test_remote_env_plays_like_the_local_one(server: ThreadedServer, corpus: ArenaCorpus) -> None:
    arena = corpus.all[2]
    async with RemoteArenaEnv(server.ws_url) as env:
        messages, tools = await env.reset(arena_id=arena.id, seed=3)
        assert messages[-1]["content"] == arena.messages[-1].content and len(tools) == len(arena.tools)
        for turn in golden_turns(arena):
            replies = await env.step(parse_openai_calls(turn))
            assert all(r.ok and r.route == "remote" for r in replies)
        assert env.distractors is None  # a server without distractors offers the arena's tools only
        breakdown = await env.reward(arena.final_answer)
        assert breakdown.reward == pytest.approx(1.0) and breakdown.turns == len(golden_turns(arena))
        with pytest.raises(RemoteEnvError, match="unknown arena id"):
            await env.reset(arena_id="nope")
    assert ws_url("http://h:1") == "ws://h:1/ws" and ws_url("wss://h/x/ws") == "wss://h/x/ws"


async def test_task_routes_and_reset_by_split_and_index(server: ThreadedServer, corpus: ArenaCorpus) -> None:
    async with httpx.AsyncClient(base_url=server.url) as http:
        health = (await http.get("/health")).json()
        assert health["status"] == "healthy" and health["distractors_per_band"] == 0
        assert (await http.get("/list_environments")).json() == ["astra_arenas"]
        split = SAMPLE.stem
        assert (await http.get("/astra_arenas/splits")).json() == [{"name": split, "type": "validation"}]
        count = (await http.post("/astra_arenas/num_tasks", json={"split": split})).json()["num_tasks"]
        assert count == len(corpus.all)
        task = (await http.post("/astra_arenas/task", json={"split": split, "index": 4})).json()["task"]
        assert task["arena_id"] == corpus.all[4].id
        page = (
            await http.post("/astra_arenas/task_range", json={"split": split, "start": 2, "stop": 5})
        ).json()
        assert [t["index"] for t in page["tasks"]] == [2, 3, 4]
        assert (await http.post("/astra_arenas/task", json={"split": split, "index": 99})).status_code == 400
        assert (await http.post("/astra_arenas/task", json={"split": "nope", "index": 0})).status_code == 400
    async with connect(f"{server.ws_url}/ws") as ws:
        reset = await send(ws, "reset", {"split": split, "index": 4})
        assert reset["data"]["observation"]["arena_id"] == corpus.all[4].id
        by_seed = await send(ws, "reset", {"seed": len(corpus.all) + 1})
        assert by_seed["data"]["observation"]["arena_id"] == corpus.all[1].id


async def test_a_missing_or_wrong_token_is_refused_before_anything_runs(
    corpus: ArenaCorpus, sandbox: ToolExecutor
) -> None:
    counting = CountingSandbox(sandbox)
    arena = corpus.all[0]
    frames = [
        {"type": "reset", "data": {"arena_id": arena.id}},
        {"type": "step", "data": {"tool_calls": golden_turns(arena)[0]}},
    ]
    with ThreadedServer(ArenaServer(corpus, counting, token="s3cret").app()) as server:
        for headers in (None, {"Authorization": "Bearer wrong"}, {"Authorization": "s3cret"}):
            with pytest.raises(InvalidStatus) as refused:
                async with connect(f"{server.ws_url}/ws", additional_headers=headers) as ws:
                    for frame in frames:
                        await ws.send(json.dumps(frame))
            assert refused.value.response.status_code == 403
        async with httpx.AsyncClient(base_url=server.url) as http:
            assert (await http.get("/health")).status_code == 401
            assert (
                await http.post("/astra_arenas/num_tasks", json={"split": SAMPLE.stem})
            ).status_code == 401
        assert counting.ran == 0 and counting.loaded == 0
        async with connect(
            f"{server.ws_url}/ws", additional_headers={"Authorization": "Bearer s3cret"}
        ) as ws:
            final = await play_golden(ws, arena)
        assert final["reward"] == pytest.approx(1.0) and counting.ran > 0


async def test_idle_sessions_are_reaped_and_capacity_is_enforced(
    corpus: ArenaCorpus, sandbox: ToolExecutor
) -> None:
    config = ArenaServerConfig(idle_timeout_s=0.3, max_sessions=1)
    with ThreadedServer(ArenaServer(corpus, sandbox, config, token="").app()) as server:
        async with connect(f"{server.ws_url}/ws") as first:
            await send(first, "reset", {"arena_id": corpus.all[0].id})
            async with connect(f"{server.ws_url}/ws") as second:
                frame = json.loads(await second.recv())
                assert frame["data"]["code"] == "CAPACITY_REACHED"
            reaped = json.loads(await asyncio.wait_for(first.recv(), 5))
            assert (
                reaped["data"]["code"] == "SESSION_ERROR" and "without a message" in reaped["data"]["message"]
            )
            with pytest.raises(ConnectionClosed):
                await first.recv()
        async with connect(f"{server.ws_url}/ws") as again:  # the reaped session freed its slot
            assert (await send(again, "reset", {"arena_id": corpus.all[0].id}))["type"] == "observation"


@pytest.fixture(scope="module")
def sampler(corpus: ArenaCorpus, tmp_path_factory: pytest.TempPathFactory) -> DistractorSampler:
    """The real local embedder over the served split, as ``astra arenas serve --distractors 1`` builds it."""
    cache = VectorCache(tmp_path_factory.mktemp("vectors"))
    return DistractorSampler(corpus.all, LocalEmbedder(), cache, DistractorConfig(k_per_band=1, seed=4))


@pytest.fixture(scope="module")
def distracting(
    corpus: ArenaCorpus, sandbox: ToolExecutor, sampler: DistractorSampler
) -> Iterator[ThreadedServer]:
    server = ArenaServer(corpus, sandbox, token="", distractors={SAMPLE.stem: sampler})
    with ThreadedServer(server.app()) as running:
        yield running


def names(tools: list[dict[str, Any]]) -> list[str]:
    return [t["function"]["name"] for t in tools]


async def test_reset_offers_the_draw_of_its_episode_shuffled_in_as_locally(
    distracting: ThreadedServer, corpus: ArenaCorpus, sampler: DistractorSampler, sandbox: ToolExecutor
) -> None:
    arena = corpus.all[0]
    async with connect(f"{distracting.ws_url}/ws") as ws:
        reset = (await send(ws, "reset", {"arena_id": arena.id, "seed": 3, "episode": 7}))["data"]
        draw = DistractorDraw.model_validate(reset["observation"]["metadata"]["distractors"])
        assert draw.names and draw == sampler.sample(arena, episode=7)  # GRPO's draw for episode 7
        assert reset["metadata"]["distractors"] == draw.model_dump()
        tools = reset["observation"]["tools"]
        assert sorted(names(tools)) == sorted([t.function.name for t in arena.tools] + draw.names)
        local = ArenaEnv(arena, sandbox, extra_tools=sampler.extra_tools(draw), seed=3)
        assert tools == local.reset()[1]  # the same tools in the same seeded order
        again = (await send(ws, "reset", {"arena_id": arena.id, "seed": 3, "episode": 7}))["data"]
        assert again["observation"]["tools"] == tools
        draws = set()
        for episode in range(12):
            frame = await send(ws, "reset", {"arena_id": arena.id, "seed": 3, "episode": episode})
            draws.add(tuple(frame["data"]["observation"]["metadata"]["distractors"]["medium"]))
        assert len(draws) > 1  # the episode changes the draw
        no_episode = (await send(ws, "reset", {"arena_id": arena.id}))["data"]["observation"]
        assert no_episode["metadata"]["distractors"] == sampler.sample(arena, episode=0).model_dump()
    async with httpx.AsyncClient(base_url=distracting.url) as http:
        assert (await http.get("/health")).json()["distractors_per_band"] == 1


async def test_a_distractor_call_runs_in_the_sandbox_and_costs_precision(
    distracting: ThreadedServer, corpus: ArenaCorpus
) -> None:
    arena = corpus.all[1]
    async with RemoteArenaEnv(distracting.ws_url) as env:
        await env.reset(arena_id=arena.id, seed=1, episode=2)
        assert env.distractors is not None and env.distractors.names
        for turn in golden_turns(arena):
            await env.step(parse_openai_calls(turn))
        clean = await env.reward(arena.final_answer)
        assert clean.reward == pytest.approx(1.0) and clean.precision == pytest.approx(1.0)

        await env.reset(arena_id=arena.id, seed=1, episode=2)
        assert env.distractors is not None
        name = env.distractors.names[0]
        home = next(a for a in corpus.all if name in {t.function.name for t in a.tools})
        call = next(c for turn in golden_turns(home) for c in turn if c["function"]["name"] == name)
        (reply,) = await env.step(parse_openai_calls([call]))
        assert reply.ok and not reply.content.startswith("Error")  # the distractor's own code answered
        for turn in golden_turns(arena):
            await env.step(parse_openai_calls(turn))
        distracted = await env.reward(arena.final_answer)
    assert distracted.recall == pytest.approx(1.0)
    assert distracted.precision < clean.precision and distracted.reward < clean.reward
