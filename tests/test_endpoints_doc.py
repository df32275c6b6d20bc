"""docs/endpoints.md: every endpoint YAML it recommends is a valid ``endpoint:`` section."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

from astra_synth.config import EndpointConfig

DOC = Path(__file__).resolve().parents[1] / "docs" / "endpoints.md"


def test_every_endpoint_block_validates() -> None:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    endpoints = [EndpointConfig.model_validate(yaml.safe_load(b)["endpoint"]) for b in blocks]
    assert len(endpoints) == 4  # Qwen3 thinking off and on, OpenAI chat, OpenAI reasoning
    assert {e.thinking for e in endpoints} == {"on", "off", None}
    assert any(e.token_limit_param == "max_completion_tokens" for e in endpoints)
