"""The tool message a model sees for an answer and for each kind of failure."""

from __future__ import annotations

import json

from astra_synth.tools.outcome import ToolOutcome


def test_message_content() -> None:
    text = ToolOutcome(server_id="s", tool="t", status="ok", content="plain", provenance="real")
    data = ToolOutcome(server_id="s", tool="t", status="ok", content={"é": [1]}, provenance="emulated")
    failed = ToolOutcome(
        server_id="s",
        tool="t",
        status="not_found",
        error="404 Not Found",
        provenance="emulated",
        injected=True,
    )
    assert text.message_content() == "plain" and text.ok
    assert data.message_content() == '{"é": [1]}'
    assert not failed.ok
    assert json.loads(failed.message_content()) == {
        "error": {"type": "not_found", "message": "404 Not Found"}
    }


def test_round_trip() -> None:
    outcome = ToolOutcome(server_id="s", tool="t", arguments={"a": 1}, status="timeout", provenance="real")
    assert ToolOutcome.model_validate_json(outcome.model_dump_json()) == outcome
