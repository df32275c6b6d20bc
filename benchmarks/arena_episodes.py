"""ArenaEnv episodes per second on the sample arenas: fork server vs the subprocess baseline, same run.

    .venv/bin/python benchmarks/arena_episodes.py [--episodes 3]

One episode = a new ArenaEnv on a sample arena, reset, every golden call in dependency layers (parallel
within a layer), reward() — i.e. the sandbox work of one perfect rollout (golden calls are executed once
more for the reference results). Machines are shared and noisy: compare the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from astra_synth.arenas.golden import play_golden
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "arenas.sample.jsonl"


def episode(arena: Arena, executor: ToolExecutor) -> float:
    env = ArenaEnv(arena, executor)
    play_golden(env)
    return env.reward().reward


def rate(kind: str, arenas: list[Arena], episodes: int) -> tuple[float, float]:
    """(episodes/s, tool executions/s) over ``episodes`` passes through all arenas."""
    with get_executor(kind) as executor:
        for arena in arenas:  # warm-up: load every tool source once
            episode(arena, executor)
        start = time.perf_counter()
        for _ in range(episodes):
            for arena in arenas:
                assert episode(arena, executor) > 0.999
        elapsed = time.perf_counter() - start
    calls = 2 * sum(s.golden_call is not None for a in arenas for s in a.subtasks)
    return episodes * len(arenas) / elapsed, episodes * calls / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--episodes", type=int, default=3, help="Passes through the 12 sample arenas.")
    args = parser.parse_args()
    arenas = read_arenas(SAMPLE)
    print(f"load average: {os.getloadavg()[0]:.2f}")
    results = {kind: rate(kind, arenas, args.episodes) for kind in ("subprocess", "forkserver")}
    for kind, (episodes_s, calls_s) in results.items():
        print(f"{kind:>10}: {episodes_s:7.1f} episodes/s  {calls_s:8.1f} tool executions/s")
    ratio = results["forkserver"][0] / results["subprocess"][0]
    print(f"RESULT forkserver/subprocess episode rate = {ratio:.1f}x")


if __name__ == "__main__":
    main()
