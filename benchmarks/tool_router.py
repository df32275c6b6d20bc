"""Tool calls per second through ToolRouter: live MCP (mcp-server-time), cassette replay, emulator.

    .venv/bin/python benchmarks/tool_router.py [--calls 200]

Live calls go to a real ``mcp-server-time`` over stdio, one after another and then 16 in flight on the
same session; replay serves the same calls from the cassette just recorded; the emulator runs against the
scripted OpenAI-compatible server (real HTTP, no model), so it measures our overhead, not a model's.
Machines are shared and noisy: compare the ratios within one run, not the absolute rates.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from astra_synth.llm.client import LLMClient
from astra_synth.testing.scripted import ScriptedLLM, json_reply
from astra_synth.tools.cassette import Cassette
from astra_synth.tools.emulator import EmulatorConfig, ToolEmulator
from astra_synth.tools.router import ToolRouter
from astra_synth.tools.spec import EmulatedTransport, ServerRecord, StdioTransport, ToolSpec

TOOLS = [
    ToolSpec(
        name="get_current_time",
        description="Get current time in a specific timezone",
        parameters={
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    )
]
ZONES = ["Europe/Paris", "Asia/Tokyo", "America/Lima", "Africa/Cairo", "Australia/Perth"]


async def rate(label: str, calls: int, concurrency: int, one: Callable[[int], Awaitable[object]]) -> float:
    semaphore = asyncio.Semaphore(concurrency)

    async def bounded(i: int) -> None:
        async with semaphore:
            await one(i)

    started = time.perf_counter()
    await asyncio.gather(*(bounded(i) for i in range(calls)))
    per_s = calls / (time.perf_counter() - started)
    print(f"{label:<34} {per_s:9.1f} calls/s")
    return per_s


async def main(calls: int) -> None:
    live = ServerRecord(
        id="time",
        title="Time",
        tools=TOOLS,
        transport=StdioTransport(command="python", args=["-m", "mcp_server_time"]),
    )
    emulated = live.model_copy(update={"id": "time-emulated", "transport": EmulatedTransport()})
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cassette.jsonl"
        with Cassette(path, "record") as cassette:
            async with ToolRouter(cassette=cassette) as router:
                await router.call(live, "get_current_time", {"timezone": "Etc/UTC"})  # start the server

                async def call_live(i: int) -> object:
                    return await router.call(live, "get_current_time", {"timezone": ZONES[i % len(ZONES)]})

                sequential = await rate("live MCP, sequential", calls, 1, call_live)
                parallel = await rate("live MCP, 16 in flight", calls, 16, call_live)
        with Cassette(path, "replay") as cassette:
            async with ToolRouter(cassette=cassette) as router:

                async def call_replay(i: int) -> object:
                    return await router.call(live, "get_current_time", {"timezone": ZONES[i % len(ZONES)]})

                replay = await rate("cassette replay, sequential", calls, 1, call_replay)
    with ScriptedLLM() as llm_server:
        llm_server.on(
            "simulate", json_reply({"status": "ok", "result": {"datetime": "2026-01-01T00:00:00Z"}})
        )
        async with LLMClient(llm_server.endpoint()) as llm:
            router = ToolRouter(emulator=ToolEmulator(llm, EmulatorConfig(failure_rate=0.0)))

            async def call_emulated(i: int) -> object:
                return await router.call(emulated, "get_current_time", {"timezone": "UTC"}, session=f"s{i}")

            emulator = await rate("emulator (scripted LLM), 16 in flight", calls, 16, call_emulated)
            await router.aclose()
    print(f"live 16-in-flight / sequential: {parallel / sequential:.2f}x")
    print(f"replay / live sequential:       {replay / sequential:.1f}x")
    print(f"emulator / live sequential:     {emulator / sequential:.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    asyncio.run(main(parser.parse_args().calls))
