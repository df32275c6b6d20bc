"""Adaptive batch filling: degenerate groups never reach the loss, surplus is carried over, rolls bounded."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from astra_synth.training.batching import BatchFiller, FillConfig, Group


def _roller(batches: list[list[list[float]]]) -> tuple[Callable[[int], list[Group[str]]], list[int]]:
    """A roll function that hands out the given reward lists, batch by batch, and records each request."""
    feed: Iterator[list[list[float]]] = iter(batches)
    asked: list[int] = []
    counter = iter(range(1000))

    def roll(n: int) -> list[Group[str]]:
        asked.append(n)
        rewards = next(feed)
        assert len(rewards) == n
        return [Group(key=f"g{next(counter)}", rewards=r, payload="rollouts") for r in rewards]

    return roll, asked


def test_equal_reward_groups_are_filtered_and_rolling_continues_until_full() -> None:
    filler: BatchFiller[str] = BatchFiller(target=2)
    roll, asked = _roller([[[1.0, 1.0], [0.0, 0.5]], [[0.2, 0.2], [0.3, 0.9]]])
    result = filler.fill(roll)
    assert asked == [2, 2]
    assert [g.key for g in result.groups] == ["g1", "g3"]
    assert not any(g.masked for g in result.groups)
    assert result.rolled == 4 and result.zero_variance == 2 and result.frac_zero_variance == 0.5
    assert result.padded == 0 and result.buffered == 0


def test_surplus_valid_groups_are_carried_into_the_next_batch_first() -> None:
    filler: BatchFiller[str] = BatchFiller(target=2)
    roll, _ = _roller([[[0.0, 1.0], [1.0, 1.0]], [[0.0, 0.5], [0.1, 0.4]], [[0.3, 0.6], [0.0, 0.0]]])
    first = filler.fill(roll)
    assert [g.key for g in first.groups] == ["g0", "g2"]
    assert [g.key for g in filler.buffer] == ["g3"]  # surplus kept, not dropped
    assert first.buffered == 1
    second = filler.fill(roll)
    assert [g.key for g in second.groups] == ["g3", "g4"]  # buffered group first, then the fresh valid one
    assert second.from_buffer == 1 and second.rolls == 1
    assert len(filler.buffer) == 0


def test_buffer_stays_smaller_than_the_batch() -> None:
    filler: BatchFiller[str] = BatchFiller(target=3)
    roll, _ = _roller([[[0.0, 1.0]] * 3, [[0.0, 1.0]] * 3, [[0.0, 1.0]] * 3])
    for _ in range(3):
        result = filler.fill(roll)
        assert len(result.groups) == 3
        assert len(filler.buffer) < 3


def test_roll_limit_pads_with_masked_zero_variance_groups() -> None:
    filler: BatchFiller[str] = BatchFiller(target=2, config=FillConfig(max_rolls=2))
    roll, asked = _roller([[[0.0, 0.0], [1.0, 1.0]], [[0.5, 0.5], [0.0, 1.0]]])
    result = filler.fill(roll)
    assert asked == [2, 2]  # bounded: no third roll
    assert [g.key for g in result.groups] == ["g3", "g0"]
    assert [g.masked for g in result.groups] == [False, True]
    assert result.padded == 1 and result.zero_variance == 3


def test_delta_sets_what_counts_as_signal() -> None:
    filler: BatchFiller[str] = BatchFiller(target=1, config=FillConfig(delta=0.1, max_rolls=1))
    assert not filler.is_valid(Group(key="a", rewards=[0.5, 0.6], payload=""))  # std 0.05
    assert filler.is_valid(Group(key="b", rewards=[0.0, 1.0], payload=""))  # std 0.5
