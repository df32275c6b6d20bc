import pytest
from pydantic import ValidationError

from astra_synth.llm.ledger import StageUsage
from astra_synth.runs.manifest import Manifest, StageCounts, StageManifest


def test_manifest_round_trips_and_finds_stages_by_name() -> None:
    manifest = Manifest(
        pipeline="p",
        package_version="0.1.0",
        seed=3,
        status="stopped: budget",
        stages=[
            StageManifest(
                name="ask",
                version="2",
                counts=StageCounts(inputs=5, ok=3, rejected=1, errors=1, outputs=3),
                usage=StageUsage(calls=4, prompt_tokens=100, completion_tokens=20, cost_usd=0.01),
            )
        ],
    )
    again = Manifest.model_validate_json(manifest.model_dump_json())
    assert again == manifest
    assert again.stage("ask") is not None and again.stage("ask").usage.total_tokens == 120  # type: ignore[union-attr]
    assert again.stage("judge") is None


def test_unknown_status_or_field_is_refused() -> None:
    with pytest.raises(ValidationError):
        Manifest(pipeline="p", package_version="0", seed=0, status="done")  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Manifest.model_validate({"pipeline": "p", "package_version": "0", "seed": 0, "surprise": 1})
