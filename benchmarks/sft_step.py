"""An SFT forward + backward with TRL's fused LM head over every position, against labelled positions only
(``training/lm_head.py``), in the same run.

One micro-batch as the learning-signal SFT makes it (4 tool conversations of 600–1250 tokens, right-padded,
labels on the assistant turns only, ~15 % of the tokens), on the embedded SmolLM2-135M with this machine's
precision. Each variant runs ``--repeats`` times, alternating; the median is reported.

    python benchmarks/sft_step.py [--rows 4] [--labelled 0.15] [--repeats 3]

Last line: ``RESULT all_positions_s=… labelled_only_s=… speedup=…``.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import statistics
import time

import torch
from transformers import AutoModelForCausalLM
from trl.trainer.utils import add_fused_lm_head

from astra_synth.training.lm_head import labelled_positions_only
from astra_synth.training.models import cpu_autocast, embedded_checkpoint


def sft_batch(rows: int, labelled: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random tokens shaped like our golden conversations: an assistant span after each tool result."""
    rng = random.Random(seed)
    lengths = [rng.randrange(600, 1251) for _ in range(rows)]
    width = max(lengths)
    ids = torch.zeros(rows, width, dtype=torch.long)
    mask = torch.zeros(rows, width, dtype=torch.long)
    labels = torch.full((rows, width), -100)
    for r, n in enumerate(lengths):
        ids[r, :n] = torch.tensor([rng.randrange(100, 49000) for _ in range(n)])
        mask[r, :n] = 1
        span = int(n * labelled) // 3  # three assistant turns
        for end in (n // 2, 3 * n // 4, n):
            labels[r, end - span : end] = ids[r, end - span : end]
    return ids, mask, labels


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=4)
    parser.add_argument("--labelled", type=float, default=0.15, help="Share of tokens with a label.")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    bf16 = cpu_autocast("auto")
    model = AutoModelForCausalLM.from_pretrained(str(embedded_checkpoint()), dtype=torch.float32)
    add_fused_lm_head(model, outputs=("log_probs", "entropy", "is_top1"))  # what SFTTrainer adds
    model.train()
    ids, mask, labels = sft_batch(args.rows, args.labelled)
    variants = {"all_positions": contextlib.nullcontext, "labelled_only": labelled_positions_only}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, context in variants.items():
            model.zero_grad()
            start = time.perf_counter()
            with context(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                out = model(input_ids=ids, attention_mask=mask, labels=labels, fused_lm_head=True)
            out.loss.backward()
            times[name].append(time.perf_counter() - start)
            print(f"{name:>13}: {times[name][-1]:.2f} s", flush=True)
    full, compact = statistics.median(times["all_positions"]), statistics.median(times["labelled_only"])
    print(f"{args.rows} rows × {ids.size(1)} tokens, {int((labels != -100).sum())} labelled, bf16 {bf16}")
    print(f"RESULT all_positions_s={full:.2f} labelled_only_s={compact:.2f} speedup={full / compact:.2f}")


if __name__ == "__main__":
    main()
