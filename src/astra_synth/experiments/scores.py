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
    )


def _solved(episode: TokenEpisode) -> bool:
    return episode.breakdown.recall >= 1.0 - 1e-9
