"""Remote execution over real HTTP: our service and client, and the SandboxFusion adapter."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from astra_synth.sandbox.executor import SandboxLimits, ToolCall
from astra_synth.sandbox.forkserver import ForkServerExecutor
from astra_synth.sandbox.http import TOKEN_ENV, HttpExecutor, SandboxFusionExecutor, create_app

SOURCE = """
def add(a, b):
    return a + b
def spin():
    while True:
        pass
def fail(message):
    raise ValueError(message)
"""


class Server:
    """A real uvicorn server in a thread, on a port of its own (optionally a given one)."""

    def __init__(self, app: Starlette, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.port = self.sock.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def local() -> Iterator[ForkServerExecutor]:
    ex = ForkServerExecutor(SandboxLimits(timeout_s=2.0), workers=2)
    yield ex
    ex.close()


def test_batch_over_http_matches_the_local_executor(local: ForkServerExecutor) -> None:
    with Server(create_app(local, token="")) as server:
        remote = HttpExecutor(server.url)
        env = remote.load(SOURCE)
        calls = [ToolCall(env_id=env, fn="add", args={"a": i, "b": i}) for i in range(10)]
        calls.append(ToolCall(env_id=env, fn="spin", args={}, timeout_s=0.3))
        calls.append(ToolCall(env_id=env, fn="fail", args={"message": "no such city"}))
        results = remote.execute_batch(calls)
        local_env = local.load(SOURCE)
        expected = [local.execute(local_env, c.fn, c.args, c.timeout_s) for c in calls]
        assert [(r.status, r.result, r.error) for r in results] == [
            (e.status, e.result, e.error) for e in expected
        ]
        assert results[-2].status == "timeout" and "no such city" in (results[-1].error or "")
        assert remote.execute(env, "add", {"a": 1, "b": 1}).result == 2
        remote.close()


def test_a_restarted_server_is_sent_the_sources_again(local: ForkServerExecutor) -> None:
    with Server(create_app(local, token="")) as first:
        remote = HttpExecutor(first.url)
        env = remote.load(SOURCE)
        assert remote.execute(env, "add", {"a": 1, "b": 1}).result == 2
        port = first.port
    with Server(create_app(local, token=""), port=port):  # a new service knows no environments
        assert remote.execute(env, "add", {"a": 2, "b": 3}).result == 5
    down = remote.execute(env, "add", {"a": 2, "b": 3})
    assert down.status == "crashed" and "sandbox service failed" in (down.error or "")
    remote.close()


def test_the_bearer_token_comes_from_the_environment(
    local: ForkServerExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    with Server(create_app(local, token="s3cret")) as server:
        monkeypatch.delenv(TOKEN_ENV, raising=False)
        anonymous = HttpExecutor(server.url)
        refused = anonymous.execute(anonymous.load(SOURCE), "add", {"a": 1, "b": 2})
        assert refused.status == "crashed" and "401" in (refused.error or "")
        anonymous.close()
        monkeypatch.setenv(TOKEN_ENV, "s3cret")
        remote = HttpExecutor(server.url)
        assert remote.execute(remote.load(SOURCE), "add", {"a": 1, "b": 2}).result == 3
        remote.close()


def _fake_sandboxfusion() -> Starlette:
    """SandboxFusion's documented ``/run_code`` contract, served by running plain python (test edge only)."""

    async def run_code(request: Request) -> JSONResponse:
        body: dict[str, Any] = await request.json()
        try:
            proc = subprocess.run(
                ["python3", "-c", body["code"]],
                input=body["stdin"],
                capture_output=True,
                text=True,
                timeout=body["run_timeout"],
                check=False,
            )
        except subprocess.TimeoutExpired:
            run = {"status": "TimeLimitExceeded", "execution_time": body["run_timeout"], "stdout": ""}
            return JSONResponse({"status": "Failed", "message": "", "run_result": run})
        run = {
            "status": "Finished",
            "execution_time": 0.01,
            "return_code": proc.returncode,
            "stdout": proc.stdout,
            "stderr": proc.stderr,
        }
        return JSONResponse({"status": "Success" if proc.returncode == 0 else "Failed", "run_result": run})

    return Starlette(routes=[Route("/run_code", run_code, methods=["POST"])])


def test_sandboxfusion_adapter() -> None:
    with Server(_fake_sandboxfusion()) as server:
        fusion = SandboxFusionExecutor(server.url, SandboxLimits(timeout_s=5))
        env = fusion.load(SOURCE)
        assert fusion.execute(env, "add", {"a": 40, "b": 2}).result == 42
        failed = fusion.execute(env, "fail", {"message": "boom"})
        assert (failed.status, failed.error) == ("error", "ValueError: boom")
        assert fusion.execute(env, "spin", {}, timeout_s=0.5).status == "timeout"
        assert fusion.execute(env, "add; import os", {}).status == "invalid"
        fusion.close()
