"""Adaptive batch filling (ASTRA §C.4): every update sees a full batch of groups that carry a signal.

A GRPO group whose rewards are all equal has advantage 0 everywhere: it only dilutes the token-level (DAPO)
normaliser and shrinks the effective batch. A group is *valid* when the population std of its rewards is
> δ. Before each update the buffered valid groups are taken first (oldest first), then fresh groups are
rolled, a whole batch at a time, until ``target`` valid groups exist or ``max_rolls`` is spent; the surplus
waits in the carry-over buffer for the next update (so ``len(buffer) < target`` always holds). If the roll
limit runs out first, the batch is padded with zero-variance groups flagged ``masked``: the trainer keeps its
batch shape but gives them no loss weight, so they never reach the gradient.

Buffered groups were rolled by a slightly older policy; like the paper, they are trained on as if on-policy.
This module knows nothing about TRL: a group is rewards plus an opaque payload.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np
from pydantic import Field

from astra_synth.config import StrictModel

P = TypeVar("P")


class FillConfig(StrictModel):
    """Validity threshold and the bound on extra rolls per update."""

    delta: float = Field(default=1e-6, ge=0, description="A group is valid when its reward std exceeds this.")
    max_rolls: int = Field(default=4, ge=1, description="Rolls per update, the scheduled one included.")
    pick: Literal["signal", "schedule"] = Field(
        default="signal",
        description="Which arenas to roll: 'signal' draws families by the recent share of their groups that "
        "were valid (training/arena_picker.py); 'schedule' plays the trainer's scheduled arenas first, then "
        "uniform draws.",
    )
    window: int = Field(default=8, ge=1, description="Groups per family the 'signal' picker remembers.")


@dataclass
class Group(Generic[P]):
    """One prompt's rollouts: their rewards and whatever the trainer needs to train on them."""

    key: str
    rewards: list[float]
    payload: P
    masked: bool = False

    def std(self) -> float:
        return float(np.std(self.rewards)) if self.rewards else 0.0


@dataclass
class FillResult(Generic[P]):
    """The groups of one update and what it took to get them."""

    groups: list[Group[P]]
    rolls: int
    rolled: int
    zero_variance: int
    from_buffer: int
    padded: int
    buffered: int

    @property
    def frac_zero_variance(self) -> float:
        """Share of freshly rolled groups that were degenerate (before filtering)."""
        return self.zero_variance / self.rolled if self.rolled else 0.0


@dataclass
class BatchFiller(Generic[P]):
    """Holds the carry-over buffer between updates; :meth:`fill` assembles one batch."""

    target: int
    config: FillConfig = field(default_factory=FillConfig)
    buffer: deque[Group[P]] = field(default_factory=deque)

    def is_valid(self, group: Group[P]) -> bool:
        return group.std() > self.config.delta

    def fill(self, roll: Callable[[int], list[Group[P]]]) -> FillResult[P]:
        """Buffered groups first, then ``roll(target)`` until ``target`` valid groups or ``max_rolls``."""
        valid: list[Group[P]] = list(self.buffer)
        from_buffer = len(valid)
        self.buffer.clear()
        invalid: list[Group[P]] = []
        rolls = rolled = 0
        while len(valid) < self.target and rolls < self.config.max_rolls:
            fresh = roll(self.target)
            rolls += 1
            rolled += len(fresh)
            for group in fresh:
                (valid if self.is_valid(group) else invalid).append(group)
        batch = valid[: self.target]
        self.buffer.extend(valid[self.target :])
        padded = 0
        for group in invalid:
            if len(batch) >= self.target:
                break
            group.masked = True
            batch.append(group)
            padded += 1
        return FillResult(
            groups=batch,
            rolls=rolls,
            rolled=rolled,
            zero_variance=len(invalid),
            from_buffer=min(from_buffer, self.target),
            padded=padded,
            buffered=len(self.buffer),
        )
