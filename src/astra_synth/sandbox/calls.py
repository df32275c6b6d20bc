"""Pieces every executor shares around one call: its source, checking it, seeding it, reading its answer."""

from __future__ import annotations

import hashlib
import json
import os
import signal
from typing import Any, get_args

from astra_synth.sandbox.executor import SandboxLimits, ToolExecutor, ToolResult, ToolStatus, env_id_for
from astra_synth.sandbox.jail.confine import Policy
from astra_synth.sandbox.probe import ProbeReport
from astra_synth.sandbox.seccomp_filter import compile_filter

_STATUSES = frozenset(get_args(ToolStatus))


class SourceKeepingExecutor(ToolExecutor):
    """Base of the backends that keep loaded sources in this process and send them along with the calls.

    ``load`` only remembers the source, so it costs nothing, and a replaced worker or a restarted server can
    always be sent the source again.
    """

    def __init__(self, limits: SandboxLimits | None = None) -> None:
        self.limits = limits or SandboxLimits()
        self._sources: dict[str, str] = {}

    def load(self, source: str) -> str:
        env_id = env_id_for(source)
        self._sources[env_id] = source
        return env_id

    def _admit(self, env_id: str, fn: str, args: dict[str, Any]) -> str | ToolResult:
        """The source to run, or the result that turns the call away (refused executor, bad request)."""
        if self.refusal:
            return ToolResult(ok=False, status="refused", error=self.refusal)
        source = self._sources.get(env_id)
        problem = check_request(source, fn, args, self.limits)
        if problem or source is None:
            return ToolResult(ok=False, status="invalid", error=problem)
        return source


def jail_policy(
    limits: SandboxLimits,
    report: ProbeReport,
    scratch: str,
    uid: int | None,
    no_fork: bool,
) -> Policy:
    """The child policy for ``limits`` with every layer the probe found available."""
    seccomp = report.layer_ok("seccomp")
    return Policy(
        scratch=scratch,
        uid=uid,
        memory_mb=limits.memory_mb,
        max_processes=limits.max_processes,
        max_file_bytes=limits.max_file_bytes,
        max_output_bytes=limits.max_output_bytes,
        no_fork=no_fork,
        landlock=report.landlock_abi >= 1,
        seccomp_bpf=compile_filter("base").hex() if seccomp else None,
        no_fork_bpf=compile_filter("no_fork").hex() if seccomp and no_fork else None,
    )


def check_request(source: str | None, fn: str, args: Any, limits: SandboxLimits) -> str | None:
    """Why a call cannot be sent to a sandbox (None when it can)."""
    if source is None:
        return "unknown env id: load the tool source first"
    if len(source.encode("utf-8")) > limits.max_source_bytes:
        return f"tool source exceeds {limits.max_source_bytes} bytes"
    return check_args(fn, args)


def check_args(fn: str, args: Any) -> str | None:
    """Why a request cannot be sent (None when it can): the name must be an identifier, args JSON."""
    if not fn.isidentifier():
        return f"function name {fn!r} is not an identifier"
    if not isinstance(args, dict):
        return "args must be a JSON object"
    try:
        json.dumps(args, allow_nan=False)
    except (TypeError, ValueError) as exc:
        return f"args are not JSON: {exc}"
    return None


def json_args(args: dict[str, Any]) -> dict[str, Any]:
    """``args`` exactly as a JSON round trip gives them (tuples become lists, subclasses their bases):
    what every executor's tool sees, whatever the wire format."""
    result: dict[str, Any] = json.loads(json.dumps(args, allow_nan=False))
    return result


def call_seed(env_id: str, fn: str, args: dict[str, Any]) -> int:
    """``random``'s seed for a call: the same call gets the same randomness on any worker, any day."""
    key = json.dumps([env_id, fn, args], sort_keys=True, separators=(",", ":"))
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big")


def from_answer(raw: bytes, cpu_ms: float) -> ToolResult | None:
    """The ToolResult in a sandboxed answer document, None when it is not a well-formed one."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("status") not in _STATUSES:
        return None
    status = doc["status"]
    error = doc.get("error")
    return ToolResult(
        ok=status == "ok",
        status=status,
        result=doc.get("result") if status == "ok" else None,
        error=None if status == "ok" else str(error),
        cpu_ms=cpu_ms,
    )


def from_exit(wait_status: int, timed_out: bool, timeout_s: float, cpu_ms: float) -> ToolResult:
    """The ToolResult of a child that gave no valid answer, from how it ended."""
    if timed_out:
        return ToolResult(
            ok=False, status="timeout", error=f"wall-clock limit of {timeout_s:g} s", cpu_ms=cpu_ms
        )
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        if sig == signal.SIGXCPU or (sig == signal.SIGKILL and cpu_ms >= timeout_s * 1000):
            return ToolResult(ok=False, status="timeout", error="CPU time limit", cpu_ms=cpu_ms)
        return ToolResult(
            ok=False,
            status="crashed",
            error=f"child died (signal {sig}, {signal.Signals(sig).name})",
            cpu_ms=cpu_ms,
        )
    code = os.waitstatus_to_exitcode(wait_status)
    return ToolResult(
        ok=False, status="crashed", error=f"child exited with code {code} and no answer", cpu_ms=cpu_ms
    )


def cpu_ms_of(rusage: Any) -> float:
    return float((rusage.ru_utime + rusage.ru_stime) * 1000.0)
