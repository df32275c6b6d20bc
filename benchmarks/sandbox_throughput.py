"""Sandbox throughput: the fork-server pool against a fresh interpreter per call, in the same run.

    .venv/bin/python benchmarks/sandbox_throughput.py [--quick] [--calls 3000] [--baseline-calls 200]

Two tools (a trivial ``add`` and one that imports and uses json, math and datetime), two client threads,
the default limits. Per executor and tool: calls/s, p50/p99 latency of a call as the client sees it, and
CPU ms per call: the CPU time of *every* process involved (this client, the workers or interpreters and
all their children, summed with ``os.times`` after the executor is closed and reaped), minus that of an
executor that starts, serves one warm-up call and stops. CPU per call is the noise-robust number on a
shared machine: ``cores / CPU per call`` is what idle cores could sustain ("capacity").

Last line: ``RESULT sandbox_speedup=<forkserver/subprocess> forkserver_calls_per_s=<n>`` (calls/s of the
trivial tool).
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import SandboxLimits

TRIVIAL = "def add(a, b):\n    return a + b\n"
STDLIB = """
import json, math, datetime

def schedule(start, days, rate):
    day = datetime.date.fromisoformat(start) + datetime.timedelta(days=days)
    return json.loads(json.dumps({"day": day.isoformat(), "cost": round(math.sqrt(days) * rate, 4)}))
"""
TOOLS: dict[str, tuple[str, str, Callable[[int], dict[str, Any]]]] = {
    "trivial": (TRIVIAL, "add", lambda i: {"a": i, "b": 1}),
    "stdlib": (STDLIB, "schedule", lambda i: {"start": "2025-01-01", "days": i % 365, "rate": 2.5}),
}


@dataclass
class Run:
    calls_per_s: float
    p50_ms: float
    p99_ms: float
    cpu_ms_per_call: float
    failures: int


def _cpu_s() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _serve(kind: str, tool: str, calls: int, clients: int) -> tuple[float, list[float], int, float]:
    """(wall s, latencies s, failures, CPU s of everything) for ``calls`` calls after one warm-up."""
    source, fn, make_args = TOOLS[tool]
    options: dict[str, Any] = {"workers": os.cpu_count() or 2} if kind == "forkserver" else {}
    cpu0 = _cpu_s()
    executor = get_executor(kind, SandboxLimits(timeout_s=10.0), **options)
    env = executor.load(source)
    assert executor.execute(env, fn, make_args(0)).ok, "warm-up call failed"
    latencies: list[float] = []
    failures = 0
    counter = itertools.count()
    lock = threading.Lock()

    def client() -> None:
        nonlocal failures
        while (i := next(counter)) < calls:
            t0 = time.perf_counter()
            result = executor.execute(env, fn, make_args(i))
            elapsed = time.perf_counter() - t0
            with lock:
                latencies.append(elapsed)
                failures += not result.ok

    threads = [threading.Thread(target=client) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    executor.close()
    return wall, latencies, failures, _cpu_s() - cpu0


def measure(kind: str, tool: str, calls: int, clients: int) -> Run:
    _, _, _, idle_cpu = _serve(kind, tool, 0, clients)  # start + warm-up + stop, no measured calls
    wall, latencies, failures, cpu = _serve(kind, tool, calls, clients)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return Run(
        calls_per_s=calls / wall,
        p50_ms=q[49] * 1000,
        p99_ms=q[98] * 1000,
        cpu_ms_per_call=max(cpu - idle_cpu, 0.0) / calls * 1000,
        failures=failures,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="Few calls: finishes in well under a minute.")
    parser.add_argument("--calls", type=int, default=3000, help="Fork-server calls per tool.")
    parser.add_argument("--baseline-calls", type=int, default=200, help="Subprocess calls per tool.")
    parser.add_argument("--clients", type=int, default=2, help="Client threads.")
    args = parser.parse_args()
    calls = {
        "forkserver": 400 if args.quick else args.calls,
        "subprocess": 30 if args.quick else args.baseline_calls,
    }
    cores = os.cpu_count() or 2
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; {cores} cores")
    header = ("executor", "tool", "calls/s", "p50 ms", "p99 ms", "CPU ms", "capacity/s")
    print("{:<11} {:<8} {:>8} {:>7} {:>7} {:>7} {:>10}".format(*header))
    runs: dict[tuple[str, str], Run] = {}
    for tool in TOOLS:
        for kind in ("forkserver", "subprocess"):
            run = runs[kind, tool] = measure(kind, tool, calls[kind], args.clients)
            capacity = cores * 1000 / run.cpu_ms_per_call if run.cpu_ms_per_call else float("inf")
            print(
                f"{kind:<11} {tool:<8} {run.calls_per_s:8.1f} {run.p50_ms:7.2f} {run.p99_ms:7.2f} "
                f"{run.cpu_ms_per_call:7.2f} {capacity:10.0f}"
                + (f"  FAILURES={run.failures}" if run.failures else "")
            )
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    fork, sub = runs["forkserver", "trivial"], runs["subprocess", "trivial"]
    speedup = fork.calls_per_s / sub.calls_per_s
    print(f"RESULT sandbox_speedup={speedup:.1f} forkserver_calls_per_s={fork.calls_per_s:.0f}")


if __name__ == "__main__":
    main()
