"""The subprocess baseline: a real interpreter per call, confined like the rootless tier."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from astra_synth.sandbox.executor import SandboxLimits
from astra_synth.sandbox.subprocess import SubprocessExecutor

SOURCE = """
import os
def add(a, b):
    return a + b
def spin():
    while True:
        pass
def fork():
    return os.fork()
def secret():
    return open("/etc/shadow").read()
"""


@pytest.fixture(scope="module")
def executor() -> Iterator[SubprocessExecutor]:
    ex = SubprocessExecutor(SandboxLimits(timeout_s=1.0))
    yield ex
    ex.close()


def test_add_returns_the_sum(executor: SubprocessExecutor) -> None:
    env = executor.load(SOURCE)
    result = executor.execute(env, "add", {"a": 2, "b": 40})
    assert (result.ok, result.result, result.cpu_ms > 0) == (True, 42, True)


def test_loop_times_out_and_fork_and_shadow_are_denied(executor: SubprocessExecutor) -> None:
    env = executor.load(SOURCE)
    assert executor.execute(env, "spin", {}, timeout_s=0.5).status == "timeout"
    fork = executor.execute(env, "fork", {})
    assert fork.status == "error" and "BlockingIOError" in (fork.error or "")
    shadow = executor.execute(env, "secret", {})
    assert shadow.status == "error" and "PermissionError" in (shadow.error or "")


def test_unknown_env_and_bad_args_are_invalid(executor: SubprocessExecutor) -> None:
    env = executor.load(SOURCE)
    assert executor.execute("nope", "add", {}).status == "invalid"
    assert executor.execute(env, "add", {"a": object()}).status == "invalid"
