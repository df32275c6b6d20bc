"""Computed answers: the accepted tool's result, not the QA model's arithmetic, defines a sub-answer.

The QA model writes every sub-answer without a tool, so a computed one ("354 EUR in USD at 1.0865") can be
off by rounding or a slip that correct code never reproduces; asking the code to reproduce it invites
hard-coded answers. For a ``compute`` sub-question the answer is read off the tool's output instead: each
number of the QA answer that the output lacks becomes the output's nearest number, within a relative
tolerance (a sanity bound: a result far from the estimate means a wrong formula, and goes back as feedback).
The changed values are then carried, by rule, into the questions and answers that build on the sub-question
and into the final answer. Only where prose must change — a step without a tool that reasons over a changed
value ("is it within budget?") — is the model asked to rewrite those answers and the final answer.
"""

from __future__ import annotations

import math
import re
from decimal import Decimal
from typing import Any

from pydantic import Field

from astra_synth.arenas.answer_match import NUMBER, canonical_number, contains_answer, numbers
from astra_synth.arenas.asking import Asker
from astra_synth.arenas.instance import QAInstance, SubQuestion
from astra_synth.config import StrictModel
from astra_synth.llm.idschema import exact_ids


class DefinedAnswer(StrictModel):
    """A sub-answer as its tool's output defines it, and the values that changed (canonical numerals)."""

    answer: str
    changes: dict[str, str]


def _relative(a: Decimal, b: Decimal) -> Decimal:
    scale = max(abs(a), abs(b))
    return Decimal(0) if scale == 0 else abs(a - b) / scale


def _spell(value: Decimal, like: str) -> str:
    """``value`` written with as many decimals as the numeral it replaces when that loses nothing."""
    places = len(like.split(".")[1]) if "." in like else 0
    needed = max(0, -int(value.normalize().as_tuple().exponent))
    return format(value, f".{places}f") if needed <= places else canonical_number(str(value))


def substitute_numbers(text: str, changes: dict[Decimal, Decimal]) -> str:
    """``text`` with every numeral whose value is a key of ``changes`` rewritten to its new value."""
    if not changes:
        return text

    def replace(match: re.Match[str]) -> str:
        token, start = match.group(), match.start()
        before = text[start - 1] if start else ""
        if before and (before.isalnum() or before in "._"):  # inside an id or a longer numeral ("A4", "v2")
            return token
        new = changes.get(Decimal(token.replace(",", "")))
        return token if new is None else _spell(new, token)

    return NUMBER.sub(replace, text)


def _inputs(arguments: dict[str, Any]) -> set[Decimal]:
    """The numbers a call passes in (an answer may restate them: "3 nights cost 354 EUR")."""
    found = set()
    for value in arguments.values():
        if isinstance(value, str):
            found |= numbers(value)
        elif isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
            found.add(Decimal(repr(value)))
    return found


def defined_answer(
    output: str, expected: str, tolerance: float, arguments: dict[str, Any] | None = None
) -> DefinedAnswer | str:
    """The answer ``output`` (a rendered tool result) gives where the QA model expected ``expected``, or
    why the two disagree (sent back to the code model). Numbers the call's ``arguments`` pass in are
    inputs the answer restates, not results: they need not be in the output."""
    if contains_answer(output, expected):
        return DefinedAnswer(answer=expected, changes={})
    found = numbers(output)
    inputs = _inputs(arguments or {})
    wanted = numbers(expected)
    if not wanted or not found:
        return f"the result {output[:200]!r} does not contain {expected!r}"
    changes: dict[Decimal, Decimal] = {}
    for old in sorted(wanted - found - inputs):
        near = min(found, key=lambda n: (_relative(old, n), n))
        if _relative(old, near) > Decimal(str(tolerance)):
            return (
                f"the result {output[:200]!r} has no value near {canonical_number(str(old))} "
                f"(the expected answer is about {expected!r}): check the formula"
            )
        changes[old] = near
    answer = substitute_numbers(expected, changes)
    if not contains_answer(output, answer):
        # The output holds the values but not the answer's prose (a JSON field beside its unit): a lone
        # value is the answer; several values in prose cannot be placed by rule.
        values = numbers(answer) - inputs
        if len(values) != 1 or not values <= found:
            return f"the result {output[:200]!r} does not contain {answer!r}"
        answer = canonical_number(str(values.pop()))
    return DefinedAnswer(
        answer=answer,
        changes={canonical_number(str(k)): canonical_number(str(v)) for k, v in changes.items()},
    )


def descendants(subs: list[SubQuestion], sub_id: str) -> set[str]:
    """Ids of the sub-questions that build on ``sub_id``, directly or through others."""
    found: set[str] = set()
    frontier = {sub_id}
    while frontier:
        frontier = {s.id for s in subs if set(s.parents) & frontier} - found
        found |= frontier
    return found


def apply_defined_answer(
    item: QAInstance, sub_id: str, defined: DefinedAnswer
) -> tuple[QAInstance, list[str]]:
    """``item`` with ``sub_id``'s answer as its tool defines it, the changed values carried into the
    questions and answers that build on it and into the final answer; notes say what was rewritten."""
    changes = {Decimal(k): Decimal(v) for k, v in defined.changes.items()}
    below = descendants(item.sub_questions, sub_id)
    notes: list[str] = []
    subs = []
    for s in item.sub_questions:
        update = {}
        if s.id == sub_id:
            update = {"answer": defined.answer}
        elif s.id in below:
            update = {
                "question": substitute_numbers(s.question, changes),
                "answer": substitute_numbers(s.answer, changes),
            }
        changed = {k: v for k, v in update.items() if getattr(s, k) != v}
        notes += [f"{s.id}.{k}: {getattr(s, k)!r} → {v!r}" for k, v in changed.items()]
        subs.append(s.model_copy(update=changed))
    final = substitute_numbers(item.final_answer, changes)
    if final != item.final_answer:
        notes.append(f"final_answer: {item.final_answer!r} → {final!r}")
    return item.model_copy(update={"sub_questions": subs, "final_answer": final}), notes


class RewrittenAnswer(StrictModel):
    id: str
    answer: str = Field(min_length=1)


class Rewritten(StrictModel):
    answers: list[RewrittenAnswer]
    final_answer: str = Field(min_length=1)


def stale_prose(item: QAInstance, changed: list[str]) -> list[str]:
    """Ids of the steps without a tool that reason over a value one of ``changed`` corrected."""
    below = set().union(*(descendants(item.sub_questions, c) for c in changed)) if changed else set()
    return [s.id for s in item.sub_questions if s.id in below and not s.needs_tool]


async def rewrite_prose(ask: Asker, item: QAInstance, changed: list[str]) -> tuple[QAInstance, list[str]]:
    """``item`` with its stale prose (see :func:`stale_prose`) and final answer rewritten by the model to
    agree with the corrected answers of ``changed``; unchanged when no step needs it."""
    stale = stale_prose(item, changed)
    if not stale:
        return item, []

    def rows(ids: list[str]) -> str:
        return "\n".join(f"{i} | {item.sub(i).question} | {item.sub(i).answer}" for i in ids)

    reply = await ask(
        "answer_rewrite.md",
        exact_ids(Rewritten, "answers", RewrittenAnswer, stale),
        main_question=item.main_question,
        corrected=rows(changed),
        stale=rows(stale),
        final_answer=item.final_answer,
    )
    new = {a.id: a.answer.strip() for a in reply.answers}
    subs = [s.model_copy(update={"answer": new[s.id]}) if s.id in new else s for s in item.sub_questions]
    notes = [f"{i}.answer: {item.sub(i).answer!r} → {new[i]!r} (rewritten)" for i in stale]
    notes.append(f"final_answer: {item.final_answer!r} → {reply.final_answer.strip()!r} (rewritten)")
    return item.model_copy(update={"sub_questions": subs, "final_answer": reply.final_answer.strip()}), notes
