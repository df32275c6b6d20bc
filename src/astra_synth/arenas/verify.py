"""Stage 3 — verification of a decomposition on the paper's four dimensions, failing closed.

QS = mean(dependency consistency, atomicity, sequential rationality, completeness). Dependency consistency is
judged for *every* sub-question (the paper's semantics; the authors' code skipped roots and used a −100
sentinel on id mismatches). Any judge whose answer cannot be parsed rejects the instance — it never scores 1.
Keeping only instances at or above a percentile of the run's QS distribution is a run-level step
(:func:`select_by_percentile`) applied after this stage; the threshold it computes goes into the manifest.
"""

from __future__ import annotations

import asyncio
import math
from typing import TypeVar

from pydantic import BaseModel, Field, model_validator

from astra_synth.arenas.instance import QAInstance, Verification
from astra_synth.arenas.tool_necessity import render_subs
from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.client import LLMClient
from astra_synth.llm.idschema import exact_ids, unique_ids
from astra_synth.llm.structured import ReasoningTruncated, StructuredOutputRejected, structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext


class Verdict(StrictModel):
    id: str = Field(min_length=1)
    ok: bool
    reason: str = ""


class Verdicts(StrictModel):
    verdicts: list[Verdict] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _unique(self) -> Verdicts:
        unique_ids(self.verdicts)
        return self


class Completeness(StrictModel):
    requirements: list[str] = Field(default_factory=list, max_length=10)
    complete: bool
    reason: str = ""


T = TypeVar("T", bound=BaseModel)

# dimension → (prompt file, columns shown per sub-question)
_PER_NODE = {
    "dependency_consistency": ("verify_dependency.md", "idqa"),
    "atomicity": ("verify_atomicity.md", "itqa"),
    "sequential_rationality": ("verify_sequence.md", "ihdqa"),
}


class VerifyStage:
    """QAInstance → QAInstance with ``verification`` filled in."""

    name = "verify"
    version = "1"
    input_model = QAInstance

    def __init__(self, *, max_reasks: int = 2, max_tokens: int = 900) -> None:
        self.max_reasks = max_reasks
        self.max_tokens = max_tokens

    def prompts(self) -> list[Prompt]:
        files = [f for f, _ in _PER_NODE.values()] + ["verify_completeness.md"]
        return [load_prompt("astra_synth.arenas", f) for f in files]

    def prompt_hashes(self) -> dict[str, str]:
        return {p.name: p.sha256 for p in self.prompts()}

    async def _per_node(self, llm: LLMClient, item: QAInstance, dim: str) -> tuple[float, str]:
        file, cols = _PER_NODE[dim]
        text = load_prompt("astra_synth.arenas", file).render(
            main_question=item.main_question, sub_questions=render_subs(item, cols)
        )
        schema = exact_ids(Verdicts, "verdicts", Verdict, [s.id for s in item.sub_questions])
        answer = await self._ask(llm, text, schema, dim)
        failed = [v for v in answer.verdicts if not v.ok]
        score = 1 - len(failed) / len(answer.verdicts)
        return score, "; ".join(f"{v.id}: {v.reason}" for v in failed)

    async def _completeness(self, llm: LLMClient, item: QAInstance) -> tuple[float, str]:
        text = load_prompt("astra_synth.arenas", "verify_completeness.md").render(
            main_question=item.main_question,
            final_answer=item.final_answer,
            sub_questions=render_subs(item, "iqa"),
        )
        answer = await self._ask(llm, text, Completeness, "completeness")
        return (1.0 if answer.complete else 0.0), answer.reason

    async def _ask(self, llm: LLMClient, text: str, schema: type[T], dim: str) -> T:
        try:
            return await structured_chat(
                llm,
                [{"role": "user", "content": text}],
                schema,
                stage=self.name,
                max_reasks=self.max_reasks,
                max_tokens=self.max_tokens,
            )
        except StructuredOutputRejected as exc:
            reason = exc.reason if isinstance(exc, ReasoningTruncated) else f"judge_error:{dim}"
            raise Rejection(reason, f"{dim}: {exc.detail}") from exc

    async def process(self, item: QAInstance, ctx: StageContext) -> QAInstance:
        assert ctx.llm is not None, "verify needs an LLM"
        llm = ctx.llm
        dc, sa, sr, tc = await asyncio.gather(
            self._per_node(llm, item, "dependency_consistency"),
            self._per_node(llm, item, "atomicity"),
            self._per_node(llm, item, "sequential_rationality"),
            self._completeness(llm, item),
        )
        verification = Verification(
            dependency_consistency=dc[0],
            atomicity=sa[0],
            sequential_rationality=sr[0],
            completeness=tc[0],
            notes={
                k: v
                for k, v in {
                    "dependency_consistency": dc[1],
                    "atomicity": sa[1],
                    "sequential_rationality": sr[1],
                    "completeness": tc[1],
                }.items()
                if v
            },
        )
        return item.model_copy(update={"verification": verification})


def percentile(values: list[float], pct: float) -> float:
    """The ``pct``-th percentile (0–100) with linear interpolation between closest ranks."""
    if not values:
        raise ValueError("percentile of an empty list")
    ordered = sorted(values)
    rank = (len(ordered) - 1) * pct / 100
    lo, hi = math.floor(rank), math.ceil(rank)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (rank - lo)


def select_by_percentile(
    scores: dict[str, float], pct: float, *, min_score: float = 0.0
) -> tuple[set[str], float | None]:
    """Ids whose score is at or above the run's ``pct``-th percentile (and ``min_score``), and that threshold.

    The threshold is computed from this run's own distribution, as the paper describes, and must be recorded.
    """
    if not scores:
        return set(), None
    threshold = max(percentile(list(scores.values()), pct), min_score)
    return {k for k, v in scores.items() if v >= threshold - 1e-12}, threshold
