"""Episode generation speed: shared prompt prefixes + the in-place KV cache vs each prompt read in full into
transformers' ``DynamicCache`` (the generator before), same run, same arenas.

    .venv/bin/python benchmarks/episode_generation.py [--families 8] [--per-family 4] [--batch 16]

Plays one greedy episode per arena, as the learning-signal evaluation does (arenas of a few families, several
instances each), and one sampled GRPO-like roll (groups of 8 rollouts of one arena), with the embedded model,
once per generator. Greedy tokens agree except where bfloat16 rounding differs between the two batch shapes
(the fp32 equality is a unit test). Machines are shared and noisy: compare the ratio, not the absolute times.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, DynamicCache

import astra_synth.training.kv_cache as kv_cache
import astra_synth.training.turn_cache as turn_cache
from astra_synth.arenas.families import instantiate, load_families
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.experiments.learning_signal import play_greedy
from astra_synth.sandbox import get_executor
from astra_synth.training.episodes import EpisodeConfig, EpisodeRunner
from astra_synth.training.models import cpu_autocast, load_tokenizer, resolve_model

FAMILIES = Path(__file__).resolve().parents[1] / "examples" / "families"
EPISODE = EpisodeConfig(max_turns=3, max_new_tokens=96, max_completion_tokens=384, temperature=0.0)


def _each_alone(prompts: Sequence[Sequence[int]]) -> list[tuple[int, list[int]]]:
    """The generator before: every distinct prompt read in full."""
    return [(max(len(p) - 1, 0), [i]) for i, p in enumerate(prompts)]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", type=int, default=8, help="Families the greedy episodes come from.")
    parser.add_argument("--per-family", type=int, default=4, help="Instances of each.")
    parser.add_argument("--batch", type=int, default=16, help="Episodes generated together.")
    parser.add_argument("--groups", type=int, default=4, help="Sampled groups of 8.")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    model_path = resolve_model("embedded")
    variants = {
        "before": (DynamicCache, _each_alone),
        "now": (kv_cache.GrowingCache, turn_cache.shared_prefixes),
    }
    with get_executor() as executor:
        families = load_families([FAMILIES])
        step = max(len(families) // args.families, 1)
        arenas = instantiate(families[::step][: args.families], args.per_family, 0, executor)
        model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).eval()
        tokenizer = load_tokenizer(model_path)
        tokenizer.padding_side = "left"
        sampling = EPISODE.model_copy(update={"temperature": 0.7})
        sampled = EpisodeRunner(tokenizer, sampling, bf16=cpu_autocast("auto"))
        times: dict[str, tuple[float, float]] = {}
        tokens: dict[str, list[list[int]]] = {}
        for name, (cache, grouping) in variants.items():
            kv_cache.GrowingCache = cache  # type: ignore[misc]
            turn_cache.shared_prefixes = grouping
            began = time.perf_counter()
            played = play_greedy(model_path, arenas, executor, EPISODE, args.batch)
            greedy_s = time.perf_counter() - began
            torch.manual_seed(0)
            groups = [
                (ArenaEnv(a, executor), None)
                for a in arenas[:: args.per_family][: args.groups]
                for _ in range(8)
            ]
            began = time.perf_counter()
            sampled.play(model, groups)
            times[name] = (greedy_s, time.perf_counter() - began)
            tokens[name] = [e.completion_ids for e in played]
            print(
                f"{name:>6}: greedy {len(arenas)} episodes {greedy_s:6.1f} s,"
                f" sampled {len(groups)} rollouts {times[name][1]:6.1f} s"
            )
        kv_cache.GrowingCache, turn_cache.shared_prefixes = variants["now"]  # type: ignore[misc]
    same = sum(a == b for a, b in zip(tokens["before"], tokens["now"], strict=True))
    greedy = times["before"][0] / times["now"][0]
    roll = times["before"][1] / times["now"][1]
    print(
        f"RESULT greedy_speedup={greedy:.2f}x sampled_speedup={roll:.2f}x"
        f" same_greedy_episodes={same}/{len(arenas)}"
    )


if __name__ == "__main__":
    main()
