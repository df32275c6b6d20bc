"""The attack matrix of reference/sandbox.md, against every tier this machine offers and the baseline.

T2 and T3 are forced here (root runs them as ``nobody``, T3 without namespaces). Every attack must be
blocked or contained, the executor must stay usable after it, and after the module no process that an
attack started may remain on the host.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from astra_synth.sandbox.executor import SandboxLimits, ToolExecutor
from astra_synth.sandbox.forkserver import ForkServerExecutor
from astra_synth.sandbox.probe import probe
from astra_synth.sandbox.subprocess import SubprocessExecutor

SOURCE = (Path(__file__).parent / "attack_tools.py").read_text()
MARKER = "20.4242"
REPO = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(timeout_s=1.0, memory_mb=512, max_processes=16, max_file_bytes=16 << 20)
KINDS = [*probe().available, "subprocess"]


def _marker_processes() -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if MARKER.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


@pytest.fixture(scope="module", params=KINDS)
def sandbox(request: pytest.FixtureRequest) -> Iterator[tuple[ToolExecutor, str]]:
    kind = request.param
    executor: ToolExecutor
    if kind == "subprocess":
        executor = SubprocessExecutor(LIMITS)
    else:
        executor = ForkServerExecutor(LIMITS, workers=2, tier=kind)
    assert executor.refusal is None
    yield executor, executor.load(SOURCE)
    launchers = executor.launcher_pids() if isinstance(executor, ForkServerExecutor) else []
    executor.close()
    deadline = time.monotonic() + 5
    while _marker_processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _marker_processes() == [], "processes started by an attack outlived the executor"
    assert launchers == [] or not [pid for pid in launchers if Path(f"/proc/{pid}").exists()], "workers left"


def _still_usable(executor: ToolExecutor, env: str) -> None:
    result = executor.execute(env, "add", {"a": 20, "b": 22})
    assert (result.status, result.result) == ("ok", 42)


def test_infinite_loops_are_stopped_on_time(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    for fn in ("spin", "c_loop"):
        start = time.monotonic()
        result = executor.execute(env, fn, {}, timeout_s=0.5)
        assert result.status == "timeout", result
        assert time.monotonic() - start < 3.0
    _still_usable(executor, env)


def test_closing_the_answer_pipe_does_not_stop_the_clock(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    start = time.monotonic()
    result = executor.execute(env, "close_pipes_and_hang", {}, timeout_s=0.5)
    assert result.status == "timeout", result
    assert time.monotonic() - start < 3.0
    _still_usable(executor, env)


def test_ten_gib_allocation_fails(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    result = executor.execute(env, "allocate", {"gib": 10})
    assert not result.ok and "MemoryError" in (result.error or ""), result
    _still_usable(executor, env)


@pytest.mark.parametrize("escape", [False, True], ids=["killpg", "setsid"])
def test_fork_bomb_is_bounded_and_leaves_nothing(sandbox: tuple[ToolExecutor, str], escape: bool) -> None:
    executor, env = sandbox
    result = executor.execute(env, "fork_bomb", {"limit": 500, "escape": escape}, timeout_s=2.0)
    if isinstance(executor, ForkServerExecutor) and executor.tier == "T1":
        # T1 lets a bounded number start (own uid, RLIMIT_NPROC); the PID-1 sweep must end them all
        assert result.ok and 0 < result.result < LIMITS.max_processes, result
    elif result.ok:  # the other tiers deny fork outright
        assert result.result == 0
    else:
        assert result.status == "timeout", result
    assert _marker_processes() == [], "sleepers outlived the call"
    _still_usable(executor, env)


def test_writes_outside_scratch_are_denied(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    name = f"astra-pwned-{os.getpid()}"
    targets = [f"/etc/{name}", f"/root/{name}", f"/usr/{name}", f"/tmp/{name}", str(REPO / name)]
    result = executor.execute(env, "write_files", {"paths": targets})
    assert (result.status, result.result) == ("ok", [])
    assert not [t for t in targets if os.path.exists(t)]


def test_secrets_and_the_parents_environment_are_unreadable(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    canary = "ASTRA_CANARY_" + os.urandom(4).hex()
    holder = subprocess.Popen(["sleep", "30"], env={"SECRET": canary})
    try:
        paths = ["/etc/shadow", "/proc/1/environ", f"/proc/{os.getpid()}/environ"]
        paths.append(f"/proc/{holder.pid}/environ")
        leaked = executor.execute(env, "read_files", {"paths": paths})
        environment = executor.execute(env, "environment", {})
    finally:
        holder.kill()
        holder.wait()
    assert (leaked.status, leaked.result) == ("ok", {})
    assert environment.ok and set(environment.result) <= {"PYTHONHASHSEED", "PATH", "LANG"}


def test_tcp_and_udp_to_the_host_loopback_are_blocked(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    with socket.socket() as tcp, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
        tcp.bind(("127.0.0.1", 0))
        tcp.listen()
        port = tcp.getsockname()[1]
        udp.bind(("127.0.0.1", port))
        result = executor.execute(env, "network", {"port": port})
        tcp.setblocking(False)
        udp.setblocking(False)
        with pytest.raises(BlockingIOError):
            tcp.accept()
        with pytest.raises(BlockingIOError):
            udp.recv(64)
    assert (result.status, result.result) == ("ok", [])


def test_host_unix_sockets_are_unreachable(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    folder = tempfile.mkdtemp(prefix="astra-unix-")  # world-reachable, like /run or /tmp/.X11-unix
    os.chmod(folder, 0o777)
    path = os.path.join(folder, "host.sock")
    with socket.socket(socket.AF_UNIX) as server:
        server.bind(path)
        os.chmod(path, 0o777)
        server.listen()
        result = executor.execute(env, "unix_socket", {"path": path})
        server.setblocking(False)
        with pytest.raises(BlockingIOError):
            server.accept()
    shutil.rmtree(folder)
    assert (result.status, result.result) == ("ok", None)
    assert executor.execute(env, "event_loop", {}).result == "asyncio works"  # socketpair still allowed


def test_killing_the_parents_fails(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    result = executor.execute(env, "kill_parents", {"host_pids": [os.getpid()]})
    assert (result.status, result.result) == ("ok", [])
    _still_usable(executor, env)


def test_big_files_and_segfaults_are_contained(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    big = executor.execute(env, "big_file", {"mib": 64})
    assert not big.ok, big
    crash = executor.execute(env, "segfault", {})
    assert (crash.status, "SIGSEGV" in (crash.error or "")) == ("crashed", True)
    _still_usable(executor, env)


def test_no_state_leaks_between_calls(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    assert executor.execute(env, "pollute", {}).result is True
    for _ in range(3):  # whichever worker serves the next calls
        state = executor.execute(env, "inspect_state", {})
        assert state.result == {
            "global": False,
            "builtins": False,
            "decimal": "0.1428571428571428571428571429",
            "file": False,
            "env": False,
            "scratch": [],
        }


def test_results_are_deterministic(sandbox: tuple[ToolExecutor, str]) -> None:
    executor, env = sandbox
    results = [executor.execute(env, "nondeterminism", {}) for _ in range(4)]
    assert results[0].ok, results[0]
    assert all(r.result == results[0].result for r in results)
