"""LLM calls per surviving arena under each endpoint kind of docs/endpoints.md, on the scripted Porto seed.

    .venv/bin/python benchmarks/endpoint_costs.py

The Porto script (``astra_synth.testing.scripts.script_porto``: a careful strong model's answers to the
bundled Porto seed) is replayed by the scripted server playing each kind of model: a chat model, a Qwen3
thinking model behind vLLM / SGLang (``thinking_tokens`` of reasoning before every answer), and an OpenAI
reasoning model (hidden reasoning, refuses ``max_tokens`` and a temperature). Each profile runs pipeline B
into a fresh folder with a fresh cache and prints what it cost. Counts are exact (the script is
deterministic); tokens use the scripted server's four-characters-a-token estimate.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from astra_synth.arenas.pipeline import run_arenas
from astra_synth.arenas.seeds import SeedSource
from astra_synth.testing.scripted import ScriptedLLM
from astra_synth.testing.scripts import arenas_config, script_porto

SEEDS = Path(__file__).resolve().parents[1] / "examples" / "seeds" / "questions.en.jsonl"
THOUGHT = 3000  # reasoning tokens before each answer: Qwen3-32B's order of magnitude on our prompts

# name → (scripted server options, endpoint overrides)
PROFILES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "chat model (OpenAI chat, vLLM thinking off)": ({}, {"thinking": "off"}),
    "thinking on, reasoning_tokens 4096 (default)": ({"thinking_tokens": THOUGHT}, {"thinking": "on"}),
    "thinking on, reasoning_tokens 0": (
        {"thinking_tokens": THOUGHT},
        {"thinking": "on", "reasoning_tokens": 0},
    ),
    "OpenAI reasoning model, auto-detected": (
        {"thinking_tokens": THOUGHT, "openai_reasoning": True},
        {"reasoning_tokens": 4096},
    ),
    "OpenAI reasoning model, configured": (
        {"thinking_tokens": THOUGHT, "openai_reasoning": True},
        {"reasoning_tokens": 4096, "token_limit_param": "max_completion_tokens", "temperature_param": "omit"},
    ),
}


async def profile(server_options: dict[str, Any], endpoint: dict[str, Any], folder: Path) -> dict[str, Any]:
    with ScriptedLLM(**server_options) as server:
        script_porto(server)
        source = SeedSource(mode="questions", language="en", file=SEEDS, max_hops=4, limit=1)
        config = arenas_config(server, folder, [source], contamination={"enabled": False})
        config = config.model_copy(update={"endpoint": config.endpoint.model_copy(update=endpoint)})
        summary = await run_arenas(config, folder / "run", progress=False)
        usage = list(summary.usage.values())
        return {
            "arenas": summary.ok,
            "requests": len(server.chat_requests()),
            "ok_calls": summary.llm_calls,
            "failed": sum(u.failed_calls for u in usage),
            "completion_tokens": sum(u.completion_tokens for u in usage),
            "on_rejects": sum(r.rejected_llm_calls for r in summary.stages),
            "per_stage": {r.stage: r.llm_calls for r in summary.stages if r.llm_calls},
        }


async def main() -> None:
    print(
        "| endpoint | arenas | HTTP requests | calls per arena | failed (400) | completion tokens "
        "| per stage |"
    )
    print("|---|---|---|---|---|---|---|")
    for name, (server_options, endpoint) in PROFILES.items():
        with tempfile.TemporaryDirectory() as tmp:
            r = await profile(server_options, endpoint, Path(tmp))
        per_arena = f"{r['requests'] / r['arenas']:.0f}" if r["arenas"] else "no arena"
        stages = ", ".join(f"{k} {v}" for k, v in r["per_stage"].items())
        print(
            f"| {name} | {r['arenas']} | {r['requests']} | {per_arena} | {r['failed']} | "
            f"{r['completion_tokens']} | {stages} |"
        )


if __name__ == "__main__":
    asyncio.run(main())
