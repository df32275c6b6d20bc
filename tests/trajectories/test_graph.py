"""Tool graph and walks: weights, no splicing, seeded/bounded/acyclic/weighted walks, the stage over HTTP."""

from __future__ import annotations

import random
from collections import Counter
from itertools import pairwise

import pytest

from astra_synth.errors import Rejection
from astra_synth.testing.scripted import ScriptedLLM, invalid_json_reply, json_reply
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.graph import (
    GraphConfig,
    GraphStage,
    build_graph,
    random_walk,
    sample_walks,
)

from .conftest import ContextFactory

CYCLE = build_graph(["a", "b", "c", "d"], [["a", "b", "c", "a"], ["c", "d", "b"], ["b", "a"]])


def test_edges_count_how_often_a_pair_occurs() -> None:
    graph = build_graph(["a", "b", "c"], [["a", "b"], ["a", "b", "c"], ["b", "c"], ["c", "a"]])
    assert graph.edges["a", "b"]["weight"] == 2
    assert graph.edges["b", "c"]["weight"] == 2
    assert graph.edges["c", "a"]["weight"] == 1
    assert not graph.has_edge("a", "c")


def test_walks_are_seeded() -> None:
    def walks(seed: int) -> list[list[str]]:
        return sample_walks(CYCLE, random.Random(seed), min_len=2, max_len=4, acyclic=False, max_walks=6)

    assert walks(3) == walks(3)
    assert walks(3) != walks(4)


def test_walks_are_bounded_capped_and_distinct() -> None:
    walks = sample_walks(CYCLE, random.Random(0), min_len=2, max_len=3, acyclic=False, max_walks=5)
    assert len(walks) == 5
    assert all(2 <= len(w) <= 3 for w in walks)
    assert len({tuple(w) for w in walks}) == 5
    for w in walks:
        assert all(CYCLE.has_edge(a, b) for a, b in pairwise(w))


def test_acyclic_walks_never_revisit_but_cyclic_ones_do() -> None:
    rng = random.Random(1)
    acyclic = [random_walk(CYCLE, rng, 6, acyclic=True) for _ in range(500)]
    assert all(len(set(w)) == len(w) for w in acyclic)
    cyclic = [random_walk(CYCLE, rng, 6, acyclic=False) for _ in range(500)]
    assert any(len(set(w)) < len(w) for w in cyclic)


def test_steps_follow_edge_weights() -> None:
    graph = build_graph(["a", "b", "c"], [["a", "b"]] * 3 + [["a", "c"]])
    rng = random.Random(5)
    seconds = Counter(random_walk(graph, rng, 2, acyclic=True)[1] for _ in range(4000))
    share_b = seconds["b"] / 4000
    assert 0.72 < share_b < 0.78  # weight 3 of 4; 4000 draws give a standard error of ~0.007


def test_excluded_chains_are_not_sampled_again() -> None:
    graph = build_graph(["a", "b", "c"], [["a", "b", "c"]])
    walks = sample_walks(
        graph, random.Random(0), min_len=2, max_len=3, acyclic=True, max_walks=5, exclude={("a", "b", "c")}
    )
    assert sorted(walks) == [["a", "b"], ["b", "c"]]


def _proposals(*chains: list[str]) -> dict[str, object]:
    return {"chains": [{"task": f"task {i}", "chain": c} for i, c in enumerate(chains)]}


async def test_stage_drops_chains_with_unknown_tools_without_splicing(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on(
        "Propose up to",
        json_reply(
            _proposals(["search_notes", "fetch_everything", "share_note"], ["search_notes", "read_note"])
        ),
    )
    stage = GraphStage(GraphConfig(max_walks_per_server=10, server_only_tool_counts=[2]))
    seeds = await stage.process(notes_server, make_ctx("graph"))
    chains = [s.chain for s in seeds if s.origin != "server_only"]
    assert ["search_notes", "read_note"] in chains
    for chain in chains:
        assert "fetch_everything" not in chain
        assert ("search_notes", "share_note") not in set(pairwise(chain))
    assert [s.num_tools for s in seeds if s.origin == "server_only"] == [2]
    assert {s.origin for s in seeds} == {"proposed", "server_only"}  # one edge: the walk equals the proposal


async def test_stage_caps_seeds_and_keeps_server_only_seeds_once(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on(
        "Propose up to",
        json_reply(
            _proposals(
                ["search_notes", "read_note", "update_note"],
                ["search_notes", "read_note", "share_note"],
                ["read_note", "share_note"],
            )
        ),
    )
    stage = GraphStage(GraphConfig(max_walks_per_server=4))
    seeds = await stage.process(notes_server, make_ctx("graph"))
    chain_seeds = [s for s in seeds if s.origin != "server_only"]
    assert len(chain_seeds) == 4
    assert len({tuple(s.chain) for s in chain_seeds}) == 4
    assert sum(s.origin == "walk" for s in chain_seeds) == 1
    assert sorted(s.num_tools for s in seeds if s.origin == "server_only") == [2, 3]
    again = await stage.process(notes_server, make_ctx("graph"))
    assert again == seeds  # same item, same seed, same walks (the LLM answer is the same)


async def test_garbage_proposals_leave_only_server_only_seeds(
    scripted_llm: ScriptedLLM, make_ctx: ContextFactory, notes_server: ServerRecord
) -> None:
    scripted_llm.on("Propose up to", invalid_json_reply())
    seeds = await GraphStage().process(notes_server, make_ctx("graph"))
    assert {s.origin for s in seeds} == {"server_only"}
    with pytest.raises(Rejection, match="no_chains"):
        await GraphStage(GraphConfig(server_only_tool_counts=[])).process(notes_server, make_ctx("graph"))


async def test_small_servers_are_rejected(make_ctx: ContextFactory, notes_server: ServerRecord) -> None:
    small = notes_server.model_copy(update={"tools": notes_server.tools[:2]})
    with pytest.raises(Rejection, match="too_few_tools"):
        await GraphStage().process(small, make_ctx("graph"))
