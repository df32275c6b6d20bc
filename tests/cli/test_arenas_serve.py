"""``astra arenas serve`` as a real process: token-guarded health, one golden episode, SIGTERM exits 0; with
``--distractors`` every reset offers the drawn tools too."""

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


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


async def wait_healthy(http: httpx.AsyncClient, headers: dict[str, str] | None = None) -> httpx.Response:
    for _ in range(600):
        try:
            return await http.get("/health", headers=headers)
        except httpx.TransportError:
            await asyncio.sleep(0.1)
    raise AssertionError("the server did not answer /health within 60 s")


async def test_serve_answers_and_shuts_down_on_sigterm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(TOKEN_ENV, "t0ken")
    port = free_port()
    command = [sys.executable, "-m", "astra_synth.cli", "arenas", "serve", str(SAMPLE), "--port", str(port)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            health = await wait_healthy(http, {"Authorization": "Bearer t0ken"})
            assert health.json()["arenas"] == 12 and health.json()["distractors_per_band"] == 0
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


async def test_serve_with_distractors_offers_the_drawn_tools(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    monkeypatch.setenv("ASTRA_CACHE_DIR", str(tmp_path))  # the pool's vectors land here, not in the machine's
    port = free_port()
    command = [
        *(sys.executable, "-m", "astra_synth.cli", "arenas", "serve", str(SAMPLE), "--port", str(port)),
        *("--distractors", "1", "--distractor-seed", "3"),
    ]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            assert (await wait_healthy(http)).json()["distractors_per_band"] == 1
        arena = read_arenas(SAMPLE)[0]
        async with RemoteArenaEnv(f"ws://127.0.0.1:{port}") as remote:
            _, tools = await remote.reset(arena_id=arena.id, episode=2)
            assert remote.distractors is not None and remote.distractors.names
            assert len(tools) == len(arena.tools) + len(remote.distractors.names)
            for turn in golden_turns(arena):
                await remote.step(parse_openai_calls(turn))
            assert (await remote.reward(arena.final_answer)).reward == pytest.approx(1.0)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        proc.kill()
        proc.wait()
    assert proc.stderr is not None and "distractors: up to 1 per band, seed 3" in proc.stderr.read()
    assert list((tmp_path / "embeddings").rglob("*.npy"))
