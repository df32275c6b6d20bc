"""Scores of one policy on one family group: light records (the report reads them without torch)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

if TYPE_CHECKING:
    from astra_synth.training.episodes import TokenEpisode

Split = Literal["warm-up", "rl", "unseen"]
Stage = Literal["base", "sft", "rl"]
STAGE_NAMES: dict[Stage, str] = {"base": "base", "sft": "SFT", "rl": "SFT+GRPO"}
"""How tables and summaries name each policy."""


class FamilyScore(BaseModel):
    family: str
    episodes: int
    f1: float
    success_rate: float


class SplitScore(BaseModel):
    """One policy on one split: mean F1 with its 95 % half-width over episodes, success, calls, families."""

    split: Split
    stage: Stage
    episodes: int
    f1: float
    ci95: float
    success_rate: float
    calls_per_arena: float
    clipped: float = Field(description="Share of episodes that ran out of their token budget.")
    families: list[FamilyScore]
    arena_f1: dict[str, float] = Field(
        default_factory=dict,
        description="F1 per arena id: two policies scored on the same arenas compare pairwise (paired_gain).",
    )


class Gain(BaseModel):
    """How much a later policy beats an earlier one on the same arenas, with a paired 95 % half-width.

    Both policies play the same held-out arenas, and most arenas score the same under both (solved by both,
    or by neither), so the interval of the per-arena differences is far narrower than either mean's: the
    full run's GRPO gain of +0.162 was inside the two means' ±0.12 intervals but ±0.094 as a paired one."""

    split: Split
    before: Stage
    after: Stage
    episodes: int = Field(description="Arenas both policies played.")
    gain: float = Field(description="Mean of after − before over those arenas.")
    ci95: float
    changed: int = Field(description="Arenas whose F1 differs between the two policies.")

    def describe(self) -> str:
        return (
            f"{STAGE_NAMES[self.after]} − {STAGE_NAMES[self.before]} on {self.split}: "
            f"{self.gain:+.3f} ± {self.ci95:.3f} (paired over {self.episodes} arenas, {self.changed} changed)"
        )


GAINS: list[tuple[Split, Stage, Stage]] = [
    ("warm-up", "base", "sft"),
    ("rl", "sft", "rl"),
    ("unseen", "sft", "rl"),
]
"""The comparisons the experiment is about: SFT over base where SFT trained, GRPO over SFT on the RL and
unseen families."""


def gains(scores: Sequence[SplitScore]) -> list[Gain]:
    """The :data:`GAINS` comparisons that ``scores`` hold both sides of, paired per arena."""
    cell = {(s.split, s.stage): s for s in scores}
    found = []
    for split, before, after in GAINS:
        if (split, before) in cell and (split, after) in cell:
            gain = paired_gain(cell[(split, before)], cell[(split, after)])
            if gain is not None:
                found.append(gain)
    return found


def paired_gain(before: SplitScore, after: SplitScore) -> Gain | None:
    """``after`` − ``before`` over the arenas both scored (None with fewer than two: e.g. scores stored
    before ``arena_f1`` existed)."""
    common = sorted(before.arena_f1.keys() & after.arena_f1.keys())
    if len(common) < 2:
        return None
    diffs = [after.arena_f1[a] - before.arena_f1[a] for a in common]
    return Gain(
        split=after.split,
        before=before.stage,
        after=after.stage,
        episodes=len(diffs),
        gain=statistics.fmean(diffs),
        ci95=1.96 * statistics.stdev(diffs) / math.sqrt(len(diffs)),
        changed=sum(abs(d) > 1e-9 for d in diffs),
    )


def score_split(split: Split, stage: Stage, episodes: Sequence[TokenEpisode]) -> SplitScore:
    """Mean F1, its 95 % normal half-width over episodes, success rate, calls per arena, per family."""
    f1 = [e.breakdown.reward for e in episodes]
    n = len(f1)
    half = 1.96 * statistics.stdev(f1) / math.sqrt(n) if n > 1 else 0.0
    by_family: dict[str, list[TokenEpisode]] = {}
    for e in episodes:
        by_family.setdefault(e.family or "", []).append(e)
    return SplitScore(
        split=split,
        stage=stage,
        episodes=n,
        f1=statistics.fmean(f1) if f1 else 0.0,
        ci95=half,
        success_rate=sum(_solved(e) for e in episodes) / max(n, 1),
        calls_per_arena=sum(e.breakdown.calls for e in episodes) / max(n, 1),
        clipped=sum(e.budget_exhausted for e in episodes) / max(n, 1),
        families=[
            FamilyScore(
                family=family,
                episodes=len(members),
                f1=statistics.fmean(e.breakdown.reward for e in members),
                success_rate=sum(_solved(e) for e in members) / len(members),
            )
            for family, members in sorted(by_family.items())
        ],
        arena_f1={e.arena_id: e.breakdown.reward for e in episodes},
    )


def _solved(episode: TokenEpisode) -> bool:
    return episode.breakdown.recall >= 1.0 - 1e-9
