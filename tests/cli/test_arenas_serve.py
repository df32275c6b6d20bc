"""``astra arenas serve`` as a real process: token-guarded health, one golden episode, SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from astra_synth.agent.chat import parse_openai_calls
from astra_synth.arenas.env_protocol import TOKEN_ENV
from astra_synth.arenas.golden import golden_turns
from astra_synth.arenas.records import read_arenas
from astra_synth.arenas.remote import RemoteArenaEnv

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


async def test_serve_answers_and_shuts_down_on_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "t0ken")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [sys.executable, "-m", "astra_synth.cli", "arenas", "serve", str(SAMPLE), "--port", str(port)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            for _ in range(600):
                try:
                    health = await http.get("/health", headers={"Authorization": "Bearer t0ken"})
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.1)
            assert health.json()["arenas"] == 12
            assert (await http.get("/health")).status_code == 401
        arena = read_arenas(SAMPLE)[0]
        async with RemoteArenaEnv(f"ws://127.0.0.1:{port}") as remote:
            await remote.reset(arena_id=arena.id)
            for turn in golden_turns(arena):
                await remote.step(parse_openai_calls(turn))
            assert (await remote.reward(arena.final_answer)).reward == pytest.approx(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert proc.stderr is not None and "arena server on ws://" in proc.stderr.read()
