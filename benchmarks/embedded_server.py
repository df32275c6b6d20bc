"""Embedded llama.cpp server: start-up time and generation speed of a short answer.

    .venv/bin/python benchmarks/embedded_server.py [--starts 3] [--answers 5] [--threads N]

Start time = process spawn until ``/v1/models`` answers. Speed = completion tokens / wall time of one
non-streaming request (so it includes prompt processing and HTTP), temperature 0. Machines are shared and
noisy: the load average is printed with the numbers.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import httpx

from astra_synth.llm.local import MODEL_ALIAS, EmbeddedServer, LocalServerConfig, default_threads

PROMPT = "Write two short sentences about the sea."


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--starts", type=int, default=3, help="How many cold starts to time.")
    parser.add_argument("--answers", type=int, default=5, help="How many short answers to time.")
    parser.add_argument("--threads", type=int, default=default_threads(), help="llama.cpp threads.")
    parser.add_argument("--max-tokens", type=int, default=64)
    args = parser.parse_args()
    config = LocalServerConfig(n_threads=args.threads)

    starts = []
    for _ in range(args.starts):
        with EmbeddedServer(config) as server:
            assert server.start_time_s is not None
            starts.append(server.start_time_s)

    rates, tokens = [], []
    with EmbeddedServer(config) as server, httpx.Client(timeout=120) as http:
        for i in range(args.answers):
            t0 = time.monotonic()
            resp = http.post(
                f"{server.base_url}/chat/completions",
                json={
                    "model": MODEL_ALIAS,
                    "messages": [{"role": "user", "content": f"{PROMPT} ({i})"}],
                    "max_tokens": args.max_tokens,
                    "temperature": 0.0,
                },
            )
            elapsed = time.monotonic() - t0
            resp.raise_for_status()
            n = int(resp.json()["usage"]["completion_tokens"])
            tokens.append(n)
            rates.append(n / elapsed)

    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"cpus={os.cpu_count()} threads={args.threads} load average={load}")
    print(f"start (spawn → /v1/models): median {statistics.median(starts):.2f} s, all {_fmt(starts)}")
    print(
        f"short answer ({statistics.median(tokens):.0f} tokens median): "
        f"median {statistics.median(rates):.1f} tok/s, all {_fmt(rates)}"
    )


def _fmt(values: list[float]) -> str:
    return "[" + ", ".join(f"{v:.2f}" for v in values) + "]"


if __name__ == "__main__":
    main()
