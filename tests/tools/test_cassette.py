"""Record real tool responses, replay them byte for byte; a miss in replay is an error, never a live call."""

from __future__ import annotations

from pathlib import Path

import pytest

from astra_synth.errors import InputError
from astra_synth.tools.cassette import Cassette, CassetteMiss, cassette_key
from astra_synth.tools.outcome import ToolOutcome
from astra_synth.tools.router import ToolRouter
from astra_synth.tools.spec import ServerRecord, StdioTransport, ToolSpec

TIME_TOOLS = [
    ToolSpec(
        name="get_current_time",
        description="Get current time in a specific timezone",
        parameters={
            "type": "object",
            "properties": {"timezone": {"type": "string"}},
            "required": ["timezone"],
        },
    )
]


def _time_server(transport: StdioTransport) -> ServerRecord:
    return ServerRecord(id="time", title="Time", tools=TIME_TOOLS, transport=transport)


async def test_record_then_replay_gives_identical_outcomes(
    tmp_path: Path, time_stdio: StdioTransport
) -> None:
    path = tmp_path / "tools.cassette.jsonl"
    calls = [{"timezone": "Asia/Tokyo"}, {"timezone": "Europe/Paris"}, {"timezone": "Nowhere/Atlantis"}]
    with Cassette(path, "record") as cassette:
        async with ToolRouter(cassette=cassette) as router:
            recorded = [
                await router.call(_time_server(time_stdio), "get_current_time", args) for args in calls
            ]
    assert [o.status for o in recorded] == ["ok", "ok", "tool_error"]
    assert {o.provenance for o in recorded} == {"real"}

    # The replaying server cannot even start: any live call would fail, so equal outcomes prove replay.
    dead = _time_server(StdioTransport(command="/nonexistent/server"))
    with Cassette(path, "replay") as cassette:
        async with ToolRouter(cassette=cassette) as router:
            replayed = [await router.call(dead, "get_current_time", dict(reversed(a.items()))) for a in calls]
            with pytest.raises(CassetteMiss) as miss:
                await router.call(dead, "get_current_time", {"timezone": "America/Lima"})
    assert [o.provenance for o in replayed] == ["replayed"] * 3
    strip = {"provenance", "latency_s"}
    assert [o.model_dump(exclude=strip) for o in replayed] == [o.model_dump(exclude=strip) for o in recorded]
    assert [o.message_content() for o in replayed] == [o.message_content() for o in recorded]
    assert miss.value.reason == "cassette_miss" and "America/Lima" in miss.value.detail


def _outcome(tool: str, value: int) -> ToolOutcome:
    return ToolOutcome(
        server_id="s",
        tool=tool,
        arguments={"a": 1, "b": [1, 2]},
        status="ok",
        content=value,
        provenance="real",
    )  # fmt: skip


def test_key_is_canonical() -> None:
    assert cassette_key("s", "t", {"a": 1, "b": {"x": 1, "y": 2}}) == cassette_key(
        "s", "t", {"b": {"y": 2, "x": 1}, "a": 1}
    )
    assert cassette_key("s", "t", {"a": 1}) != cassette_key("s", "u", {"a": 1})
    assert cassette_key("s", "t", {"a": 1}) != cassette_key("r", "t", {"a": 1})


def test_modes(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with pytest.raises(InputError, match="no such cassette"):
        Cassette(path, "replay")
    with Cassette(path, "record") as cassette:
        assert cassette.lookup("s", "t", {"a": 1, "b": [1, 2]}) is None  # record mode always calls live
        cassette.record(_outcome("t", 1))
        cassette.record(_outcome("t", 2))  # recorded twice: the latest wins
    with Cassette(path, "auto") as cassette:
        hit = cassette.lookup("s", "t", {"b": [1, 2], "a": 1})
        assert hit is not None and hit.content == 2 and hit.provenance == "replayed"
        assert cassette.lookup("s", "other", {}) is None  # auto: a miss goes live
    with Cassette(path, "replay") as cassette:
        assert len(cassette) == 1
        with pytest.raises(RuntimeError, match="read-only"):
            cassette.record(_outcome("t", 3))


def test_a_corrupt_cassette_names_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with Cassette(path, "record") as cassette:
        cassette.record(_outcome("t", 1))
    with path.open("a") as fh:
        fh.write('{"key": "k"}\n')
    with pytest.raises(InputError, match=rf"{path.name}:2: .*outcome"):
        Cassette(path, "replay")


def test_a_recording_cut_mid_line_is_repaired_when_recording_resumes(tmp_path: Path) -> None:
    path = tmp_path / "c.jsonl"
    with Cassette(path, "record") as cassette:
        cassette.record(_outcome("t", 1))
    with path.open("a") as fh:
        fh.write('{"key": "torn')  # what kill -9 leaves
    with Cassette(path, "auto") as cassette:
        assert len(cassette) == 1
        cassette.record(_outcome("u", 2))
    assert len(Cassette(path, "replay")) == 2
