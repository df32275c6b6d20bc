"""Token sequences grouped by a common prefix, and laid out so each group's prefix runs once.

Arena prompts of one family share ~95 % of their tokens (system text and tool schemas). Both episode
generation (:mod:`.turn_cache`) and SFT (:mod:`.shared_prefix_sft`) run each group's prefix once into a KV
cache, repeat its rows for the members, and run each member's rest on top: this module decides the groups
and the one tensor layout both use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple


def shared_prefixes(prompts: Sequence[Sequence[int]]) -> list[tuple[int, list[int]]]:
    """Prompts grouped by a common prefix, as (prefix length, member indices); every prefix leaves its
    members at least their last token. Sorted prompts are grouped greedily, and a prompt joins the group
    before it only if the tokens it then shares outnumber those the shorter prefix costs the members."""
    groups: list[tuple[int, list[int]]] = []
    for i in sorted(range(len(prompts)), key=lambda i: list(prompts[i])):
        prompt = prompts[i]
        if groups:
            length, members = groups[-1]
            last = prompts[members[-1]]
            common = next((n for n, (a, b) in enumerate(zip(last, prompt, strict=False)) if a != b), None)
            common = min(length, len(prompt) - 1, min(len(last), len(prompt)) if common is None else common)
            if common > (length - common) * len(members):
                groups[-1] = (common, [*members, i])
                continue
        groups.append((max(len(prompt) - 1, 0), [i]))
    return groups


class PrefixLayout(NamedTuple):
    ids: list[list[int]]  # per sequence: [pad][its group's prefix][pad][its rest]
    mask: list[list[int]]  # 1 on the sequence's own tokens
    head: int  # columns of the prefix part; the rests fill the columns after it
    first: list[int]  # per group, the sequence whose row runs the group's prefix
    group_of: list[int]  # per sequence, its group


def prefix_layout(
    sequences: Sequence[Sequence[int]], groups: Sequence[tuple[int, Sequence[int]]], pad: int
) -> PrefixLayout:
    """Each sequence as its group's prefix right-aligned in the first ``head`` columns and its rest
    right-aligned after them (every sequence ends in the last column; padding under mask 0 in between).
    Positions are the mask's running count, so every row sees exactly its own tokens."""
    shared, group_of = [0] * len(sequences), [0] * len(sequences)
    for g, (length, members) in enumerate(groups):
        for m in members:
            shared[m], group_of[m] = length, g
    head = max(length for length, _ in groups)
    tail = max(len(s) - shared[i] for i, s in enumerate(sequences))
    ids, mask = [], []
    for s, n in zip(sequences, shared, strict=True):
        rest = len(s) - n
        ids.append([pad] * (head - n) + list(s[:n]) + [pad] * (tail - rest) + list(s[n:]))
        mask.append([0] * (head - n) + [1] * n + [0] * (tail - rest) + [1] * rest)
    return PrefixLayout(ids, mask, head, [members[0] for _, members in groups], group_of)
