"""One way for arena stages to put a prompt to the model and get a validated object back."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, TypeVar

from pydantic import BaseModel

from astra_synth.llm.client import LLMClient
from astra_synth.llm.structured import CallCap, structured_chat
from astra_synth.prompts import load_prompt

T = TypeVar("T", bound=BaseModel)


def prompt_hashes(*names: str) -> dict[str, str]:
    """Manifest entries for the arena prompts a stage uses."""
    return {n: load_prompt("astra_synth.arenas", n).sha256 for n in names}


@dataclass(frozen=True)
class Asker:
    """Puts arena prompts to the model for one stage and one item; every request draws on ``cap``.

    ``attempt`` > 0 marks a retry: it samples at ``retry_temperature`` under its own sample index, so a
    retry is a new answer, not the cached first one (the first attempt is greedy). Make one with
    :meth:`retry`.
    """

    llm: LLMClient
    stage: str
    cap: CallCap
    max_reasks: int = 1
    max_tokens: int = 2000
    attempt: int = 0
    retry_temperature: float = 0.7

    def retry(self, attempt: int) -> Asker:
        """The same asker (same cap) for attempt number ``attempt`` (0 = the first)."""
        return replace(self, attempt=attempt)

    async def __call__(self, prompt: str, schema: type[T], **values: Any) -> T:
        """Render arena prompt ``prompt`` with ``values`` as one user message; a validated ``schema`` back."""
        text = load_prompt("astra_synth.arenas", prompt).render(**values)
        return await structured_chat(
            self.llm,
            [{"role": "user", "content": text}],
            schema,
            stage=self.stage,
            max_reasks=self.max_reasks,
            max_tokens=self.max_tokens,
            temperature=self.retry_temperature if self.attempt else 0.0,
            sample_index=self.attempt,
            cap=self.cap,
        )
