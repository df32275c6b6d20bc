"""The learning-signal experiment at GPU size, with rollout throughput (issue 14's GPU target).

Same data, splits and scoring as ``benchmarks/learning_signal.py`` (both call
:func:`astra_synth.experiments.learning_signal.run_learning_signal`), with more SFT conversations, larger
GRPO groups and more steps; bf16 and gradient checkpointing switch on by themselves on CUDA. tokens/s counts
every prompt and completion token TRL processed during GRPO (``num_tokens``) over the GRPO wall time,
generation included. ``--quick`` runs tiny settings on CPU so the script itself stays exercised.

    python benchmarks/gpu_rl.py --rl-steps 60
    python benchmarks/gpu_rl.py --quick

The last line is the learning-signal ``RESULT`` line with ``tokens_per_s=…`` appended.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from rich.console import Console

from astra_synth.experiments.learning_signal import LearningSignalConfig, quick_config, run_learning_signal
from astra_synth.sandbox import get_executor
from astra_synth.training.metrics import read_metrics

FAMILIES = Path(__file__).resolve().parents[1] / "examples" / "families"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: a temporary one).")
    parser.add_argument("--model", default="embedded")
    parser.add_argument("--rl-steps", type=int, default=60)
    parser.add_argument("--rl-lr", type=float, default=2e-5)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--groups", type=int, default=8)
    parser.add_argument("--sft-per-family", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Tiny CPU settings (a smoke run).")
    args = parser.parse_args()
    if args.quick:
        config = quick_config([FAMILIES], seed=args.seed, model=args.model)
    else:
        base = LearningSignalConfig(families=[FAMILIES], seed=args.seed, model=args.model)
        rl = base.rl.model_copy(
            update={
                "max_steps": args.rl_steps,
                "learning_rate": args.rl_lr,
                "group_size": args.group_size,
                "groups_per_device": args.groups,
                "save_steps": max(args.rl_steps // 4, 1),
            }
        )
        config = base.model_copy(update={"sft_per_family": args.sft_per_family, "rl": rl, "eval_batch": 64})
    out = args.out or Path(tempfile.mkdtemp(prefix="astra-gpu-rl-"))
    console = Console()
    with get_executor() as executor:
        result = run_learning_signal(config, out, executor, console)
    metrics = read_metrics(out / "rl" / "metrics.jsonl")
    tokens = max((float(r.get("num_tokens") or 0) for r in metrics), default=0.0)
    seconds = result.rl_wall_s or float("nan")
    console.print(json.dumps([s.model_dump(exclude={"families"}) for s in result.scores], indent=1))
    console.print(f"GRPO reward per step: {result.rl_rewards}")
    print(f"{result.result_line()} tokens_per_s={tokens / seconds:.1f}")


if __name__ == "__main__":
    main()
