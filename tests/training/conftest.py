"""Fixtures for training tests: the real sandbox, the sample arenas, the converted embedded model."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from astra_synth.arenas.records import Arena, read_arenas
from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.training.sft import SFTResult

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SAMPLE = EXAMPLES / "arenas.sample.jsonl"
SFT_STEPS = 3


@pytest.fixture(scope="session")
def executor() -> Iterator[ToolExecutor]:
    with get_executor("forkserver") as sandbox:
        yield sandbox


@pytest.fixture(scope="session")
def sample_arenas() -> list[Arena]:
    return read_arenas(SAMPLE)


@pytest.fixture(scope="session")
def family_arenas(executor: ToolExecutor) -> list[Arena]:
    """Two instances of a two-hop family (postcode -> zone -> rate): two tool turns, then the answer."""
    from astra_synth.arenas.families import instantiate, load_families

    (bound,) = [
        b for b in load_families([EXAMPLES / "families" / "logistics.yaml"])
        if b.family.id == "logistics.postcode-rate"
    ]  # fmt: skip
    return instantiate([bound], per_family=2, seed=0, executor=executor, validate=False)


@pytest.fixture(scope="session")
def family_arena(family_arenas: list[Arena]) -> Arena:
    return family_arenas[0]


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The embedded GGUF converted to a trainable checkpoint (once per machine, in the model cache)."""
    from astra_synth.training.models import embedded_checkpoint

    return embedded_checkpoint()


SHORT_ARENAS = ("travel-flight-duration", "logistics-chargeable-weight", "energy-tariff-costs")
"""The arenas with the shortest golden conversations: they keep CPU training steps in seconds."""


@pytest.fixture(scope="session")
def short_arenas(sample_arenas: list[Arena]) -> list[Arena]:
    return [a for a in sample_arenas if a.id in SHORT_ARENAS]


@pytest.fixture(scope="session")
def sft_result(
    tmp_path_factory: pytest.TempPathFactory,
    executor: ToolExecutor,
    short_arenas: list[Arena],
    embedded_model: Path,
) -> SFTResult:
    """A few SFT steps on golden conversations; GRPO tests start from it so the policy calls tools."""
    from astra_synth.arenas.golden import golden_example
    from astra_synth.training.sft import SFTConfig, run_sft

    work = tmp_path_factory.mktemp("sft")
    data = work / "golden.jsonl"
    data.write_text("".join(golden_example(a, executor).model_dump_json() + "\n" for a in short_arenas))
    settings = SFTConfig(
        model=str(embedded_model),
        max_steps=SFT_STEPS,
        learning_rate=3e-4,
        batch_size=3,
        max_length=640,
        warmup_ratio=0.0,
    )
    return run_sft([data], work / "model", settings)
