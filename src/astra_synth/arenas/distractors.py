"""Irrelevant-tool mixing (ASTRA §C.3): offer each episode tools it does not need, banded by similarity.

A policy trained on clean tool lists never learns to *not* call a tool; precision only has teeth when
plausible wrong tools are on offer. Every tool document of the pool (all arenas, deduplicated by exact name)
is embedded once; for each in-scope tool its cosine row over the other tools is min-max normalised to [0, 1].
A candidate's score is its highest normalised similarity to any in-scope tool, and it falls into one band:
high > 0.85, medium 0.4–0.85, low < 0.4 (one band per candidate, so no tool is drawn twice). Tools of the
arena's own domain and tools named like an in-scope tool are excluded (near-duplicates make the task
ambiguous). Up to K per band are drawn with a seeded RNG and recorded per episode; the tool order is shuffled
by ``ArenaEnv``. GRPO (``astra train rl``) and the arena server (``astra arenas serve --distractors K``) draw
the same way, so an episode seed gives the same tools in process and on a server over the same arenas.

Vectors come through :class:`~astra_synth.llm.embeddings.VectorCache`, so a pool is embedded once per machine.
"""

from __future__ import annotations

import json
import random
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, Field

from astra_synth.arenas.records import Arena, ToolSchema, ToolSource
from astra_synth.arenas.runtime import ExtraTool
from astra_synth.config import StrictModel, cache_root
from astra_synth.llm.embeddings import Embedder, LocalEmbedder, VectorCache


class DistractorConfig(StrictModel):
    """Band thresholds on the normalised similarity and how many tools to draw per band."""

    k_per_band: int = Field(default=2, ge=0, description="Up to this many tools from each band.")
    high: float = Field(default=0.85, gt=0, lt=1)
    low: float = Field(default=0.4, gt=0, lt=1)
    seed: int = 0


class DistractorDraw(BaseModel):
    """The distractors of one episode, by band (recorded with the rollout for analysis)."""

    high: list[str] = Field(default_factory=list)
    medium: list[str] = Field(default_factory=list)
    low: list[str] = Field(default_factory=list)

    @property
    def names(self) -> list[str]:
        return [*self.high, *self.medium, *self.low]


class _PoolTool(BaseModel):
    tool: ToolSchema
    source: ToolSource
    domain: str


def tool_document(tool: ToolSchema) -> str:
    """The text that is embedded: the tool's OpenAI schema as canonical JSON."""
    return json.dumps(tool.model_dump(), sort_keys=True, ensure_ascii=False)


class DistractorSampler:
    """Bands and draws distractors for arenas from a tool pool (built from arenas, first name wins)."""

    def __init__(
        self,
        pool: Sequence[Arena],
        embedder: Embedder,
        cache: VectorCache,
        config: DistractorConfig | None = None,
    ) -> None:
        self.config = config or DistractorConfig()
        tools: dict[str, _PoolTool] = {}
        for arena in pool:
            for tool in arena.tools:
                name = tool.function.name
                if name not in tools:
                    tools[name] = _PoolTool(tool=tool, source=arena.tool_sources[name], domain=arena.domain)
        self._tools = tools
        self._names = list(tools)
        self._index = {n: i for i, n in enumerate(self._names)}
        vectors = cache.embed(embedder, [tool_document(t.tool) for t in tools.values()])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True) if len(vectors) else vectors
        unit = vectors / np.where(norms == 0, 1.0, norms)
        self._similarity = unit @ unit.T
        self._bands: dict[tuple[str, frozenset[str]], DistractorDraw] = {}

    @property
    def pool(self) -> list[str]:
        """The pool's tool names (every candidate a draw can offer)."""
        return list(self._names)

    def normalised_row(self, name: str) -> dict[str, float]:
        """Min-max normalised similarity of pool tool ``name`` to every other pool tool."""
        i = self._index[name]
        others = [j for j in range(len(self._names)) if j != i]
        row = self._similarity[i, others]
        if not len(row):
            return {}
        low, high = float(row.min()), float(row.max())
        span = high - low
        return {
            self._names[j]: (float(v) - low) / span if span > 0 else 0.0
            for j, v in zip(others, row, strict=True)
        }

    def bands(self, arena: Arena) -> DistractorDraw:
        """Every eligible candidate of ``arena``, in its band (sorted by name). Computed once per domain and
        tool set: a server resets the same arenas many times, and a row costs a pass over the pool."""
        in_scope = frozenset(t.function.name for t in arena.tools)
        key = (arena.domain, in_scope)
        if key not in self._bands:
            self._bands[key] = self._banded(arena.domain, in_scope)
        return self._bands[key].model_copy(deep=True)

    def _banded(self, domain: str, in_scope: frozenset[str]) -> DistractorDraw:
        score: dict[str, float] = {}
        for name in sorted(in_scope & set(self._index)):
            for other, value in self.normalised_row(name).items():
                if other in in_scope or self._tools[other].domain == domain:
                    continue
                score[other] = max(score.get(other, 0.0), value)
        draw = DistractorDraw()
        for name in sorted(score):
            value = score[name]
            band = (
                draw.high
                if value > self.config.high
                else draw.low
                if value < self.config.low
                else draw.medium
            )
            band.append(name)
        return draw

    def sample(self, arena: Arena, episode: int = 0) -> DistractorDraw:
        """Up to K per band, drawn by a seed made of (config seed, arena id, episode)."""
        rng = random.Random(f"{self.config.seed}:{arena.id}:{episode}")
        bands = self.bands(arena)
        k = self.config.k_per_band
        return DistractorDraw(
            high=rng.sample(bands.high, min(k, len(bands.high))),
            medium=rng.sample(bands.medium, min(k, len(bands.medium))),
            low=rng.sample(bands.low, min(k, len(bands.low))),
        )

    def extra_tools(self, draw: DistractorDraw) -> list[ExtraTool]:
        """The drawn tools in the form ``ArenaEnv`` runs them (each with its own source)."""
        return [ExtraTool(tool=self._tools[n].tool, source=self._tools[n].source) for n in draw.names]


def local_samplers(
    pools: Mapping[str, Sequence[Arena]], config: DistractorConfig | None = None
) -> dict[str, DistractorSampler]:
    """One sampler per named pool (e.g. per split, so a training episode never sees a held-out arena's
    tools), all with the bundled all-MiniLM-L6-v2 loaded once and this machine's vector cache
    (``$ASTRA_CACHE_DIR/embeddings``): no network, and each tool document is embedded once per machine."""
    embedder, cache = LocalEmbedder(), VectorCache(cache_root() / "embeddings")
    return {name: DistractorSampler(pool, embedder, cache, config) for name, pool in pools.items()}
