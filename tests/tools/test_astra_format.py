"""ASTRA's mcp_servers.jsonl shape (both variants) and our own records, bad lines included."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from astra_synth.tools.astra_format import import_server_file
from astra_synth.tools.normalize import FilterConfig
from astra_synth.tools.spec import EmulatedTransport, HttpTransport, ServerRecord, ToolSpec

TOOLS = [
    {"name": "list_orders", "description": "List a customer's orders with status", "parameters": {
        "type": "object", "properties": {"customer_id": {"type": "string"}}, "required": ["customer_id"]}},
    {"type": "function", "function": {"name": "get_order", "description": "Fetch one order by its id",
        "parameters": {"type": "object", "properties": {"order_id": {"type": "string"}}}}},
    {"name": "cancel_order", "description": "Cancel an order that has not shipped",
        "parameters": json.dumps({"type": "object", "properties": {"order_id": {"type": "string"}}})},
    {"name": "ping", "description": "ping"},
]  # fmt: skip


def _astra(name: str, call_info: dict[str, Any], tools: list[Any] = TOOLS) -> dict[str, Any]:
    return {
        "base_info": {
            "group_info": {
                "server_title": name.title(),
                "server_name": name,
                "server_description": "Shop API",
                "domain": "E-Commerce",
            },
            "tool_list": tools,
        },
        "call_info": call_info,
        "features": {"anything": [1, 2]},
    }  # fmt: skip


def _write(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def test_both_astra_variants_and_our_shape(tmp_path: Path) -> None:
    ours = ServerRecord(
        id="ours",
        title="Ours",
        tools=[ToolSpec(name=f"t{i}", description=f"Does thing number {i}") for i in range(3)],
    )
    hosted = {"url": "https://mcp.example/x", "headers": {"k": "v"}}
    path = _write(
        tmp_path / "mcp_servers.jsonl",
        [
            json.dumps(_astra("shop one", {"mock_tool": True})),
            json.dumps({"mcp_info": _astra("shop two", hosted), "graph": {"nodes": []}}),
            ours.model_dump_json(),
        ],
    )  # fmt: skip
    result = import_server_file(path, FilterConfig())
    one, two, mine = result.servers
    assert (one.id, one.title, one.domain, one.description) == (
        "shop-one",
        "Shop One",
        "e-commerce",
        "Shop API",
    )
    assert one.transport == EmulatedTransport()
    assert one.source == f"{path}:1 [astra, emulated (mock_tool)]"
    assert [t.name for t in one.tools] == ["list_orders", "get_order", "cancel_order"]
    assert one.tools[2].parameters["properties"] == {"order_id": {"type": "string"}}  # JSON string parsed
    assert two.transport == HttpTransport(url="https://mcp.example/x")
    assert "headers not carried" in two.source
    assert mine.id == "ours" and len(mine.tools) == 3
    # "ping"/"ping" is vague, in both ASTRA servers
    assert [(r.server, r.tool, r.reason) for r in result.rejects] == [
        ("shop-one", "ping", "vague_description"),
        ("shop-two", "ping", "vague_description"),
    ]


def test_bad_lines_are_rejected_with_file_line_and_field(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "bad.jsonl",
        [
            json.dumps(_astra("good shop", {})),
            "{not json",
            json.dumps({"base_info": {"group_info": {"server_name": "no tools"}}}),
            json.dumps({"base_info": {"group_info": {}, "tool_list": [{"description": "nameless"}]}}),
            json.dumps({"id": "x", "tools": "nope"}),
            json.dumps(_astra("good shop", {})),
            json.dumps(_astra("tiny", {}, TOOLS[:1])),
        ],
    )
    result = import_server_file(path, FilterConfig())
    assert [s.id for s in result.servers] == ["good-shop"]
    by_line = {r.source.split(":")[-1].split(" ")[0]: r for r in result.rejects}
    assert by_line["2"].reason == "invalid_record" and "invalid JSON" in by_line["2"].detail
    assert by_line["3"].server == "no tools"
    assert f"{path}:3" in by_line["3"].detail and "base_info.tool_list" in by_line["3"].detail
    assert "base_info.tool_list.0.name" in by_line["4"].detail
    assert "not a valid ServerRecord" in by_line["5"].detail and "field 'tools'" in by_line["5"].detail
    assert "already imported" in by_line["6"].detail
    tiny = [r for r in result.rejects if r.server == "tiny"]
    assert [r.reason for r in tiny] == ["too_few_tools"]


def test_smithery_and_missing_call_info_are_emulated(tmp_path: Path) -> None:
    path = _write(
        tmp_path / "s.jsonl",
        [
            json.dumps(_astra("smithery shop", {"python_sdk_url": "https://x/{config_b64}"})),
            json.dumps(_astra("bare", {})),
        ],
    )
    smithery, bare = import_server_file(path, FilterConfig()).servers
    assert isinstance(smithery.transport, EmulatedTransport) and "smithery" in smithery.source
    assert isinstance(bare.transport, EmulatedTransport) and "no call_info" in bare.source
