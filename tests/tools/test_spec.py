"""``fits_json_types``: the one JSON-type check behind the emulator's and the arena runtime's input checks."""

from __future__ import annotations

import json
from typing import Any

import pytest

from astra_synth.tools.spec import fits_json_types


@pytest.mark.parametrize(
    ("raw", "types", "fits"),
    [
        ("3", ["integer"], True),
        ("3", ["number"], True),
        ("3.5", ["number"], True),
        ("3.5", ["integer"], False),
        ('"3"', ["number"], False),
        ('"x"', ["string", "null"], True),
        ("null", ["string", "null"], True),
        ("null", ["string"], False),
        ("[1]", ["array"], True),
        ('{"a": 1}', ["object"], True),
        ('{"a": 1}', ["array"], False),
        ("true", ["boolean"], True),
        ("true", ["integer"], False),  # JSON keeps booleans apart from numbers
        ("false", ["number"], False),
        ("true", ["integer", "boolean"], True),
        ("1", ["boolean"], False),
        ("[1]", [], False),
        ("[1]", ["anything"], True),  # a name JSON Schema does not define constrains nothing ...
        ("true", ["anything"], False),  # ... but true/false still fit only "boolean"
    ],
)
def test_fits_json_types(raw: str, types: list[str], fits: bool) -> None:
    value: Any = json.loads(raw)
    assert fits_json_types(value, types) is fits
