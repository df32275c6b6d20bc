"""Fixtures for training tests: the real sandbox, the sample arenas, the converted embedded model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor

SAMPLE = Path(__file__).resolve().parents[2] / "examples" / "arenas.sample.jsonl"


@pytest.fixture(scope="session")
def executor() -> Iterator[ToolExecutor]:
    with get_executor("forkserver") as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def sample_arenas() -> list[Arena]:
    return read_arenas(SAMPLE)


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The embedded GGUF converted to a trainable checkpoint (once per machine, in the model cache)."""
    from astra_synth.training.models import embedded_checkpoint

    return embedded_checkpoint()
