"""SFT steps with each shared prompt prefix run once (``training/shared_prefix_sft.py``) against TRL's
``SFTTrainer`` over full rows, same run, same golden conversations.

The rows are what the learning-signal SFT trains on: golden conversations of the curriculum's warm-up
families, ``--per-family`` each. Each trainer runs ``--steps`` optimiser steps of 4 rows from the embedded
model at this machine's precision; the shared-prefix trainer draws its batches by prefix group, TRL's at
random (so their loss curves differ). Loss and gradients are equal on the same batch (a unit test).
Machines are shared and noisy: compare the ratio.

    python benchmarks/sft_shared_prefix.py [--per-family 6] [--steps 8]

Last line: ``RESULT trl_s_per_step=… shared_s_per_step=… speedup=…``.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from astra_synth.arenas.families import instantiate, load_families
from astra_synth.arenas.golden import golden_example
from astra_synth.experiments.learning_signal import spread
from astra_synth.sandbox import get_executor
from astra_synth.training.sft import SFTConfig, run_sft

FAMILIES = Path(__file__).resolve().parents[1] / "examples" / "families"


def _trl_trainer() -> type:
    """TRL's ``SFTTrainer`` taking (and ignoring) the shared-prefix trainer's ``prefix_rows``."""
    from trl.trainer.sft_trainer import SFTTrainer

    class FullRows(SFTTrainer):
        def __init__(self, *args: Any, prefix_rows: int = 1, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)

    return FullRows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--per-family", type=int, default=6, help="Golden conversations per warm-up family.")
    parser.add_argument("--steps", type=int, default=8, help="Optimiser steps per trainer.")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f}")
    import astra_synth.training.shared_prefix_sft as shared_prefix_sft

    with tempfile.TemporaryDirectory() as tmp, get_executor() as executor:
        warm = [b for b in load_families([FAMILIES]) if b.family.group == "warm-up"]
        arenas = spread(instantiate(warm, args.per_family, 0, executor), args.per_family * len(warm), 0)
        golden = Path(tmp) / "golden.jsonl"
        golden.write_text("".join(golden_example(a, executor).model_dump_json() + "\n" for a in arenas))
        settings = SFTConfig(
            max_steps=args.steps, learning_rate=1e-4, max_length=1536, save_steps=10_000, prefix_rows=2
        )
        per_step: dict[str, float] = {}
        shared = shared_prefix_sft.SharedPrefixSFTTrainer
        for name, trainer in (("trl", _trl_trainer()), ("shared", shared)):
            shared_prefix_sft.SharedPrefixSFTTrainer = trainer  # type: ignore[misc]  # run_sft looks it up
            began = time.perf_counter()
            result = run_sft([golden], Path(tmp) / name, settings)
            per_step[name] = (time.perf_counter() - began) / result.steps
            print(
                f"{name:>6}: {result.steps} steps, {per_step[name]:.1f} s a step (model load included),"
                f" losses {[round(x, 3) for x in result.losses]}",
                flush=True,
            )
        shared_prefix_sft.SharedPrefixSFTTrainer = shared  # type: ignore[misc]
    speedup = per_step["trl"] / per_step["shared"]
    print(f"{len(arenas)} golden conversations from {len(warm)} warm-up families")
    print(
        f"RESULT trl_s_per_step={per_step['trl']:.1f} shared_s_per_step={per_step['shared']:.1f}"
        f" speedup={speedup:.2f}"
    )


if __name__ == "__main__":
    main()
