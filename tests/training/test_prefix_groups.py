"""Prompts grouped by a common prefix, and the layout that runs each group's prefix once."""

from __future__ import annotations

from astra_synth.training.prefix_groups import prefix_layout, shared_prefixes


def test_a_prompt_joins_a_group_only_when_it_saves_tokens() -> None:
    base = list(range(100))
    # a long common prefix: grouped, and every member keeps at least its last token to decode from
    groups = shared_prefixes([(*base, 1), (*base, 2), tuple(base)])
    assert groups == [(99, [2, 0, 1])]
    # two tokens in common with a group whose 90-token prefix it would cut to 2: alone
    other = (0, 1, 500, *range(97))
    groups = shared_prefixes([(*base[:90], 7, 8), (*base[:90], 9, 8), other])
    assert sorted(m for _, m in groups) == [[0, 1], [2]]
    assert (90, [0, 1]) in groups and (len(other) - 1, [2]) in groups
    assert shared_prefixes([(5,)]) == [(0, [0])]


def test_the_layout_right_aligns_prefixes_and_rests_under_one_mask() -> None:
    sequences = [(1, 2, 3, 4, 5), (1, 2, 3, 9), (7, 8)]
    layout = prefix_layout(sequences, [(3, [0, 1]), (1, [2])], pad=0)
    assert layout.head == 3 and layout.first == [0, 2] and layout.group_of == [0, 0, 1]
    assert layout.ids == [[1, 2, 3, 4, 5], [1, 2, 3, 0, 9], [0, 0, 7, 0, 8]]
    assert layout.mask == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 1], [0, 0, 1, 0, 1]]
    for ids, mask, sequence in zip(layout.ids, layout.mask, sequences, strict=True):
        assert [t for t, m in zip(ids, mask, strict=True) if m] == list(sequence)
