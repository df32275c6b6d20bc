"""What every local backend does before a call reaches a sandbox: keep sources by content, check requests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from astra_synth.sandbox import ExecutorKind, get_executor
from astra_synth.sandbox.executor import SandboxLimits, ToolExecutor, env_id_for

SOURCE = "def add(a, b):\n    return a + b\n"


@pytest.fixture(scope="module", params=["forkserver", "subprocess"])
def executor(request: pytest.FixtureRequest) -> Iterator[ToolExecutor]:
    kind: ExecutorKind = request.param
    options = {"workers": 1} if kind == "forkserver" else {}
    with get_executor(kind, SandboxLimits(max_source_bytes=1024), **options) as ex:
        yield ex


def test_load_is_content_addressed_and_idempotent(executor: ToolExecutor) -> None:
    env = executor.load(SOURCE)
    assert env == executor.load(SOURCE) == env_id_for(SOURCE)
    assert executor.execute(env, "add", {"a": 1, "b": 2}).result == 3


def test_requests_a_sandbox_cannot_take_are_invalid_before_running(executor: ToolExecutor) -> None:
    big = executor.load(SOURCE + "#" * 1024 + "\n")
    too_big = executor.execute(big, "add", {"a": 1, "b": 2})
    assert (too_big.status, too_big.error) == ("invalid", "tool source exceeds 1024 bytes")
    unknown = executor.execute(env_id_for("never loaded"), "add", {})
    assert (unknown.status, unknown.error) == ("invalid", "unknown env id: load the tool source first")
    env = executor.load(SOURCE)
    bad_name = executor.execute(env, "add()", {})
    assert (bad_name.status, bad_name.error) == ("invalid", "function name 'add()' is not an identifier")
    assert executor.execute(env, "add", {"a": float("inf"), "b": 1}).status == "invalid"
    assert executor.execute(env, "add", {"a": 2, "b": 3}).result == 5  # nothing above broke the backend
