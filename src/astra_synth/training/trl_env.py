"""TRL's own GRPO loop on arenas: ``environment_factory`` classes generated from the arenas' tool schemas.

TRL 1.16's ``GRPOTrainer(environment_factory={name: factory})`` probes one instance per environment, offers
its public methods as tools (transformers' ``get_json_schema`` reads their type hints and Google ``Args:``
docstrings), calls ``reset(**row)`` before each rollout (the row minus its ``environment`` column), each
method when the model calls that tool, and ``get_reward()`` once the rollout ends. So each arena becomes one
class: a method per tool, with typed parameters and a docstring built from the tool's JSON schema, that sends
the call — exactly as the model wrote it, so a wrong argument is the environment's error and counts against
precision as everywhere else — to an arena server (``astra arenas serve``, through :class:`RemoteArenaEnv`)
or, without a URL, to an in-process :class:`ArenaEnv` on the caller's sandbox. ``get_reward`` ends the
episode and returns the arena F1. TRL never shows the environment the model's final text, so the reward is
scored without a final answer (the default ``leaf_subtasks="exclude"`` does not read one).
"""

from __future__ import annotations

import functools
import inspect
import json
import keyword
import operator
from typing import Any, Literal

from astra_synth.agent.chat import ToolCall
from astra_synth.arenas.records import Arena, FunctionSpec
from astra_synth.arenas.reward import RewardBreakdown
from astra_synth.arenas.runtime import ArenaEnv, EnvConfig
from astra_synth.errors import InputError
from astra_synth.sandbox.executor import ToolExecutor
from astra_synth.training.remote_env import SyncRemoteArenaEnv

_PYTHON_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": bool,
    "array": list,
    "object": dict,
    "null": type(None),
}
_RESERVED = {"reset", "get_reward"}  # TRL's own methods of an environment; every other public one is a tool
_SCALARS = (str, int, float, bool, type(None))


def trl_rows(arenas: list[Arena]) -> list[dict[str, Any]]:
    """One TRL dataset row per arena: its prompt (conversational) and the ``environment`` that routes it."""
    return [
        {
            "prompt": [{"role": m.role, "content": m.content or ""} for m in arena.messages],
            "environment": arena.id,
        }
        for arena in arenas
    ]


def trl_environments(
    arenas: list[Arena],
    url: str | None = None,
    executor: ToolExecutor | None = None,
    config: EnvConfig | None = None,
) -> dict[str, type[ArenaToolEnv]]:
    """``environment_factory`` for ``GRPOTrainer``: one class per arena, keyed by arena id (the rows'
    ``environment``). Tool calls go to the arena server at ``url`` (``ws://``/``http://``; the token from
    ``ASTRA_ARENAS_TOKEN``), else to an in-process ``ArenaEnv`` on ``executor`` with ``config``."""
    if (url is None) == (executor is None):
        raise ValueError("give either an arena server url or a sandbox executor, not both or neither")
    factories: dict[str, type[ArenaToolEnv]] = {}
    for arena in arenas:
        if arena.id in factories:
            raise InputError(f"arena id {arena.id!r} appears twice")
        namespace: dict[str, Any] = {"arena": arena, "url": url, "executor": executor, "config": config}
        for tool in arena.tools:
            namespace[tool.function.name] = _tool_method(arena, tool.function)
        name = "Arena_" + "".join(c if c.isalnum() else "_" for c in arena.id)
        factories[arena.id] = type(name, (ArenaToolEnv,), namespace)
    return factories


class ArenaToolEnv:
    """Base of the generated classes: TRL sees ``reset``, ``get_reward`` and the arena's tools, nothing else
    public. The session (server or in-process env) opens on the first ``reset`` and serves every later one;
    ``breakdown`` is the last finished episode's whole reward (recall, precision, calls) as it was scored."""

    arena: Arena
    url: str | None
    executor: ToolExecutor | None
    config: EnvConfig | None

    def __init__(self) -> None:
        self.breakdown: RewardBreakdown | None = None
        self._env: ArenaEnv | SyncRemoteArenaEnv | None = None
        self._calls = 0

    def reset(self, **row: Any) -> None:
        """Start the arena's episode; the prompt is the dataset row's, so nothing is appended to it."""
        if self._env is None:
            self._env = self._open()
        self._env.reset()
        self.breakdown = None
        self._calls = 0

    def get_reward(self) -> float:
        """End the episode (no final answer: TRL does not pass it) and return the arena F1."""
        if self.breakdown is None:
            self.breakdown = self._session().reward()
        return self.breakdown.reward

    def _call(self, name: str, arguments: dict[str, Any]) -> str:
        self._calls += 1
        (reply,) = self._session().step([ToolCall(id=f"call_{self._calls}", name=name, arguments=arguments)])
        content: str = reply["content"]
        return content

    def _open(self) -> ArenaEnv | SyncRemoteArenaEnv:
        if self.url is not None:
            return SyncRemoteArenaEnv(self.url, self.arena)
        if self.executor is None:
            raise RuntimeError("an in-process arena environment needs a sandbox executor")
        return ArenaEnv(self.arena, self.executor, self.config)

    def _session(self) -> ArenaEnv | SyncRemoteArenaEnv:
        if self._env is None:
            raise RuntimeError(f"{type(self).__name__}: call reset() before the tools")
        return self._env


def _tool_method(arena: Arena, spec: FunctionSpec) -> Any:
    """A method named after the tool whose signature, annotations and docstring are its schema, so that
    ``get_json_schema`` gives back the tool's name, description, parameters (types, enums) and required."""
    for name in [spec.name, *spec.properties]:
        if keyword.iskeyword(name) or name.startswith("_") or name in _RESERVED or name == "self":
            raise InputError(f"arena {arena.id}: {name!r} cannot be a TRL tool or parameter name")

    def method(self: ArenaToolEnv, **arguments: Any) -> str:
        return self._call(spec.name, arguments)

    params = [inspect.Parameter("self", inspect.Parameter.POSITIONAL_OR_KEYWORD)]
    annotations: dict[str, Any] = {}
    lines = [" ".join(spec.description.split()), "", "Args:"]
    for pname, pschema in spec.properties.items():
        annotations[pname] = _hint(pschema)
        default = inspect.Parameter.empty if pname in spec.required else pschema.get("default")
        params.append(
            inspect.Parameter(
                pname, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotations[pname]
            )
        )
        text = " ".join(str(pschema.get("description") or pname).split())
        if "default" in pschema:
            text += f" Default: {json.dumps(pschema['default'], ensure_ascii=False)}."
        lines.append(f"    {pname}: {text}")
    method.__name__ = method.__qualname__ = spec.name
    method.__doc__ = "\n".join(lines if spec.properties else lines[:1])
    method.__annotations__ = annotations
    method.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    return method


def _hint(schema: dict[str, Any]) -> Any:
    """The Python type hint whose JSON schema (transformers' mapping) is ``schema``'s type and enum."""
    values = schema.get("enum")
    if isinstance(values, list) and values and all(isinstance(v, _SCALARS) for v in values):
        return Literal.__getitem__(tuple(values))
    declared = schema["type"]
    hints = [_one_type(t, schema) for t in (declared if isinstance(declared, list) else [declared])]
    return functools.reduce(operator.or_, hints)


def _one_type(json_type: str, schema: dict[str, Any]) -> Any:
    items = schema.get("items")
    if json_type == "array" and isinstance(items, dict) and "type" in items:
        return list.__class_getitem__(_hint(items))
    return _PYTHON_TYPES[json_type]
