"""TRL's fused LM head, scoring only the positions that carry a label on a CPU too.

TRL 1.16 computes the training loss through a fused, chunked LM head that never builds the full logits. On
Triton devices it projects only the positions whose label is not ``-100``; elsewhere it projects *every*
position and zeroes the ignored ones afterwards, because on compiled devices (Neuron) a changing number of
positions would recompile the tiles. Eager CPU execution has no such cost, and the projection is large:
SmolLM2's tied head is 49,152 × 576 and runs in float32 (TRL accumulates it in fp32 even under bf16
autocast), while SFT's labels cover only the assistant turns — ~15 % of a tool conversation whose tool
schemas and questions fill the rest. :func:`labelled_positions_only` makes the CPU take TRL's own compact
path for the duration of a training run; the kernels themselves are unchanged, so log-probabilities and
gradients are the same (tests/training/test_lm_head.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def labelled_positions_only() -> Iterator[None]:
    """Within the block, TRL's fused LM head projects only labelled positions on CPU devices as well."""
    import trl.trainer.utils as trl_utils

    name = "_use_triton"  # decides compaction only; the kernels hold their own reference to it
    original = getattr(trl_utils, name)

    def compact(device: Any) -> bool:
        return device.type == "cpu" or bool(original(device))

    setattr(trl_utils, name, compact)
    try:
        yield
    finally:
        setattr(trl_utils, name, original)
