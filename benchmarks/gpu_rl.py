"""SFT warm-up → held-out arena F1 → N GRPO steps → held-out arena F1, with rollout throughput.

Meant for a GPU machine (bf16, gradient checkpointing switch on by themselves); ``--quick`` runs tiny settings
on CPU so the script itself stays tested. The arenas are split once, seeded: the held-out ones are never
trained on (neither SFT nor RL). Held-out F1 is the mean reward of one greedy episode per held-out arena
(no distractors, so before and after see the same tool lists). tokens/s counts every prompt and completion
token TRL processed during GRPO (``num_tokens``) over the GRPO wall time, generation included.

    python benchmarks/gpu_rl.py --arenas examples/arenas.sample.jsonl --rl-steps 50
    python benchmarks/gpu_rl.py --quick

The last line is ``RESULT heldout_f1_before=… heldout_f1_after=… tokens_per_s=…``.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path

from astra_synth.arenas.golden import golden_example
from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.training.batching import FillConfig
from astra_synth.training.episodes import EpisodeConfig, EpisodeRunner
from astra_synth.training.grpo import RLConfig, run_rl
from astra_synth.training.metrics import read_metrics
from astra_synth.training.models import load_tokenizer, resolve_model
from astra_synth.training.sft import SFTConfig, run_sft

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "arenas.sample.jsonl"


def heldout_f1(model_path: str, arenas: list[Arena], executor: ToolExecutor, episode: EpisodeConfig) -> float:
    """Mean F1 of one greedy episode per arena."""
    import torch
    from transformers import AutoModelForCausalLM

    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32).to(device)
    tokenizer = load_tokenizer(model_path)
    greedy = episode.model_copy(update={"temperature": 0.0})
    runner = EpisodeRunner(tokenizer, greedy)
    episodes = runner.play(model, [(ArenaEnv(a, executor), None) for a in arenas])
    for ep in episodes:
        calls = [m.get("tool_calls") for m in ep.messages if m["role"] == "assistant"]
        shown = json.dumps(calls)[:160]
        print(f"  {ep.arena_id}: f1={ep.breakdown.reward:.3f} calls={ep.breakdown.calls} {shown}")
    return sum(e.breakdown.reward for e in episodes) / len(episodes)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--arenas", type=Path, default=SAMPLE)
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: a temporary one).")
    parser.add_argument("--heldout", type=int, default=3, help="Arenas kept out of training.")
    parser.add_argument("--sft-epochs", type=float, default=3.0)
    parser.add_argument("--sft-lr", type=float, default=1e-4)
    parser.add_argument("--rl-steps", type=int, default=30)
    parser.add_argument("--rl-lr", type=float, default=2e-6)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--groups", type=int, default=4)
    parser.add_argument("--max-turns", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--max-completion", type=int, default=1024)
    parser.add_argument("--max-rolls", type=int, default=4, help="Batch-filling rolls per step.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--quick", action="store_true", help="Tiny CPU settings (a smoke run of this script)."
    )
    args = parser.parse_args()
    if args.quick:
        args.sft_epochs, args.rl_steps, args.group_size, args.groups, args.max_rolls = 0.5, 1, 2, 1, 1
        args.max_turns, args.max_new_tokens, args.max_completion, args.heldout = 2, 48, 160, 2

    arenas = read_arenas(args.arenas)
    random.Random(args.seed).shuffle(arenas)
    held, train = arenas[: args.heldout], arenas[args.heldout :]
    if args.quick:  # the shortest conversations keep a CPU smoke run to minutes
        train = sorted(train, key=lambda a: len(a.model_dump_json()))[:2]
    episode = EpisodeConfig(
        max_turns=args.max_turns,
        max_new_tokens=args.max_new_tokens,
        max_completion_tokens=args.max_completion,
    )
    work = args.out or Path(tempfile.mkdtemp(prefix="astra-gpu-rl-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"work: {work}  train arenas: {len(train)}  held-out: {[a.id for a in held]}")

    with get_executor() as executor:
        golden = work / "golden.jsonl"
        golden.write_text("".join(golden_example(a, executor).model_dump_json() + "\n" for a in train))
        started = time.perf_counter()
        sft = run_sft(
            [golden],
            work / "sft",
            SFTConfig(
                model=resolve_model(args.model),
                epochs=args.sft_epochs,
                learning_rate=args.sft_lr,
                batch_size=2,
                max_length=1024,
                warmup_ratio=0.0,
            ),
        )
        print(f"sft: {sft.steps} steps in {time.perf_counter() - started:.0f} s, losses {sft.losses}")
        before = heldout_f1(str(sft.out), held, executor, episode)
        print(f"held-out F1 before GRPO: {before:.3f}")
        started = time.perf_counter()
        rl = run_rl(
            train,
            executor,
            work / "rl",
            RLConfig(
                model=str(sft.out),
                max_steps=args.rl_steps,
                group_size=args.group_size,
                groups_per_device=args.groups,
                learning_rate=args.rl_lr,
                episode=episode,
                fill=FillConfig(max_rolls=args.max_rolls),
                save_steps=max(args.rl_steps, 1),
                seed=args.seed,
            ),
        )
        seconds = time.perf_counter() - started
        tokens = max(
            (float(r.get("num_tokens") or 0) for r in read_metrics(work / "rl" / "metrics.jsonl")), default=0
        )
        print(f"grpo: {rl.steps} steps in {seconds:.0f} s, rewards {rl.rewards}")
        after = heldout_f1(str(rl.out), held, executor, episode)
    speed = tokens / seconds
    print(f"RESULT heldout_f1_before={before:.4f} heldout_f1_after={after:.4f} tokens_per_s={speed:.1f}")


if __name__ == "__main__":
    main()
