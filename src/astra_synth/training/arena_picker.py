"""Which arenas GRPO rolls: families whose groups carry a signal are drawn more often.

A group teaches GRPO something only when its rewards differ. A family the policy always solves, or never
does, yields zero-variance groups that batch filling (:mod:`~astra_synth.training.batching`) throws away
after paying for their generation — on 2 CPU cores, most of a step. Drawing arenas uniformly, half the
groups of the learning-signal run were degenerate and a step rolled 2–3 times.

:class:`ArenaPicker` keeps, per family (an arena without one is its own family), whether each of its last
``window`` groups was valid, and draws a family with probability ∝ the posterior mean of that rate,
(valid + 1) / (seen + 2), then an arena uniformly inside it. A family never tried starts at 1/2; one whose
last ``window`` groups were all degenerate keeps 1/(window + 2), so it is retried now and then — the
policy moves, and a family it could not solve may become learnable. Expected gradient signal per group
grows with the chance of a valid group, so this spends generation where the update can use it.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from astra_synth.arenas.records import Arena


@dataclass
class ArenaPicker:
    """Family-weighted arena draws from the recent validity of each family's groups."""

    families: dict[str, list[str]]
    window: int = 8
    history: dict[str, deque[bool]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self._family = {arena_id: family for family, ids in self.families.items() for arena_id in ids}

    @classmethod
    def of(cls, arenas: Sequence[Arena], window: int = 8) -> ArenaPicker:
        families: dict[str, list[str]] = {}
        for arena in sorted(arenas, key=lambda a: a.id):
            families.setdefault(arena.family or arena.id, []).append(arena.id)
        return cls(families=families, window=window)

    def weight(self, family: str) -> float:
        seen = self.history.get(family, ())
        return (sum(seen) + 1) / (len(seen) + 2)

    def record(self, arena_id: str, valid: bool) -> None:
        """Count one rolled group of ``arena_id``: did its rewards differ?"""
        family = self._family[arena_id]
        self.history.setdefault(family, deque(maxlen=self.window)).append(valid)

    def draw(self, rng: random.Random, count: int) -> list[str]:
        names = sorted(self.families)
        chosen = rng.choices(names, weights=[self.weight(n) for n in names], k=count)
        return [rng.choice(self.families[name]) for name in chosen]

    def state(self) -> dict[str, list[bool]]:
        return {family: list(seen) for family, seen in sorted(self.history.items())}

    def restore(self, state: dict[str, list[bool]]) -> None:
        self.history = {f: deque(seen, maxlen=self.window) for f, seen in state.items() if f in self.families}
