"""Tool documents in the one canonical shape: the OpenAI function-calling schema.

``ToolSpec`` is what a model sees; ``ServerRecord`` groups the tools of one service (an "MCP server") with
how to reach it at rollout time. Chains and tasks are only ever composed within one server.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, Literal

from pydantic import Field

from astra_synth.config import StrictModel

TOOL_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"

# The Python types that ``json.loads`` gives for each JSON Schema type.
_PY_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "array": (list,),
    "object": (dict,),
    "null": (type(None),),
}


def fits_json_types(value: Any, types: list[str]) -> bool:
    """Whether a parsed JSON ``value`` is of one of the JSON Schema ``types``, as tools check their input.

    A bool is an int in Python but not in JSON, so true/false fit only "boolean"; a type name JSON Schema does
    not define constrains nothing else.
    """
    if isinstance(value, bool):
        return "boolean" in types
    return any(isinstance(value, _PY_TYPES.get(t, (object,))) for t in types)


class ToolSpec(StrictModel):
    """One tool: ``{"type": "function", "function": {name, description, parameters}}`` in OpenAI terms."""

    name: str = Field(pattern=TOOL_NAME_PATTERN)
    description: str
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of the arguments (an object schema).",
    )

    def openai(self) -> dict[str, Any]:
        """The OpenAI ``tools`` entry for this tool."""
        return {
            "type": "function",
            "function": {"name": self.name, "description": self.description, "parameters": self.parameters},
        }

    def signature_hash(self) -> str:
        """Name + canonical schema: equal for the same tool whatever the key order or description."""
        canon = json.dumps(
            {"name": self.name, "parameters": self.parameters}, sort_keys=True, separators=(",", ":")
        )
        return hashlib.sha256(canon.encode("utf-8")).hexdigest()


class StdioTransport(StrictModel):
    kind: Literal["stdio"] = "stdio"
    command: str
    args: list[str] = Field(default_factory=list)
    env: dict[str, str] = Field(
        default_factory=dict, description="Extra variables (no secrets: use env refs)."
    )
    cwd: str | None = None


class HttpTransport(StrictModel):
    kind: Literal["http"] = "http"
    url: str
    headers: dict[str, str] = Field(
        default_factory=dict,
        description="Extra request headers; put credentials as ${ENV_VAR} refs, read at connect time.",
    )


class EmulatedTransport(StrictModel):
    """No live server: responses come from the stateful emulator (or cassettes)."""

    kind: Literal["emulated"] = "emulated"


Transport = StdioTransport | HttpTransport | EmulatedTransport


class ServerRecord(StrictModel):
    """A tool server: its tools, what it is about, and how to call it."""

    schema_version: Literal[1] = 1
    id: str = Field(min_length=1)
    title: str
    description: str = ""
    domain: str = "general"
    tools: list[ToolSpec]
    transport: Transport = Field(default_factory=EmulatedTransport, discriminator="kind")
    source: str = Field(default="", description="Where the record came from (command, file:line, URL).")
    license: str | None = None

    def tool(self, name: str) -> ToolSpec | None:
        return next((t for t in self.tools if t.name == name), None)
