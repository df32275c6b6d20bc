"""Overhead of the stage runner + LLMClient against an endpoint with a fixed latency.

    .venv/bin/python benchmarks/llm_overhead.py [--quick] [--requests 2000] [--concurrency 256]

The scripted OpenAI-compatible server runs in its own process (so it does not share our GIL) and answers
every chat request after a fixed latency ``L``. With ``C`` requests in flight the ideal throughput is
``C / L``. Three measurements in the same run, so a noisy machine hits them alike:

- *server*: a bare HTTP/1.1 keep-alive client (raw asyncio streams): what the server and machine allow;
- *client*: ``asyncio.gather`` over ``LLMClient.chat``: the LLM layer's own cost;
- *runner*: a one-stage ``Pipeline`` (one chat call per item) writing a real run directory.

CPU milliseconds per request, of this process and of the server's, are printed too: on a shared machine
they say which side limits the wall-clock ratio (sustaining ``C / L`` needs well under ``L / C`` of CPU
per request on each side, each with a core to itself).

Even with zero overhead the last, partly filled wave caps the ratio below 1 (0.977 at 2,000 × 256; the
"floor" line). The last line is ``RESULT llm_overhead_ratio=<achieved/ideal>`` for the runner path.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import tempfile
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel

from astra_synth.config import EndpointConfig
from astra_synth.llm.client import LLMClient
from astra_synth.llm.ledger import Ledger
from astra_synth.runs.pipeline import Pipeline, RunOptions
from astra_synth.runs.stage import StageContext
from astra_synth.testing.scripted import ScriptedLLM


class Prompt(BaseModel):
    text: str


class Answer(BaseModel):
    text: str


class Echo:
    """One chat call per item: the thinnest LLM-backed stage there is."""

    name = "echo"
    version = "1"
    input_model = Prompt

    async def process(self, item: Prompt, ctx: StageContext) -> Answer:
        assert ctx.llm is not None
        result = await ctx.llm.chat([{"role": "user", "content": item.text}], stage=ctx.stage)
        return Answer(text=str(result.message["content"]))


def _answer(body: dict[str, Any]) -> str:
    return "ok"


def _serve(conn: Connection, latency_s: float) -> None:
    with ScriptedLLM(handler=_answer, latency_s=latency_s) as server:
        conn.send(server.base_url)
        conn.recv()  # until the parent says stop


def _messages(tag: str, i: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"{tag} {i}"}]


async def _raw_connection(host: str, port: int, bodies: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    for body in bodies:
        head = f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        writer.write(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
        await writer.drain()
        header = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":", 1)[1])
            for line in header.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )
        await reader.readexactly(length)
    writer.close()


async def _server_only(base_url: str, n: int, concurrency: int) -> None:
    url = urlsplit(base_url)
    assert url.hostname is not None and url.port is not None
    bodies = [json.dumps({"model": "scripted", "messages": _messages("raw", i)}).encode() for i in range(n)]
    await asyncio.gather(
        *(_raw_connection(url.hostname, url.port, bodies[c::concurrency]) for c in range(concurrency))
    )


async def _client_only(client: LLMClient, n: int) -> None:
    await asyncio.gather(*(client.chat(_messages("client", i), stage="client") for i in range(n)))


async def _runner(client: LLMClient, n: int, concurrency: int, run_dir: Path) -> None:
    inputs = [Prompt(text=f"runner {i}") for i in range(n)]
    options = RunOptions(concurrency=concurrency, progress=False)
    result = await Pipeline("llm-overhead", [Echo()]).run(inputs, run_dir, options, llm=client)
    if result.status != "finished" or len(result.outputs) != n:
        raise RuntimeError(f"benchmark run incomplete: {result.status}, {len(result.outputs)} of {n}")


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Sample:
    wall_s: float
    cpu_s: float  # this process (client side)
    server_cpu_s: float


async def _timed(coro: Awaitable[None], server_pid: int) -> Sample:
    wall, cpu, server_cpu = time.perf_counter(), time.process_time(), _cpu_s(server_pid)
    await coro
    return Sample(time.perf_counter() - wall, time.process_time() - cpu, _cpu_s(server_pid) - server_cpu)


async def _measure(base_url: str, server_pid: int, n: int, concurrency: int) -> dict[str, Sample]:
    endpoint = EndpointConfig(base_url=base_url, model="scripted", max_concurrency=concurrency, timeout_s=60)
    results = {"server": await _timed(_server_only(base_url, n, concurrency), server_pid)}
    async with LLMClient(endpoint, ledger=Ledger()) as client:
        # Warm-up: open the connection pool so the two client measurements start from the same state.
        await asyncio.gather(*(client.chat(_messages("warm", i), stage="warm") for i in range(concurrency)))
        results["client"] = await _timed(_client_only(client, n), server_pid)
        with tempfile.TemporaryDirectory() as tmp:
            results["runner"] = await _timed(_runner(client, n, concurrency, Path(tmp) / "run"), server_pid)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument(
        "--concurrency", type=int, default=256, help="Items in flight = endpoint max_concurrency."
    )
    parser.add_argument("--latency", type=float, default=0.2, help="Server latency per request (s).")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="One full wave (concurrency requests): a smoke run well under a minute.",
    )
    args = parser.parse_args()
    n = args.concurrency if args.quick else args.requests

    spawn = multiprocessing.get_context("spawn")
    parent, child = spawn.Pipe()
    server = spawn.Process(target=_serve, args=(child, args.latency), daemon=True)
    server.start()
    try:
        assert server.pid is not None
        results = asyncio.run(_measure(parent.recv(), server.pid, n, args.concurrency))
    finally:
        parent.send("stop")
        server.join(timeout=10)

    ideal = args.concurrency / args.latency
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{n} requests, {args.concurrency} in flight, latency {args.latency * 1000:.0f} ms")
    print(f"load average {load} on {os.cpu_count()} cores")
    waves = -(-n // args.concurrency)
    print(f"{'ideal':<8}{ideal:9.1f} req/s   (concurrency / latency)")
    floor = n / (waves * args.latency)
    print(f"{'floor':<8}{floor:9.1f} req/s   ratio {floor / ideal:.3f}   (zero overhead; waves: {waves})")
    for name, sample in results.items():
        rate = n / sample.wall_s
        here, there = sample.cpu_s / n * 1000, sample.server_cpu_s / n * 1000
        print(
            f"{name:<8}{rate:9.1f} req/s   ratio {rate / ideal:.3f}   {sample.wall_s:6.2f} s wall   "
            f"CPU/request {here:.2f} ms here, {there:.2f} ms server"
        )
    print(f"RESULT llm_overhead_ratio={n / results['runner'].wall_s / ideal:.3f}")


if __name__ == "__main__":
    main()
