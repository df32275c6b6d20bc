"""Compile a tool environment and call one of its functions: the part of a call that runs tool code.

Used by the fork-server child and the one-shot interpreter alike, after confinement. The answer is the
JSON document the trusted side expects (``status``, ``result`` or ``error``), already size-checked.
"""

from __future__ import annotations

import random
import sys
from types import CodeType, ModuleType

from astra_synth.sandbox.jail.protocol import to_json

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: the worker stays small without ``typing``
if TYPE_CHECKING:
    from typing import Any


TOOL_FILENAME = "<tool>"


def compile_tool(source: str) -> CodeType:
    """Parse only: compiling executes nothing, so a worker may cache the code object for its children."""
    return compile(source, TOOL_FILENAME, "exec", dont_inherit=True)


def describe(exc: BaseException) -> str:
    """``Type: message (tool line N)`` — the innermost line of tool code, no paths of the host."""
    line, tb = None, exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == TOOL_FILENAME:
            line = tb.tb_lineno
        tb = tb.tb_next
    where = f" (tool line {line})" if line else ""
    return f"{type(exc).__name__}: {exc}"[:2000] + where


def call_tool(code: CodeType, fn: str, args: dict[str, Any], seed: int, max_output_bytes: int) -> bytes:
    """Run the module, then ``fn(**args)``; every outcome becomes a JSON answer (never an exception)."""
    random.seed(seed)
    module = ModuleType("tool")  # registered so dataclasses and typing can resolve the tool's names
    sys.modules["tool"] = module
    namespace = module.__dict__
    try:
        exec(code, namespace)
    except BaseException as exc:
        return answer("error", error=f"loading the tool failed: {describe(exc)}")
    func = namespace.get(fn)
    if not callable(func):
        return answer("invalid", error=f"no function {fn!r} in the tool environment")
    try:
        result = func(**args)
    except BaseException as exc:
        return answer("error", error=describe(exc))
    try:
        data = answer("ok", result=result)
    except (TypeError, ValueError, RecursionError) as exc:
        return answer("invalid", error=f"result is not JSON-serialisable: {describe(exc)}")
    if len(data) > max_output_bytes:
        return answer("output_too_large", error=f"result of {len(data)} bytes exceeds {max_output_bytes}")
    return data


def answer(status: str, result: Any = None, error: str | None = None) -> bytes:
    """The answer document; raises TypeError/ValueError when ``result`` is not JSON."""
    return to_json({"status": status, "result": result, "error": error}).encode("utf-8")
