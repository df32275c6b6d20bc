"""Distractor sampling: bands on min-max normalised similarity, exclusions, seeded draws, vector cache."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from astra_synth.arenas.distractors import DistractorConfig, DistractorSampler, tool_document
from astra_synth.arenas.records import Arena
from astra_synth.arenas.runtime import ArenaEnv
from astra_synth.llm.embeddings import LocalEmbedder, VectorCache
from astra_synth.sandbox.executor import ToolExecutor


@pytest.fixture(scope="module")
def arenas(sample_arenas: dict[str, Arena]) -> dict[str, Arena]:
    return sample_arenas


class AngleEmbedder:
    """2-D unit vectors at chosen angles, so each tool's cosine to ``anchor`` is exactly the given value."""

    name = "angles"

    def __init__(self, pool: list[Arena], cosines: dict[str, float]) -> None:
        self.by_doc = {}
        for arena in pool:
            for tool in arena.tools:
                cos = cosines.get(tool.function.name, 0.0)
                self.by_doc[tool_document(tool)] = [cos, math.sqrt(max(0.0, 1 - cos * cos))]
        self.calls = 0

    def embed(self, texts: list[str]) -> list[list[float]]:
        self.calls += 1
        return [self.by_doc[t] for t in texts]


def test_bands_follow_normalised_similarity_and_exclude_same_domain(
    arenas: dict[str, Arena], tmp_path: Path
) -> None:
    pool = list(arenas.values())
    target = arenas["travel-flight-duration"]  # tool get_flight_schedule, domain travel
    cosines = {
        "get_flight_schedule": 1.0,
        "city_tourist_tax": 1.0,  # same domain (travel): excluded though most similar
        "search_catalog": 0.95,
        "compute_bmi": 0.9,
        "convert_currency": 0.6,
        "letter_grade": 0.3,
    }  # every other tool: cosine 0 → the row's minimum
    sampler = DistractorSampler(pool, AngleEmbedder(pool, cosines), VectorCache(tmp_path))
    row = sampler.normalised_row("get_flight_schedule")
    assert row["city_tourist_tax"] == pytest.approx(1.0)
    assert row["convert_currency"] == pytest.approx(0.6)
    assert min(row.values()) == pytest.approx(0.0)
    bands = sampler.bands(target)
    assert bands.high == ["compute_bmi", "search_catalog"]
    assert bands.medium == ["convert_currency"]
    assert "letter_grade" in bands.low
    assert "city_tourist_tax" not in bands.names  # same domain
    assert "get_flight_schedule" not in bands.names  # in scope
    assert len(set(bands.names)) == len(bands.names)


def test_same_name_tool_from_another_arena_is_excluded(arenas: dict[str, Arena], tmp_path: Path) -> None:
    original = arenas["logistics-chargeable-weight"]
    twin = original.model_copy(update={"id": "twin", "domain": "shipping"})  # same tool name, other domain
    pool = [twin, *arenas.values()]
    sampler = DistractorSampler(pool, AngleEmbedder(pool, {}), VectorCache(tmp_path))
    assert "chargeable_weight" not in sampler.bands(original).names
    draw = sampler.sample(arenas["energy-tariff-costs"])
    assert "annual_energy_cost" not in draw.names


def test_draws_are_seeded_bounded_per_band_and_run_in_the_env(
    arenas: dict[str, Arena], tmp_path: Path, executor: ToolExecutor
) -> None:
    pool = list(arenas.values())
    target = arenas["finance-convert-then-compound"]
    cosines = dict.fromkeys(("search_catalog", "compute_bmi", "get_clinic_hours", "letter_grade"), 0.9)
    sampler = DistractorSampler(
        pool, AngleEmbedder(pool, cosines), VectorCache(tmp_path), DistractorConfig(k_per_band=2, seed=7)
    )
    first = sampler.sample(target, episode=3)
    assert first == sampler.sample(target, episode=3)
    assert len(first.high) == 2 and len(first.low) <= 2 and len(first.medium) <= 2
    draws = {tuple(sampler.sample(target, episode=e).high) for e in range(12)}
    assert len(draws) > 1  # the episode index changes the draw
    env = ArenaEnv(target, executor, extra_tools=sampler.extra_tools(first))
    _, tools = env.reset()
    offered = {t["function"]["name"] for t in tools}
    assert offered == {"convert_currency", "compound_interest", *first.names}


def test_local_embedder_vectors_are_cached_on_disk(arenas: dict[str, Arena], tmp_path: Path) -> None:
    class Counting(LocalEmbedder):
        calls = 0

        def embed(self, texts: list[str]) -> list[list[float]]:
            Counting.calls += 1
            return super().embed(texts)

    pool = list(arenas.values())
    embedder = Counting()
    DistractorSampler(pool, embedder, VectorCache(tmp_path))
    assert Counting.calls == 1
    sampler = DistractorSampler(pool, embedder, VectorCache(tmp_path))
    assert Counting.calls == 1  # second pool build: every vector from the cache
    assert len(list(tmp_path.rglob("*.npy"))) == len({t.function.name for a in pool for t in a.tools})
    # Real embeddings: the two mortgage tools are closer to each other than to a grade lookup.
    row = sampler.normalised_row("mortgage_payment")
    assert row["first_month_payment"] > row["letter_grade"]
