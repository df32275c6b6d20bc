"""The A.1 filters: names, descriptions, schemas, server size; every drop has a reason."""

from __future__ import annotations

from typing import Any

import pytest

from astra_synth.tools.normalize import (
    FilterConfig,
    RawServer,
    RawTool,
    description_problem,
    filter_server,
    normalize_parameters,
    normalize_tool,
)
from astra_synth.tools.spec import EmulatedTransport, ToolSpec

GOOD = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
POLICY = FilterConfig()


def _tool(
    name: Any = "get_weather", description: Any = "Current weather for a city", parameters: Any = GOOD
) -> RawTool:
    return RawTool(name, description, parameters)


def _server(tools: list[RawTool]) -> RawServer:
    return RawServer(
        id="weather", title="Weather", description="", domain="weather", tools=tools,
        transport=EmulatedTransport(), source="test",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("description", "reason"),
    [
        ("", "missing_description"),
        ("   \n ", "missing_description"),
        ("TODO", "vague_description"),
        ("n/a", "vague_description"),
        ("Weather", "vague_description"),  # one word
        ("Get weather", "vague_description"),  # only restates the name
        ("Current weather for a city", None),
        ("Switches branches", None),  # terse but says what it does
    ],
)
def test_description_checks(description: str, reason: str | None) -> None:
    assert description_problem("get_weather", description, POLICY) == reason


def test_a_good_tool_is_normalised() -> None:
    spec = normalize_tool(_tool(description="  Current   weather\nfor a city "), POLICY)
    assert isinstance(spec, ToolSpec)
    assert spec.description == "Current weather for a city"
    assert spec.parameters == GOOD


@pytest.mark.parametrize(
    ("parameters", "fragment"),
    [
        ({"type": "array"}, "top-level type must be 'object'"),
        ([1, 2], "must be an object schema"),
        ("{not json", "not JSON"),
        ({"type": "object", "properties": {"a": {"type": "strin"}}}, "unknown type 'strin'"),
        ({"type": "object", "properties": {"a": {"$ref": "#/$defs/Missing"}}}, "unresolvable $ref"),
        ({"type": "object", "properties": {"a": {"$ref": "http://x/schema.json"}}}, "unresolvable $ref"),
        ({"type": "object", "properties": {}, "required": ["a"]}, "undefined properties ['a']"),
        ({"type": "object", "properties": {"a": 5}}, "a schema must be an object"),
    ],
)
def test_unmappable_schemas_are_dropped_with_the_problem(parameters: Any, fragment: str) -> None:
    result = normalize_tool(_tool(parameters=parameters), POLICY)
    assert isinstance(result, tuple)
    assert result[0] == "unmappable_schema"
    assert fragment in result[1]


def test_schema_fixes_that_are_safe() -> None:
    assert normalize_parameters(None) == {"type": "object", "properties": {}}
    assert normalize_parameters('{"properties": {"a": {"type": "integer"}}}') == {
        "type": "object", "properties": {"a": {"type": "integer"}},
    }  # fmt: skip
    with_defs = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/Point"}},
        "$defs": {"Point": {"type": "object", "properties": {"x": {"type": "number"}}}},
    }
    assert normalize_parameters(with_defs) == with_defs


def test_invalid_names_are_dropped() -> None:
    assert normalize_tool(_tool(name="get weather!"), POLICY)[0] == "invalid_name"  # type: ignore[index]
    assert normalize_tool(_tool(name=None), POLICY)[0] == "invalid_name"  # type: ignore[index]


def test_server_filter_records_every_drop_and_the_minimum() -> None:
    tools = [
        _tool("a_tool", "Returns the first thing"),
        _tool("b_tool", "Returns the second thing"),
        _tool("b_tool", "Returns the second thing again"),
        _tool("c_tool", ""),
        _tool("d_tool", "Returns the fourth thing", {"type": "string"}),
    ]
    result = filter_server(_server(tools), POLICY)
    assert result.servers == []
    assert [(r.tool, r.reason) for r in result.rejects] == [
        ("b_tool", "duplicate_tool"),
        ("c_tool", "missing_description"),
        ("d_tool", "unmappable_schema"),
        (None, "too_few_tools"),
    ]
    kept = filter_server(_server(tools), FilterConfig(min_tools=2))
    [server] = kept.servers
    assert [t.name for t in server.tools] == ["a_tool", "b_tool"]
    assert server.title == "Weather" and server.domain == "weather"
