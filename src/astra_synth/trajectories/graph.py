"""Stage 1 — LLM-proposed tool chains → weighted transition graph → seeded random walks.

The model proposes (task, chain) pairs for a server; consecutive tools become edges whose weight counts how
often the pair occurred. A chain naming a tool the server does not have is dropped whole: the authors'
code skipped the unknown name and linked its neighbours, inventing an edge no chain contained. Walks are
sampled, not enumerated (the authors' exhaustive DFS explodes on dense graphs and revisits nodes): seeded,
length-bounded, weighted by edge counts, acyclic on request, capped per server and deduplicated.
"""

from __future__ import annotations

import json
import random
from itertools import pairwise

import networkx as nx
from pydantic import Field, model_validator

from astra_synth.config import StrictModel
from astra_synth.errors import Rejection
from astra_synth.llm.structured import StructuredOutputRejected, structured_chat
from astra_synth.prompts import Prompt, load_prompt
from astra_synth.runs.stage import StageContext
from astra_synth.tools.spec import ServerRecord
from astra_synth.trajectories.records import ChainOrigin, ChainSeed

# Bounds of what the model may answer, so grammar-constrained decoding cannot run away. Strings carry no
# maxLength: llama.cpp unrolls it into one grammar rule per character and rejects long ones (max_tokens
# bounds them instead).
MAX_PROPOSED_CHAINS = 8
MAX_PROPOSED_CHAIN_LEN = 8


class GraphConfig(StrictModel):
    min_tools: int = Field(default=3, ge=1, description="Servers with fewer tools are rejected (paper: 3).")
    proposal_samples: int = Field(default=1, ge=1, description="Proposal calls per server (a multiset).")
    max_chains: int = Field(default=8, ge=1, le=MAX_PROPOSED_CHAINS, description="Chains asked per call.")
    temperature: float = Field(default=0.7, ge=0)
    max_tokens: int = Field(default=1024, ge=64)
    min_len: int = Field(default=2, ge=1)
    max_len: int = Field(default=5, ge=1, le=MAX_PROPOSED_CHAIN_LEN)
    acyclic: bool = True
    max_walks_per_server: int = Field(default=8, ge=0, description="Cap on chain seeds per server.")
    include_proposed: bool = Field(default=True, description="Keep the model's own chains as seeds too.")
    server_only_tool_counts: list[int] = Field(
        default_factory=lambda: [2, 3], description="One server-only task seed per count (once per server)."
    )

    @model_validator(mode="after")
    def _bounds(self) -> GraphConfig:
        if self.min_len > self.max_len:
            raise ValueError(f"min_len {self.min_len} > max_len {self.max_len}")
        return self


class ProposedChain(StrictModel):
    task: str = Field(min_length=1)
    chain: list[str] = Field(min_length=1, max_length=MAX_PROPOSED_CHAIN_LEN)


class ChainProposals(StrictModel):
    chains: list[ProposedChain] = Field(max_length=MAX_PROPOSED_CHAINS)


def split_known(server: ServerRecord, chains: list[ProposedChain]) -> tuple[list[ProposedChain], list[str]]:
    """Chains whose every tool exists, and a note per dropped chain (never repaired, never spliced)."""
    known = {t.name for t in server.tools}
    kept, dropped = [], []
    for proposal in chains:
        unknown = [name for name in proposal.chain if name not in known]
        if unknown:
            dropped.append(f"{proposal.chain}: unknown tools {unknown}")
        else:
            kept.append(proposal)
    return kept, dropped


def build_graph(tools: list[str], chains: list[list[str]]) -> nx.DiGraph[str]:
    """One node per tool; edge a→b weighted by how often b directly follows a in ``chains``."""
    graph: nx.DiGraph[str] = nx.DiGraph()
    graph.add_nodes_from(tools)
    for chain in chains:
        for a, b in pairwise(chain):
            if a not in graph or b not in graph:
                raise ValueError(f"edge {a}->{b} names a tool that is not a node")
            weight = graph.edges[a, b]["weight"] + 1 if graph.has_edge(a, b) else 1
            graph.add_edge(a, b, weight=weight)
    return graph


def random_walk(graph: nx.DiGraph[str], rng: random.Random, length: int, *, acyclic: bool) -> list[str]:
    """One walk of at most ``length`` nodes: the start drawn ∝ weighted out-degree, each step ∝ edge
    weight. It stops early at a node with no (unvisited, when ``acyclic``) successor."""
    starts = [n for n in graph.nodes if graph.out_degree(n) > 0]
    if not starts or length < 1:
        return []
    node = rng.choices(starts, weights=[graph.out_degree(n, weight="weight") for n in starts])[0]
    walk = [node]
    while len(walk) < length:
        options = [(v, d["weight"]) for v, d in graph[node].items() if not (acyclic and v in walk)]
        if not options:
            break
        node = rng.choices([v for v, _ in options], weights=[w for _, w in options])[0]
        walk.append(node)
    return walk


def sample_walks(
    graph: nx.DiGraph[str],
    rng: random.Random,
    *,
    min_len: int,
    max_len: int,
    acyclic: bool,
    max_walks: int,
    exclude: set[tuple[str, ...]] | None = None,
    attempts_per_walk: int = 20,
) -> list[list[str]]:
    """Up to ``max_walks`` distinct walks with ``min_len <= len <= max_len`` (target length uniform in the
    range), skipping any in ``exclude``; gives up after ``attempts_per_walk * max_walks`` draws."""
    seen = set(exclude or ())
    walks: list[list[str]] = []
    for _ in range(attempts_per_walk * max_walks):
        if len(walks) >= max_walks:
            break
        walk = random_walk(graph, rng, rng.randint(min_len, max_len), acyclic=acyclic)
        if len(walk) < min_len or tuple(walk) in seen:
            continue
        seen.add(tuple(walk))
        walks.append(walk)
    return walks


def _tool_lines(server: ServerRecord) -> str:
    return "\n".join(json.dumps(t.model_dump(), ensure_ascii=False) for t in server.tools)


class GraphStage:
    """ServerRecord → chain seeds (proposed chains, random walks) + server-only seeds."""

    name = "graph"
    version = "1"
    input_model = ServerRecord

    def __init__(self, config: GraphConfig | None = None) -> None:
        self.config = config or GraphConfig()

    @property
    def prompt(self) -> Prompt:
        return load_prompt("astra_synth.trajectories", "graph_propose.md")

    def prompt_hashes(self) -> dict[str, str]:
        return {self.prompt.name: self.prompt.sha256}

    async def propose(self, server: ServerRecord, ctx: StageContext) -> list[ProposedChain]:
        """All proposals over ``proposal_samples`` calls; a sample that never parses contributes nothing."""
        assert ctx.llm is not None, "graph needs an LLM"
        cfg = self.config
        text = self.prompt.render(
            server_title=server.title,
            server_description=server.description or "(none)",
            tools=_tool_lines(server),
            max_chains=cfg.max_chains,
            min_len=cfg.min_len,
            max_len=cfg.max_len,
        )
        proposals: list[ProposedChain] = []
        for sample in range(cfg.proposal_samples):
            try:
                answer = await structured_chat(
                    ctx.llm,
                    [{"role": "user", "content": text}],
                    ChainProposals,
                    stage=self.name,
                    temperature=cfg.temperature,
                    max_tokens=cfg.max_tokens,
                    seed=ctx.seed + sample,
                )
            except StructuredOutputRejected:
                continue
            proposals.extend(answer.chains)
        return proposals

    async def process(self, item: ServerRecord, ctx: StageContext) -> list[ChainSeed]:
        cfg = self.config
        names = [t.name for t in item.tools]
        if len(set(names)) != len(names):
            raise Rejection("duplicate_tool_names", f"server {item.id} has tools with the same name")
        if len(names) < cfg.min_tools:
            raise Rejection("too_few_tools", f"server {item.id} has {len(names)} tools (< {cfg.min_tools})")
        kept, dropped = split_known(item, await self.propose(item, ctx))
        graph = build_graph(names, [p.chain for p in kept])
        seeds: list[ChainSeed] = []
        seen: set[tuple[str, ...]] = set()
        if cfg.include_proposed:
            for p in kept:
                key = tuple(p.chain)
                if cfg.min_len <= len(p.chain) <= cfg.max_len and key not in seen:
                    if cfg.acyclic and len(set(p.chain)) != len(p.chain):
                        continue
                    seen.add(key)
                    seeds.append(_chain_seed(item, p.chain, "proposed", p.task))
        seeds = seeds[: cfg.max_walks_per_server]
        walks = sample_walks(
            graph,
            ctx.rng,
            min_len=cfg.min_len,
            max_len=cfg.max_len,
            acyclic=cfg.acyclic,
            max_walks=cfg.max_walks_per_server - len(seeds),
            exclude=seen,
        )
        seeds.extend(_chain_seed(item, w, "walk", None) for w in walks)
        seeds.extend(
            ChainSeed(server=item, origin="server_only", num_tools=k)
            for k in cfg.server_only_tool_counts
            if k <= len(names)
        )
        if not seeds:
            raise Rejection("no_chains", f"no usable chain for server {item.id} ({len(dropped)} dropped)")
        return seeds


def _chain_seed(server: ServerRecord, chain: list[str], origin: ChainOrigin, task: str | None) -> ChainSeed:
    return ChainSeed(server=server, origin=origin, chain=chain, num_tools=len(chain), proposed_task=task)
