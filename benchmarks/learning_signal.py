"""Does the embedded policy learn tool use from arenas, and does GRPO add what SFT cannot? (issue 14)

Instantiates the family curriculum (seeded), runs SFT on the warm-up families and GRPO on the RL families,
and scores base / SFT / SFT+GRPO on held-out warm-up instances, held-out RL instances and the unseen families
(mean F1 with a 95 % interval over the episodes, success rate, calls per arena; and each gain — SFT over
base, GRPO over SFT — with a paired interval over the arenas both policies played), all through
:func:`astra_synth.experiments.learning_signal.run_learning_signal`. Re-running with the same ``--out``
resumes after the last finished step.

    python benchmarks/learning_signal.py            # full run (targets: <= 30 min on 2 idle cores)
    python benchmarks/learning_signal.py --quick    # smaller (<= 12 min)

The last line is ``RESULT warm_f1_base=… warm_f1_sft=… rl_f1_base=… rl_f1_sft=… rl_f1_rl=… unseen_f1_base=…
unseen_f1_sft=… unseen_f1_rl=… wall_s=…``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from rich.console import Console

from astra_synth.experiments.learning_signal import (
    LearningSignalConfig,
    quick_config,
    run_learning_signal,
)
from astra_synth.sandbox import get_executor

FAMILIES = Path(__file__).resolve().parents[1] / "examples" / "families"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--families", type=Path, action="append", default=None)
    parser.add_argument("--out", type=Path, default=None, help="Work folder (default: a temporary one).")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="Smaller sizes (<= 12 min target).")
    args = parser.parse_args()
    families = args.families or [FAMILIES]
    config = (
        quick_config(families, seed=args.seed)
        if args.quick
        else LearningSignalConfig(families=families, seed=args.seed)
    )
    out = args.out or Path(tempfile.mkdtemp(prefix="astra-learning-signal-"))
    console = Console()
    console.print(f"work: {out}  load: {os.getloadavg()}")
    with get_executor() as executor:
        result = run_learning_signal(config, out, executor, console)
    console.print(
        f"SFT: {result.sft_examples} conversations, {result.sft_steps} steps, loss {result.sft_losses}"
    )
    console.print(f"SFT {result.sft_wall_s:.0f} s, GRPO {result.rl_wall_s:.0f} s")
    console.print(f"GRPO: {result.rl_steps} steps, reward per step {result.rl_rewards}")
    if len(result.rl_rewards) >= 4:  # --quick's target: the last steps above the first (same arenas)
        first, last = result.rl_rewards[:2], result.rl_rewards[-2:]
        console.print(f"GRPO reward, first two steps {sum(first) / 2:.3f} → last two {sum(last) / 2:.3f}")
    for s in result.scores:
        console.print(
            f"{s.stage:>4} {s.split:<7} F1 {s.f1:.3f} ± {s.ci95:.3f}  success {s.success_rate:.2f}  "
            f"calls/arena {s.calls_per_arena:.2f}  clipped {s.clipped:.2f}  n={s.episodes}"
        )
    for gain in result.gains():  # the targets compare policies on the same arenas: paired intervals
        console.print(gain.describe())
    console.print(f"load at the end: {os.getloadavg()}")
    print(result.result_line())


if __name__ == "__main__":
    main()
