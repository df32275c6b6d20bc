"""Isolated, fast execution of LLM-written tool code.

Workers import the ``jail`` subpackage through this package under the bare system interpreter, so this
module imports nothing third-party at module level (``get_executor`` imports its backends lazily).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from astra_synth.sandbox.executor import SandboxLimits, ToolExecutor

ExecutorKind = Literal["forkserver", "subprocess"]


def get_executor(
    kind: str = "forkserver", limits: SandboxLimits | None = None, **options: object
) -> ToolExecutor:
    """Build a local executor: ``forkserver`` (default, warm pool) or ``subprocess`` (baseline).

    ``options`` go to the backend's constructor (e.g. ``workers=``, ``tier=`` for the fork server).
    """
    if kind == "forkserver":
        from astra_synth.sandbox.forkserver import ForkServerExecutor

        return ForkServerExecutor(limits, **options)  # type: ignore[arg-type]
    if kind == "subprocess":
        from astra_synth.sandbox.subprocess import SubprocessExecutor

        return SubprocessExecutor(limits, **options)  # type: ignore[arg-type]
    raise ValueError(f"unknown executor kind {kind!r}: expected 'forkserver' or 'subprocess'")
