"""``astra tools``: import-mcp (stdio, --url), import (ASTRA shape), list; what was kept and dropped."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.tools.normalize import ImportReject
from astra_synth.tools.registry import load_servers
from astra_synth.tools.spec import HttpTransport, StdioTransport

runner = CliRunner()


def test_import_mcp_drops_a_two_tool_server_with_its_reason(tmp_path: Path) -> None:
    out, rejects = tmp_path / "registry.jsonl", tmp_path / "rejects.jsonl"
    args = [
        "tools",
        "import-mcp",
        "--out",
        str(out),
        "--rejects",
        str(rejects),
        "--",
        "python",
        "-m",
        "mcp_server_time",
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 1, result.output
    assert "too_few_tools" in result.output and "2 usable tool(s) < 3" in result.output
    assert "kept 0 server(s)" in result.output
    [reject] = [ImportReject.model_validate_json(line) for line in rejects.read_text().splitlines()]
    assert (reject.server, reject.reason) == ("mcp-time", "too_few_tools")
    assert load_servers(out) == []


def test_import_mcp_adds_and_replaces_by_id(tmp_path: Path, helper_stdio: StdioTransport) -> None:
    out = tmp_path / "registry.jsonl"
    base = ["tools", "import-mcp", "--out", str(out), "--id", "helper"]
    first = runner.invoke(app, [*base, "--domain", "testing", "--", "python", *helper_stdio.args])
    assert first.exit_code == 0, first.output
    assert "kept 1 server(s), 5 tool(s); dropped 0" in first.output
    second = runner.invoke(app, [*base, "--domain", "qa", "--", "python", *helper_stdio.args])
    assert second.exit_code == 0, second.output
    [server] = load_servers(out)
    assert (server.id, server.domain, len(server.tools)) == ("helper", "qa", 5)
    listing = runner.invoke(app, ["tools", "list", str(out)])
    assert listing.exit_code == 0 and "helper" in listing.output and "add_to_counter" in listing.output


def test_import_mcp_over_http(tmp_path: Path, helper_http: HttpTransport) -> None:
    out = tmp_path / "registry.jsonl"
    result = runner.invoke(app, ["tools", "import-mcp", "--url", helper_http.url, "--out", str(out)])
    assert result.exit_code == 0, result.output
    [server] = load_servers(out)
    assert server.transport == helper_http


def test_import_mcp_needs_exactly_one_target(tmp_path: Path) -> None:
    out = str(tmp_path / "r.jsonl")
    assert runner.invoke(app, ["tools", "import-mcp", "--out", out]).exit_code == 2
    both = ["tools", "import-mcp", "--out", out, "--url", "http://127.0.0.1:9/mcp", "--", "python"]
    assert runner.invoke(app, both).exit_code == 2


def test_import_astra_file_and_list(tmp_path: Path) -> None:
    tools = [
        {"name": f"tool_{i}", "description": f"Does the number {i} job", "parameters": {"type": "object"}}
        for i in range(3)
    ]
    lines = [
        {"base_info": {"group_info": {"server_name": "Jobs Hub", "domain": "HR"}, "tool_list": tools},
         "call_info": {"mock_tool": 1}},
        {"base_info": {"group_info": {"server_name": "Thin"}, "tool_list": tools[:1]}},
    ]  # fmt: skip
    source = tmp_path / "mcp_servers.jsonl"
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n{broken\n")
    out = tmp_path / "registry.jsonl"
    result = runner.invoke(app, ["tools", "import", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "kept 1 server(s), 3 tool(s); dropped 2" in result.output
    assert "too_few_tools" in result.output and "invalid_record" in result.output
    [server] = load_servers(out)
    assert (server.id, server.domain) == ("jobs-hub", "hr")
    listing = runner.invoke(app, ["tools", "list", str(out)])
    assert "jobs-hub" in listing.output and "emulated" in listing.output


def test_list_reports_a_bad_registry_line(tmp_path: Path) -> None:
    registry = tmp_path / "registry.jsonl"
    registry.write_text('{"id": "x"}\n')
    result = runner.invoke(app, ["tools", "list", str(registry)])
    assert result.exit_code == 1
    assert "registry.jsonl:1" in result.output and "title" in result.output


def test_example_registry_is_valid() -> None:
    servers = load_servers(Path(__file__).parents[2] / "examples" / "servers" / "servers.jsonl")
    assert {s.id for s in servers} >= {"mcp-time", "mcp-git", "library-catalogue", "travel-desk"}
    emulated = [s for s in servers if s.transport.kind == "emulated"]
    assert len(emulated) >= 3 and all(len(s.tools) >= 3 for s in emulated)
