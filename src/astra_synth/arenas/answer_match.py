"""Normalised answer matching: does a text (a tool output, a final message) contain an expected answer?

ASTRA checks ``answer in stdout`` on raw text, which "3" passes inside "30" or "1,234.50" fails against
"1234.5". Here both sides are normalised the same way (Unicode NFKC, case-folded, whitespace collapsed,
numbers written canonically) and a match must sit on token boundaries. Answers shorter than
``min_chars`` that are not numbers only match a text that is exactly the answer.
"""

from __future__ import annotations

import json
import re
import unicodedata
from decimal import Decimal
from typing import Any

# A number with optional sign, thousands separators and decimals: "-1,234.50", "007", "3.0".
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)(?:\.\d+)?")


def _canonical_number(token: str) -> str:
    value = Decimal(token.replace(",", ""))  # the regex only admits valid numerals
    if value == 0:
        return "0"
    return format(value.normalize(), "f")


def normalise(text: str) -> str:
    """The comparison form of ``text``: NFKC, case-folded, canonical numbers, single spaces."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = _NUMBER.sub(lambda m: _canonical_number(m.group()), text)
    return " ".join(text.split())


def render(value: Any) -> str:
    """The text a JSON result is matched against: strings as they are, everything else as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def is_number(text: str) -> bool:
    """True if the normalised ``text`` is a single numeral."""
    return _NUMBER.fullmatch(text) is not None


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
