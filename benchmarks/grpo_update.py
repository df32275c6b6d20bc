"""GRPO's loss forward + backward: TRL's full rows against one pass per distinct prompt, in the same run.

One GRPO group as our arenas make it (a ~600-token prompt of system text and tool schemas, eight completions
of 60–150 tokens, right-padded), on the embedded SmolLM2-135M with the trainer's fused LM head and this
machine's precision. ``--step-width`` pads the completions further, as TRL pads a whole step's to its longest
episode (a three-hop group beside single-hop ones): the shared forward drops what no row of a pass uses.
Each variant runs ``--repeats`` times, alternating; the median is reported.

    python benchmarks/grpo_update.py [--prompt 600] [--group 8] [--micro 4] [--step-width 300] [--repeats 3]

Last line: ``RESULT full_s=… shared_s=… speedup=…``.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from types import SimpleNamespace

import torch
from transformers import AutoModelForCausalLM
from trl.trainer.utils import add_fused_lm_head

from astra_synth.training.models import cpu_autocast, embedded_checkpoint
from astra_synth.training.shared_prompt import SharedPromptGRPOTrainer


def group_batch(
    prompt: int, group: int, seed: int = 0, step_width: int = 0
) -> tuple[torch.Tensor, torch.Tensor, int]:
    rng = random.Random(seed)
    prompt_ids = [rng.randrange(100, 49000) for _ in range(prompt)]
    lengths = [rng.randrange(60, 151) for _ in range(group)]
    width = max(*lengths, step_width)
    ids = [prompt_ids + [rng.randrange(100, 49000) for _ in range(n)] + [0] * (width - n) for n in lengths]
    mask = [[1] * (prompt + n) + [0] * (width - n) for n in lengths]
    return torch.tensor(ids), torch.tensor(mask), width


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--prompt", type=int, default=600)
    parser.add_argument("--group", type=int, default=8)
    parser.add_argument("--micro", type=int, default=4, help="Episodes per forward/backward pass.")
    parser.add_argument(
        "--step-width", type=int, default=0, help="Completion width of the step (default: the group's)."
    )
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bf16 = cpu_autocast("auto")
    model = AutoModelForCausalLM.from_pretrained(str(embedded_checkpoint()), dtype=torch.float32)
    add_fused_lm_head(model, temperature=0.7, outputs=("log_probs", "entropy"))
    model.train()
    trainer = SharedPromptGRPOTrainer.__new__(SharedPromptGRPOTrainer)  # only its loss forward is timed
    trainer.accelerator = SimpleNamespace(
        autocast=lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16), is_main_process=True
    )
    ids, mask, keep = group_batch(args.prompt, args.group, step_width=args.step_width)
    variants = {"full": super(SharedPromptGRPOTrainer, trainer), "shared": trainer}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, method in variants.items():
            model.zero_grad()
            start = time.perf_counter()
            for first in range(0, args.group, args.micro):
                rows = slice(first, first + args.micro)
                logps, _, _ = method._get_per_token_logps_and_entropies(
                    model, ids[rows], mask[rows], keep, compute_entropy=True
                )
                (logps * mask[rows, -keep:]).sum().backward()
            times[name].append(time.perf_counter() - start)
            print(f"{name:>6}: {times[name][-1]:.2f} s", flush=True)
    full, shared = statistics.median(times["full"]), statistics.median(times["shared"])
    print(
        f"group of {args.group}, prompt {args.prompt} tokens, completions padded to {keep}, "
        f"micro batch {args.micro}, bf16 {bf16}"
    )
    print(f"RESULT full_s={full:.2f} shared_s={shared:.2f} speedup={full / shared:.2f}")


if __name__ == "__main__":
    main()
