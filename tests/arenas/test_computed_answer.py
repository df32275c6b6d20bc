"""Computed answers: the tool's output defines the sub-answer, and the change is carried downstream."""

from __future__ import annotations

from decimal import Decimal

import pytest

from astra_synth.arenas.computed_answer import (
    DefinedAnswer,
    apply_defined_answer,
    defined_answer,
    descendants,
    substitute_numbers,
)
from astra_synth.arenas.instance import QAInstance, SubQuestion

CONVERTED = '{"amount": 384.62, "currency": "USD", "summary": "384.62 USD"}'


@pytest.mark.parametrize(
    ("output", "expected", "answer", "changes"),
    [
        (CONVERTED, "384.62 USD", "384.62 USD", {}),  # the QA model was right: nothing changes
        (CONVERTED, "384.60 USD", "384.62 USD", {"384.6": "384.62"}),  # off by rounding
        ('{"amount": 384.62, "currency": "USD"}', "384.60 USD", "384.62", {"384.6": "384.62"}),  # no prose
        ('{"total": 354, "currency": "EUR"}', "354 EUR", "354", {}),  # the value, not the unit, is the answer
        ('{"total": 354.0}', "355 EUR", "354", {"355": "354"}),
    ],
)
def test_the_output_defines_the_answer(
    output: str, expected: str, answer: str, changes: dict[str, str]
) -> None:
    assert defined_answer(output, expected, 0.05) == DefinedAnswer(answer=answer, changes=changes)


def test_numbers_the_call_passes_in_are_inputs_not_results() -> None:
    output, expected = '{"total": 354.0}', "3 nights cost 355 EUR"
    assert isinstance(defined_answer(output, expected, 0.05), str)  # no value near 3 in the output
    defined = defined_answer(output, expected, 0.05, {"nightly_rate": 118, "nights": 3})
    assert defined == DefinedAnswer(answer="354", changes={"355": "354"})


def test_a_result_far_from_the_estimate_is_a_wrong_formula() -> None:
    why = defined_answer('{"total": 472.0}', "354 EUR", 0.05)
    assert why == (
        "the result '{\"total\": 472.0}' has no value near 354 (the expected answer is about '354 EUR'): "
        "check the formula"
    )
    assert isinstance(defined_answer('{"day": "Monday"}', "Tuesday", 0.05), str)  # no number to place


def test_substitution_keeps_spelling_and_leaves_other_tokens() -> None:
    changes = {Decimal(355): Decimal(354), Decimal("385.71"): Decimal("384.62")}
    text = "3 nights cost 355.00 EUR (1,355 points, room A355), i.e. 385.71 USD on 12 May 2026"
    assert substitute_numbers(text, changes) == (
        "3 nights cost 354.00 EUR (1,355 points, room A355), i.e. 384.62 USD on 12 May 2026"
    )
    assert substitute_numbers("about 385 USD", {Decimal(385): Decimal("384.62")}) == "about 384.62 USD"


def _chain() -> QAInstance:
    subs = [
        SubQuestion(id="q1", question="Nightly rate of Hotel Aurora?", answer="118 EUR", hop_level=1),
        SubQuestion(
            id="q2", question="Total for 3 nights at 118 EUR?", answer="355 EUR", parents=["q1"], hop_level=2
        ),
        SubQuestion(
            id="q3",
            question="How much is 355 EUR in USD at 1.0865?",
            answer="385.71 USD",
            parents=["q2"],
            hop_level=3,
        ),
        SubQuestion(
            id="q4", question="What is the rate 355 of the other hotel?", answer="355 EUR", hop_level=1
        ),
    ]
    return QAInstance(
        language="en",
        domain="Travel",
        scenario_type="parallel-multi-hop",
        main_question="What do 3 nights at Hotel Aurora cost in USD?",
        final_answer="3 nights cost 355 EUR, which is 385.71 USD.",
        sub_questions=subs,
    )


def test_a_defined_answer_is_carried_to_dependants_and_the_final_answer() -> None:
    item = _chain()
    assert descendants(item.sub_questions, "q1") == {"q2", "q3"}
    out, notes = apply_defined_answer(item, "q2", DefinedAnswer(answer="354 EUR", changes={"355": "354"}))
    assert [s.question for s in out.sub_questions] == [
        "Nightly rate of Hotel Aurora?",
        "Total for 3 nights at 118 EUR?",
        "How much is 354 EUR in USD at 1.0865?",
        "What is the rate 355 of the other hotel?",  # not a dependant: untouched
    ]
    assert out.sub("q2").answer == "354 EUR" and out.sub("q4").answer == "355 EUR"
    assert out.final_answer == "3 nights cost 354 EUR, which is 385.71 USD."
    assert notes == [
        "q2.answer: '355 EUR' → '354 EUR'",
        "q3.question: 'How much is 355 EUR in USD at 1.0865?' → 'How much is 354 EUR in USD at 1.0865?'",
        "final_answer: '3 nights cost 355 EUR, which is 385.71 USD.' → "
        "'3 nights cost 354 EUR, which is 385.71 USD.'",
    ]
