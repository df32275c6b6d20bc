"""``astra sandbox``: probe, one-call run and the HTTP service, through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from astra_synth.cli import app
from astra_synth.sandbox.http import HttpExecutor
from astra_synth.sandbox.probe import probe

TOOL = "def add(a, b):\n    return a + b\n\ndef spin():\n    while True:\n        pass\n"
runner = CliRunner()


@pytest.fixture
def tool_file(tmp_path: Path) -> Path:
    path = tmp_path / "tool.py"
    path.write_text(TOOL)
    return path


def test_probe_prints_the_tier_as_json() -> None:
    result = runner.invoke(app, ["sandbox", "probe", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["tier"] == probe().tier


@pytest.mark.parametrize("executor", ["forkserver", "subprocess"])
def test_run_prints_the_tool_result(tool_file: Path, executor: str) -> None:
    args = ["sandbox", "run", "--code", str(tool_file), "--fn", "add", "--executor", executor]
    ok = runner.invoke(app, [*args, "--args", '{"a": 2, "b": 3}'])
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.output)["result"] == 5
    failed = runner.invoke(app, [*args, "--args", '{"a": 2}'])
    assert failed.exit_code == 1 and json.loads(failed.output)["status"] == "error"


def test_run_enforces_the_timeout_and_rejects_bad_arguments(tool_file: Path) -> None:
    base = ["sandbox", "run", "--code", str(tool_file)]
    spin = runner.invoke(app, [*base, "--fn", "spin", "--timeout", "0.3"])
    assert spin.exit_code == 1 and json.loads(spin.output)["status"] == "timeout"
    bad = runner.invoke(app, [*base, "--fn", "add", "--args", "[1]"])
    assert bad.exit_code == 2


def test_serve_answers_over_http_and_stops_cleanly() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # The command group alone (mounting is covered above): the full CLI imports every pipeline.
    script = "from astra_synth.cli.sandbox import app; app()"
    cmd = [sys.executable, "-c", script, "serve", "--port", str(port), "--workers", "1"]
    env = {k: v for k, v in os.environ.items() if k != "ASTRA_SANDBOX_TOKEN"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/v1/health").json()["ok"]:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        remote = HttpExecutor(url)
        assert remote.execute(remote.load(TOOL), "add", {"a": 20, "b": 22}).result == 42
        remote.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
