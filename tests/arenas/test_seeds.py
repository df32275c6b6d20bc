import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from astra_synth.arenas.seeds import SeedSource, expand_source, expand_sources

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "seeds"


def test_domains_mode_one_seed_per_hop_count() -> None:
    src = SeedSource(mode="domains", file=EXAMPLES / "domains.en.jsonl", min_hops=2, max_hops=4)
    seeds, errors = expand_source(src, seed=0)
    assert errors == []
    assert len(seeds) == 6 * 3
    assert {(s.min_hops, s.max_hops) for s in seeds} == {(2, 2), (3, 3), (4, 4)}
    assert all(s.knowledge_corpus is None for s in seeds)  # empty corpus reads as none


def test_corpus_mode_keeps_the_range_and_the_card() -> None:
    src = SeedSource(mode="corpus", file=EXAMPLES / "corpus.en.jsonl", min_hops=2, max_hops=5, repeats=2)
    seeds, errors = expand_source(src, seed=0)
    assert errors == []
    assert len(seeds) == 4 * 2
    assert {(s.min_hops, s.max_hops) for s in seeds} == {(2, 5)}
    assert all(s.knowledge_corpus and "Background" in s.knowledge_corpus for s in seeds)
    assert [s.repeat for s in seeds[:2]] == [0, 1]


def test_questions_mode_in_both_languages() -> None:
    seeds, errors = expand_sources(
        [
            SeedSource(mode="questions", file=EXAMPLES / "questions.en.jsonl", max_hops=4),
            SeedSource(mode="questions", language="zh", file=EXAMPLES / "questions.zh.jsonl", max_hops=4),
        ],
        seed=0,
    )
    assert errors == []
    assert len(seeds) == 6
    assert {s.language for s in seeds} == {"en", "zh"}
    assert all(s.question for s in seeds)


def test_taxonomy_leaves_become_domains_and_masking_is_seeded() -> None:
    src = SeedSource(mode="taxonomy", file=EXAMPLES / "taxonomy.en.json", mask_example_rate=0.5)
    a, errors = expand_source(src, seed=7)
    b, _ = expand_source(src, seed=7)
    assert errors == []
    assert [s.domain for s in a] == ["weather-forecast", "weather-air_quality", "finance-currency"]
    assert a == b
    never = SeedSource(mode="taxonomy", file=EXAMPLES / "taxonomy.en.json", mask_example_rate=0.0)
    assert all(s.knowledge_corpus for s in expand_source(never, seed=7)[0])


def test_plain_mode_needs_no_file() -> None:
    seeds, _ = expand_source(
        SeedSource(mode="plain", language="zh", domain="出行", min_hops=1, max_hops=2), 0
    )
    assert [(s.domain, s.min_hops) for s in seeds] == [("出行", 1), ("出行", 2)]


def test_bad_lines_are_reported_with_file_line_field(tmp_path: Path) -> None:
    f = tmp_path / "q.jsonl"
    f.write_text(json.dumps({"question": "ok?"}) + "\n{not json\n" + json.dumps({"domain": "x"}) + "\n")
    seeds, errors = expand_source(SeedSource(mode="questions", file=f), seed=0)
    assert len(seeds) == 1
    messages = [str(e) for e in errors]
    assert messages[0].startswith(f"{f}:2: invalid JSON")
    assert messages[1].startswith(f"{f}:3:") and "'question'" in messages[1]


def test_corpus_mode_requires_a_card(tmp_path: Path) -> None:
    f = tmp_path / "c.jsonl"
    f.write_text(json.dumps({"domain": "x"}) + "\n")
    seeds, errors = expand_source(SeedSource(mode="corpus", file=f), seed=0)
    assert seeds == [] and "knowledge_corpus" in str(errors[0])


def test_config_rejects_missing_file_and_bad_range() -> None:
    with pytest.raises(ValidationError, match="needs a seed file"):
        SeedSource(mode="domains")
    with pytest.raises(ValidationError, match="max_hops"):
        SeedSource(mode="plain", min_hops=3, max_hops=2)
