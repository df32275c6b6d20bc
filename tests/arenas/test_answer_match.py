"""Answer matching's canonical forms: dates across spellings, arguments read off prose answers, results
equal up to number spelling."""

from __future__ import annotations

from typing import Any

import pytest

from astra_synth.arenas.answer_match import canonical_numbers, carries_value, normalise, same_result

HOTEL = "Hotel Carris Porto Ribeira, 118 EUR per night"


@pytest.mark.parametrize(
    "text",
    [
        "2026-05-12",
        "2026/5/12",
        "12 May 2026",
        "12th of May, 2026",
        "May 12, 2026",
        "Sept. 3 2025",
        "2026年5月12日",
        "2026 年 5 月 12 号",
    ],
)
def test_full_dates_are_one_spelling(text: str) -> None:
    assert normalise(text) in ("2026-5-12", "2025-9-3")


def test_an_impossible_date_is_left_as_written() -> None:
    assert normalise("31 Feb 2026") == "31 feb 2026"


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        (HOTEL, 118.0),  # the review's three: a number inside prose, with a unit, a date in words
        ("354 EUR", 354.0),
        ("12 May 2026", "2026-05-12"),
        (HOTEL, 118),
        (HOTEL, "Hotel Carris Porto Ribeira"),
        ("1,234.50 USD", 1234.5),
        ("-3.5 °C at noon", -3.5),
        ("TN-M204", "TN-M204"),
        ("EUR", "EUR"),
        ("TN-M204", "sku TN-M204"),  # a free-text argument holding the whole answer
        ("8", {"days": [8]}),
        ("目前在杭州转运中心，预计2026年11月18日送达", "2026-11-18"),  # a Chinese date, no spaces
    ],
)
def test_an_argument_read_off_the_answer_is_carried(answer: str, value: Any) -> None:
    assert carries_value(answer, value)


@pytest.mark.parametrize(
    ("answer", "value"),
    [
        (HOTEL, 120.0),  # a real mismatch: another rate
        ("354 EUR", 35.4),
        ("12 May 2026", "2026-05-13"),
        (HOTEL, "EUR"),  # a currency code alone is no evidence of data flow
        (HOTEL, "Hotel Aurora"),
        ("1", True),  # booleans are not numbers
        ("3.5", 3),
        ("13", 3),
    ],
)
def test_a_value_the_answer_does_not_hold_is_not_carried(answer: str, value: Any) -> None:
    assert not carries_value(answer, value)


def test_results_compare_up_to_number_spelling() -> None:
    assert same_result({"total": 354, "items": [1.0, {"n": 2}]}, {"items": [1, {"n": 2.0}], "total": 354.0})
    assert not same_result({"total": 354}, {"total": 354.5})
    assert not same_result({"ok": True}, {"ok": 1})  # booleans are not numbers
    assert [type(v) for v in canonical_numbers([True, 1.0, 1.5, "2.0"])] == [bool, int, float, str]
