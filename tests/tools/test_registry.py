"""Registry files: strict reads with located errors, atomic writes, merge by id."""

from __future__ import annotations

from pathlib import Path

import pytest

from astra_synth.errors import InputError
from astra_synth.tools.registry import load_servers, merge_servers, write_servers
from astra_synth.tools.spec import ServerRecord, ToolSpec


def _server(sid: str, domain: str = "general") -> ServerRecord:
    return ServerRecord(
        id=sid, title=sid, domain=domain, tools=[ToolSpec(name="t", description="Does a thing")]
    )


def test_round_trip_and_merge(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "registry.jsonl"
    write_servers(path, [_server("a"), _server("b")])
    assert [s.id for s in load_servers(path)] == ["a", "b"]
    merged = merge_servers(load_servers(path), [_server("b", "new"), _server("c")])
    assert [(s.id, s.domain) for s in merged] == [("a", "general"), ("b", "new"), ("c", "general")]
    assert not list(path.parent.glob(".*.tmp"))  # the atomic write left no temp file


def test_errors_name_file_line_and_field(tmp_path: Path) -> None:
    path = tmp_path / "registry.jsonl"
    with pytest.raises(InputError, match="no such registry"):
        load_servers(path)
    path.write_text(
        _server("a").model_dump_json() + "\n" + '{"id": "b", "title": "B", "tools": [{"name": "bad name"}]}\n'
    )
    with pytest.raises(InputError, match=r"registry.jsonl:2: .*tools\.0\.name"):
        load_servers(path)
    path.write_text(_server("a").model_dump_json() + "\n" + _server("a").model_dump_json() + "\n")
    with pytest.raises(InputError, match=r"registry.jsonl:2: server id 'a' already used on line 1"):
        load_servers(path)
