"""``AsyncClosing``: the ``async with`` protocol for objects that own connections and release them in
``aclose``, written once for the LLM client, the tool router and MCP sessions."""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType
from typing import Self


class AsyncClosing(ABC):
    """``async with obj:`` gives ``obj`` and awaits ``obj.aclose()`` on the way out, error or not."""

    @abstractmethod
    async def aclose(self) -> None:
        """Release what the object holds (connections, servers, pending writes)."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()
