import pytest

from astra_synth.prompts import Prompt


def test_render_fills_placeholders_and_keeps_json_braces() -> None:
    p = Prompt("t", 'Domain: $domain\nReturn {"a": 1} for ${n} hops.')
    assert p.render(domain="travel", n=3) == 'Domain: travel\nReturn {"a": 1} for 3 hops.'


def test_missing_placeholder_is_an_error_not_an_empty_string() -> None:
    with pytest.raises(KeyError, match="prompt t: no value for placeholder 'domain'"):
        Prompt("t", "Domain: $domain").render()


def test_hash_changes_with_text() -> None:
    assert Prompt("t", "a").sha256 != Prompt("t", "b").sha256
    assert Prompt("x", "a").sha256 == Prompt("y", "a").sha256
