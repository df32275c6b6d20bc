"""Golden episodes per second through the arena server vs in process, same run, same workload.

    .venv/bin/python benchmarks/arena_server.py [--sessions 64] [--episodes 3] [--quick] [--distractors 0]

``astra arenas serve`` runs the sample arenas in a process of its own; N concurrent WebSocket sessions
(``RemoteArenaEnv``) each play ``--episodes`` golden episodes (reset, every golden turn, the final answer,
the reward), cycling through the arenas. Then N concurrent tasks do the same on in-process ``ArenaEnv``s
over one local fork server (steps in threads, as the evaluator does). Tool calls/s counts the model's
calls (the reward also runs each golden reference call once per episode, on both sides). With
``--distractors K`` the server draws K irrelevant tools per band for every reset and the in-process envs get
the same draw (the golden play never calls them: what it measures is the drawing and the longer tool lists).
Machines are shared and noisy: compare the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import httpx

from astra_synth.agent.chat import parse_openai_calls
from astra_synth.arenas.distractors import DistractorConfig, DistractorSampler, local_samplers
from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.remote import RemoteArenaEnv
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "arenas.sample.jsonl"


async def remote_session(url: str, arenas: list[Arena], first: int, episodes: int) -> list[float]:
    rewards = []
    async with RemoteArenaEnv(url) as env:
        for k in range(episodes):
            arena = arenas[(first + k) % len(arenas)]
            await env.reset(arena_id=arena.id, seed=first + k, episode=first + k)
            for turn in golden_turns(arena):
                await env.step(parse_openai_calls(turn))
            rewards.append((await env.reward(arena.final_answer)).reward)
    return rewards


def local_episode(
    arena: Arena, executor: ToolExecutor, seed: int, sampler: DistractorSampler | None
) -> float:
    extra = sampler.extra_tools(sampler.sample(arena, episode=seed)) if sampler else None
    env = ArenaEnv(arena, executor, extra_tools=extra, seed=seed)
    env.reset()
    for turn in golden_turns(arena):
        env.step(turn)
    return env.reward(arena.final_answer).reward


async def local_session(
    executor: ToolExecutor,
    arenas: list[Arena],
    first: int,
    episodes: int,
    sampler: DistractorSampler | None,
) -> list[float]:
    rewards = []
    for k in range(episodes):
        arena = arenas[(first + k) % len(arenas)]
        rewards.append(await asyncio.to_thread(local_episode, arena, executor, first + k, sampler))
    return rewards


async def timed(sessions: list[Coroutine[Any, Any, list[float]]]) -> tuple[float, list[float]]:
    start = time.perf_counter()
    results = await asyncio.gather(*sessions)
    return time.perf_counter() - start, [r for rewards in results for r in rewards]


def start_server(sessions: int, distractors: int) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "astra_synth.cli", "arenas", "serve", str(SAMPLE), "--port", str(port)]
    command += ["--max-sessions", str(sessions), "--distractors", str(distractors)]
    proc = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    for _ in range(600):
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return proc, f"ws://127.0.0.1:{port}"
        except httpx.TransportError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the arena server did not come up within 60 s")


async def run(sessions: int, episodes: int, distractors: int) -> None:
    arenas = read_arenas(SAMPLE)
    sampler = (
        local_samplers({SAMPLE.stem: arenas}, DistractorConfig(k_per_band=distractors))[SAMPLE.stem]
        if distractors
        else None
    )  # built before the server starts, so the server finds every vector in the machine's cache
    calls_per_arena = {a.id: sum(len(t) for t in golden_turns(a)) for a in arenas}
    total_calls = sum(
        calls_per_arena[arenas[(s + k) % len(arenas)].id] for s in range(sessions) for k in range(episodes)
    )
    proc, url = start_server(sessions, distractors)
    try:
        await remote_session(url, arenas, 0, len(arenas))  # warm-up: every tool source loaded once
        server_s, server_rewards = await timed(
            [remote_session(url, arenas, s, episodes) for s in range(sessions)]
        )
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    with get_executor() as executor:
        await local_session(executor, arenas, 0, len(arenas), sampler)
        local_s, local_rewards = await timed(
            [local_session(executor, arenas, s, episodes, sampler) for s in range(sessions)]
        )
    n = sessions * episodes
    server_rate, local_rate = n / server_s, n / local_s
    load = os.getloadavg()[0]
    print(
        f"load average: {load:.2f}; {sessions} sessions x {episodes} episodes; distractors {distractors}/band"
    )
    print(f"    server: {server_rate:7.1f} episodes/s  {total_calls / server_s:8.1f} tool calls/s")
    print(f"in-process: {local_rate:7.1f} episodes/s  {total_calls / local_s:8.1f} tool calls/s")
    assert statistics.fmean(local_rewards) > 0.999
    print(
        f"RESULT server_episodes_per_s={server_rate:.1f} inprocess_episodes_per_s={local_rate:.1f} "
        f"ratio={server_rate / local_rate:.2f} golden_reward_mean={statistics.fmean(server_rewards):.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--sessions", type=int, default=64, help="Concurrent sessions (and tasks in process)."
    )
    parser.add_argument("--episodes", type=int, default=3, help="Golden episodes per session.")
    parser.add_argument("--quick", action="store_true", help="One episode per session.")
    parser.add_argument("--distractors", type=int, default=0, help="Distractor tools per band (0: none).")
    args = parser.parse_args()
    asyncio.run(run(args.sessions, 1 if args.quick else args.episodes, args.distractors))


if __name__ == "__main__":
    main()
