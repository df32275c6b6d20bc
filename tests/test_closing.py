"""``AsyncClosing``: ``async with`` hands back the object and closes it on every way out."""

from __future__ import annotations

import pytest

from astra_synth.closing import AsyncClosing


class _Holder(AsyncClosing):
    def __init__(self) -> None:
        self.closed = 0

    async def aclose(self) -> None:
        self.closed += 1


async def test_closes_on_normal_exit_and_gives_the_object() -> None:
    holder = _Holder()
    async with holder as entered:
        assert entered is holder and holder.closed == 0
    assert holder.closed == 1


async def test_closes_when_the_body_raises_and_lets_the_error_through() -> None:
    holder = _Holder()
    with pytest.raises(KeyError):
        async with holder:
            raise KeyError("boom")
    assert holder.closed == 1


def test_a_subclass_must_say_how_to_close() -> None:
    class NoClose(AsyncClosing):
        pass

    with pytest.raises(TypeError, match="aclose"):
        NoClose()  # type: ignore[abstract]
