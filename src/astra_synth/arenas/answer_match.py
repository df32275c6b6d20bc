"""Normalised answer matching: does a text (a tool output, a final message) contain an expected answer?

ASTRA checks ``answer in stdout`` on raw text, which "3" passes inside "30" or "1,234.50" fails against
"1234.5". Here both sides are normalised the same way (Unicode NFKC, case-folded, whitespace collapsed,
full dates written as ISO dates, numbers written canonically) and a match must sit on token boundaries.
Answers shorter than ``min_chars`` that are not numbers only match a text that is exactly the answer.

The same canonical forms serve two other comparisons: :func:`carries_value` (does a golden call's argument
come from a parent's answer, "118.0" from "Hotel X, 118 EUR per night") and :func:`same_result` (two tool
results equal up to number spelling, ``354 == 354.0``).
"""

from __future__ import annotations

import datetime
import json
import math
import re
import unicodedata
from decimal import Decimal
from typing import Any

from astra_synth.runs.ids import canonical_json

# A number with optional sign, thousands separators and decimals: "-1,234.50", "007", "3.0".
NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


_MONTHS = {
    name: i
    for i, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH = "(?P<month>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DAY = r"(?P<day>\d{1,2})(?:st|nd|rd|th)?"
_YEAR = r"(?P<year>\d{4})"
# Full dates in the spellings models write (on case-folded text): 2026-05-12, 2026/05/12, 12 May 2026,
# 12th of May, 2026, May 12, 2026, 2026年5月12日. Numeric day/month orders (12/05/2026) are ambiguous and
# left alone.
_DATES = [
    re.compile(r"(?<![\d.])" + _YEAR + r"[-/](?P<month>\d{1,2})[-/](?P<day>\d{1,2})(?![\d.])"),
    re.compile(r"(?<!\d)" + _YEAR + r" ?年 ?(?P<month>\d{1,2}) ?月 ?(?P<day>\d{1,2}) ?[日号]"),
    re.compile(r"\b" + _DAY + r"(?: of)? " + _MONTH + r",? " + _YEAR + r"\b"),
    re.compile(r"\b" + _MONTH + r" " + _DAY + r",? " + _YEAR + r"\b"),
]


def _iso_date(match: re.Match[str]) -> str:
    month = match["month"]
    number = int(month) if month.isdigit() else _MONTHS[month]
    try:
        return datetime.date(int(match["year"]), number, int(match["day"])).isoformat()
    except ValueError:  # not a calendar date: leave the text as it was
        return match.group()


def canonical_number(token: str) -> str:
    """A numeral as :func:`normalise` writes it: no separators, no trailing zeros ("1,234.50" → "1234.5")."""
    value = Decimal(token.replace(",", ""))  # the regex only admits valid numerals
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def normalise(text: str) -> str:
    """The comparison form of ``text``: NFKC, case-folded, ISO dates, canonical numbers, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    for pattern in _DATES:
        text = pattern.sub(_iso_date, text)
    text = NUMBER.sub(lambda m: canonical_number(m.group()), text)
    return " ".join(text.split())


def render(value: Any) -> str:
    """The text a JSON result is matched against: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def is_number(text: str) -> bool:
    """True if the normalised ``text`` is a single numeral."""
    return NUMBER.fullmatch(text) is not None


def _is_word(ch: str) -> bool:
    # CJK text has no spaces between words, so a wide character never needs a boundary next to it.
    return (ch.isalnum() or ch == "_") and unicodedata.east_asian_width(ch) not in ("W", "F")


def _on_boundaries(text: str, start: int, answer: str) -> bool:
    end = start + len(answer)
    before = text[start - 1] if start > 0 else ""
    after = text[end] if end < len(text) else ""
    if before and _is_word(before) and _is_word(answer[0]):
        return False
    if after and _is_word(after) and _is_word(answer[-1]):
        return False
    # "3" must not match inside "-3", "1.3" or "3.5".
    if answer[0].isdigit() and before in ("-", "."):
        return False
    follows_digit = end + 1 < len(text) and text[end + 1].isdigit()
    return not (answer[-1].isdigit() and after in (".", ",") and follows_digit)


def contains_answer(text: str, answer: str, min_chars: int = 2) -> bool:
    """True if normalised ``answer`` occurs in normalised ``text`` on token boundaries (see module doc)."""
    norm_answer = normalise(answer)
    norm_text = normalise(text)
    if not norm_answer:
        return False
    if len(norm_answer) < min_chars and not is_number(norm_answer):
        return norm_text == norm_answer
    start = norm_text.find(norm_answer)
    while start != -1:
        if _on_boundaries(norm_text, start, norm_answer):
            return True
        start = norm_text.find(norm_answer, start + 1)
    return False


def numbers(text: str) -> set[Decimal]:
    """The values of the numerals in ``text``; a minus sign right after a word is a separator (dates)."""
    norm = normalise(text)
    values = set()
    for m in NUMBER.finditer(norm):
        value = Decimal(m.group().replace(",", ""))
        values.add(-value if value < 0 and m.start() > 0 and norm[m.start() - 1].isalnum() else value)
    return values


def carries_value(answer: str, value: Any, min_chars: int = 4) -> bool:
    """True if an argument ``value`` can be read off ``answer``: the direction of a data dependency.

    A parent's answer is prose ("Hotel Carris, 118 EUR per night") and the child passes one value of it on
    (``118.0``), so the value is looked for in the answer: numbers by value among the answer's numerals,
    strings (dates in any spelling :func:`normalise` knows) by normalised containment on token boundaries,
    or the whole answer inside a free-text value. A string shorter than ``min_chars`` (a currency code)
    carries only an answer that is exactly it. Booleans carry nothing; a list or object carries what one
    of its elements does.
    """
    if isinstance(value, bool) or value is None:
        return False
    if isinstance(value, int | float):
        return math.isfinite(value) and Decimal(str(value)) in numbers(answer)
    if isinstance(value, str):
        return contains_answer(answer, value, min_chars) or contains_answer(value, answer)
    if isinstance(value, dict):
        return any(carries_value(answer, v, min_chars) for v in value.values())
    if isinstance(value, list):
        return any(carries_value(answer, v, min_chars) for v in value)
    return False


def canonical_numbers(value: Any) -> Any:
    """``value`` with integral floats written as ints, recursively (booleans stay booleans)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: canonical_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [canonical_numbers(v) for v in value]
    return value


def same_result(a: Any, b: Any) -> bool:
    """Two JSON results are equal up to number spelling (``354 == 354.0``) and key order."""
    return canonical_json(canonical_numbers(a)) == canonical_json(canonical_numbers(b))
