"""The ``ToolExecutor`` interface every sandbox backend implements.

A tool environment is Python source with one or more top-level functions. It is loaded once (``load``
returns its content-addressed id) and then called many times by function name with JSON-able keyword
arguments. Results are JSON values; every failure is a ``ToolResult`` with ``ok=False`` and never an
exception in the caller.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from types import TracebackType
from typing import Any, Literal

from pydantic import BaseModel, Field

from astra_synth.config import StrictModel

ToolStatus = Literal[
    "ok",  # the function returned a JSON-serialisable value
    "error",  # the function raised; ``error`` holds the exception type and message
    "timeout",  # wall clock or CPU limit reached; the call was killed
    "crashed",  # the child died (signal, memory limit, os._exit)
    "output_too_large",  # the result exceeded ``max_output_bytes``
    "invalid",  # bad request: unknown env id, unknown function, non-JSON args or result
    "refused",  # the executor cannot isolate untrusted code on this machine
]


class SandboxLimits(StrictModel):
    """Per-call resource limits."""

    timeout_s: float = Field(default=2.0, gt=0, description="Wall-clock limit per call.")
    memory_mb: int = Field(default=1024, ge=64, description="Address-space limit (RLIMIT_AS).")
    max_output_bytes: int = Field(default=1 << 20, ge=1024, description="Largest serialised result.")
    max_processes: int = Field(default=16, ge=1, description="RLIMIT_NPROC for the sandbox uid.")
    max_file_bytes: int = Field(default=16 << 20, ge=0, description="RLIMIT_FSIZE for scratch files.")
    max_source_bytes: int = Field(default=256 << 10, ge=1024, description="Largest tool source accepted.")


class ToolResult(BaseModel):
    ok: bool
    status: ToolStatus
    result: Any = None
    error: str | None = None
    cpu_ms: float = Field(
        default=0.0,
        description="CPU time of the call: of its process until it answered when that was the call's only "
        "process (the fork server replies before the exit), else of every process it left, reaped.",
    )


class ToolCall(BaseModel):
    """One call in a batch."""

    env_id: str
    fn: str
    args: dict[str, Any] = Field(default_factory=dict)
    timeout_s: float | None = None


def env_id_for(source: str) -> str:
    """Content address of a tool environment: the same source always gets the same id."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()[:20]


class ToolExecutor(ABC):
    """Load tool source once, call its functions many times. Thread-safe; use as a context manager."""

    #: Why every call is refused (no isolation on this machine, executor closed); None when usable.
    refusal: str | None = None

    @abstractmethod
    def load(self, source: str) -> str:
        """Register ``source`` and return its env id (``env_id_for(source)``). Idempotent."""

    @abstractmethod
    def execute(
        self, env_id: str, fn: str, args: dict[str, Any], timeout_s: float | None = None
    ) -> ToolResult:
        """Run ``fn(**args)`` from environment ``env_id`` in isolation."""

    def execute_batch(self, calls: list[ToolCall]) -> list[ToolResult]:
        """Run many calls; results come back in request order. Backends may run them in parallel."""
        return [self.execute(c.env_id, c.fn, c.args, c.timeout_s) for c in calls]

    def close(self) -> None:  # noqa: B027 - optional hook, most backends override
        """Release workers and scratch space."""

    def __enter__(self) -> ToolExecutor:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
