"""The ``Stage`` protocol: what one step of a pipeline is, and what the runner hands it.

A stage knows its records and its prompts, nothing about files or concurrency; the runner owns those. It
turns one validated input record into one output record, a list of them (fan-out), or a ``Rejected`` (it may
also raise :class:`astra_synth.errors.Rejection`). Any other exception is an error that the runner records
and retries on the next resume.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict

from astra_synth.sandbox.executor import ToolExecutor

if TYPE_CHECKING:
    from astra_synth.llm.client import LLMClient

In = TypeVar("In", bound=BaseModel)
Out = TypeVar("Out", bound=BaseModel, covariant=True)


class Rejected(BaseModel):
    """A stage's verdict that an item fails a check; recorded in ``rejects.jsonl``, never retried silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str
    detail: str = ""


@dataclass(frozen=True)
class StageContext:
    """Everything a stage may use for one item.

    ``rng`` is seeded from the run seed and the item id, so an item's randomness does not depend on which
    items ran before it or how they were scheduled (it is built on first use: most stages never draw).
    Stages pass ``stage`` to the LLM client so that tokens and cost are booked against them.
    """

    stage: str
    item_id: str
    seed: int
    llm: LLMClient | None = None
    sandbox: ToolExecutor | None = None
    config: BaseModel | None = None

    @cached_property
    def rng(self) -> random.Random:
        return item_rng(self.seed, self.item_id)


def item_rng(seed: int, item_id: str) -> random.Random:
    """A generator private to one item: the same (seed, item) pair always yields the same stream."""
    digest = hashlib.sha256(f"{seed}:{item_id}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


class Stage(Protocol[In, Out]):
    """One step of a pipeline. ``version`` must change whenever logic or prompts change: it is part of
    every item id, so a bump recomputes the stage's items instead of reusing stale results.

    ``input_model`` lets the runner validate input before ``process`` sees it. A stage with prompts may also
    define ``prompt_hashes() -> dict[str, str]``; the manifest records them.
    """

    name: str
    version: str

    @property
    def input_model(self) -> type[In]: ...

    async def process(self, item: In, ctx: StageContext) -> Out | Rejected | list[Out]: ...
