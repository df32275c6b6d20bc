"""Stage 2 — tool necessity per sub-question, then the legitimacy rule.

Decisions are matched to sub-questions by id (the authors' code matched by position). An answer that does not
decide every id exactly once is re-asked; then the instance is rejected. An instance whose non-leaf
sub-question needs no tool breaks the executable chain and is rejected (``illegitimate``).
"""

from __future__ import annotations

from pydantic import Field, model_validator

from astra_synth.arenas.instance import QAInstance, ToolKind, legitimacy_problems
from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.idschema import exact_ids, unique_ids
from astra_synth.llm.structured import structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext


class Decision(StrictModel):
    id: str = Field(min_length=1)
    needs_tool: bool
    kind: ToolKind = Field(
        default="lookup",
        description="For a tool: 'lookup' fetches facts from data, 'compute' calculates from the arguments.",
    )
    reason: str = ""


class Decisions(StrictModel):
    decisions: list[Decision] = Field(min_length=1, max_length=16)

    @model_validator(mode="after")
    def _unique(self) -> Decisions:
        unique_ids(self.decisions)
        return self


def render_subs(instance: QAInstance, fields: str) -> str:
    """One line per sub-question with the requested columns (i=id, d=deps, h=hop, t=needs tool, q, a)."""
    lines = []
    for s in instance.sub_questions:
        cols = {
            "i": s.id,
            "d": "deps=" + (",".join(s.parents) or "none"),
            "h": f"hop={s.hop_level}",
            "t": f"tool={'unknown' if s.needs_tool is None else ('yes' if s.needs_tool else 'no')}",
            "q": f"Q: {s.question}",
            "a": f"A: {s.answer}",
        }
        lines.append(" | ".join(cols[c] for c in fields))
    return "\n".join(lines)


class ToolNecessityStage:
    """QAInstance → QAInstance with ``needs_tool`` decided for every sub-question."""

    name = "tool_necessity"
    version = "1"
    input_model = QAInstance

    def __init__(self, *, max_reasks: int = 2, max_tokens: int = 800) -> None:
        self.max_reasks = max_reasks
        self.max_tokens = max_tokens

    def prompt(self, language: str) -> Prompt:
        return load_prompt("astra_synth.arenas", f"necessity.{language}.md")

    def prompt_hashes(self) -> dict[str, str]:
        return {p.name: p.sha256 for p in (self.prompt("en"), self.prompt("zh"))}

    async def process(self, item: QAInstance, ctx: StageContext) -> QAInstance:
        assert ctx.llm is not None, "tool_necessity needs an LLM"
        text = self.prompt(item.language).render(
            main_question=item.main_question, sub_questions=render_subs(item, "iqa")
        )
        answer = await structured_chat(
            ctx.llm,
            [{"role": "user", "content": text}],
            exact_ids(Decisions, "decisions", Decision, [s.id for s in item.sub_questions]),
            stage=self.name,
            max_reasks=self.max_reasks,
            max_tokens=self.max_tokens,
        )
        decided = {d.id: d for d in answer.decisions}
        expected = {s.id for s in item.sub_questions}
        if set(decided) != expected:
            raise Rejection(
                "necessity_mismatch",
                f"decided {sorted(decided)}, expected {sorted(expected)}",
            )
        subs = [
            s.model_copy(
                update={
                    "needs_tool": decided[s.id].needs_tool,
                    "necessity_reason": decided[s.id].reason,
                    "kind": decided[s.id].kind if decided[s.id].needs_tool else None,
                }
            )
            for s in item.sub_questions
        ]
        out = item.model_copy(update={"sub_questions": subs})
        problems = legitimacy_problems(subs)
        if problems:
            raise Rejection("illegitimate", "; ".join(problems))
        if not any(s.needs_tool for s in subs):
            raise Rejection("no_tool_needed", "no sub-question needs a tool: nothing to synthesize")
        return out
