"""The fork-server executor: same results as in-process, batches, crashes and hangs of its workers."""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from astra_synth.sandbox import get_executor
from astra_synth.sandbox.executor import SandboxLimits, ToolCall
from astra_synth.sandbox.forkserver import ForkServerExecutor

REALISTIC = (Path(__file__).parent / "realistic_tools.py").read_text()
CALLS: list[tuple[str, dict[str, Any]]] = [
    (
        "invoice_total",
        {"customer": "ACME", "items": [{"sku": "a", "quantity": 3, "unit_price": "19.99"}], "vat_percent": 7},
    ),
    ("search_flights", {"day": "2025-03-01", "max_minutes": 520}),
    ("great_circle_km", {"lat1": 52.52, "lon1": 13.405, "lat2": 48.8566, "lon2": 2.3522}),
    ("summarize", {"values": [1.5, 2.5, 10.0, 4.25]}),
    ("parse_config", {"text": '{"B": [1, 2], "a": {"x": null}}'}),
    ("days_until", {"start": "2024-02-27", "end": "2024-03-02"}),
]
MISBEHAVING = """
import os
def die():
    os._exit(3)
def not_json():
    return {1, 2}
def huge():
    return "x" * 5_000_000
def add(a, b):
    return a + b
def kinds(**values):
    return {name: type(value).__name__ for name, value in values.items()}
"""


@pytest.fixture(scope="module")
def executor() -> Iterator[ForkServerExecutor]:
    ex = ForkServerExecutor(SandboxLimits(timeout_s=2.0, max_output_bytes=1 << 20), workers=2)
    assert ex.refusal is None, ex.refusal
    yield ex
    ex.close()


def _in_process(source: str, fn: str, args: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Any:
    module = types.ModuleType("in_process_tool")  # dataclasses look their module up in sys.modules
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(source, "<in-process>", "exec"), module.__dict__)
    return json.loads(json.dumps(module.__dict__[fn](**args)))


def test_realistic_tools_match_in_process(
    executor: ForkServerExecutor, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = executor.load(REALISTIC)
    for fn, args in CALLS:
        result = executor.execute(env, fn, args)
        assert result.ok, (fn, result)
        assert result.result == _in_process(REALISTIC, fn, args, monkeypatch), fn


def test_batch_keeps_request_order(executor: ForkServerExecutor) -> None:
    env = executor.load(MISBEHAVING)
    calls = [ToolCall(env_id=env, fn="add", args={"a": i, "b": 1}) for i in range(20)]
    assert [r.result for r in executor.execute_batch(calls)] == [i + 1 for i in range(20)]


def test_concurrent_callers_get_their_own_results(executor: ForkServerExecutor) -> None:
    env = executor.load(MISBEHAVING)
    wrong: list[Any] = []

    def client(offset: int) -> None:
        for i in range(15):
            result = executor.execute(env, "add", {"a": offset, "b": i})
            if result.result != offset + i:
                wrong.append(result)

    threads = [threading.Thread(target=client, args=(k * 1000,)) for k in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []


def test_bad_requests_and_bad_results_are_typed_failures(executor: ForkServerExecutor) -> None:
    env = executor.load(MISBEHAVING)
    assert executor.execute(env, "die", {}).status == "crashed"
    assert executor.execute(env, "not_json", {}).status == "invalid"
    assert executor.execute(env, "huge", {}).status == "output_too_large"
    assert executor.execute(env, "missing", {}).status == "invalid"
    assert executor.execute(env, "add", {"a": float("nan"), "b": 1}).status == "invalid"
    assert executor.execute("0" * 20, "add", {}).status == "invalid"
    broken = executor.load("def f(:\n    pass\n")
    result = executor.execute(broken, "f", {})
    assert result.status == "invalid" and "SyntaxError" in (result.error or "")
    assert executor.execute(env, "add", {"a": 1, "b": 1}).result == 2


def test_args_arrive_as_a_json_round_trip_gives_them(executor: ForkServerExecutor) -> None:
    env = executor.load(MISBEHAVING)
    result = executor.execute(env, "kinds", {"pair": (1, 2), "flag": True, "nothing": None, "x": 1.5})
    assert result.result == {"pair": "list", "flag": "bool", "nothing": "NoneType", "x": "float"}


def test_workers_import_the_stdlib_modules_a_tool_names_and_no_others() -> None:
    source = (
        "import sys\n"
        "def preloaded():\n"
        "    return sorted(m for m in ('decimal', 'difflib') if m in sys.modules)\n"
        "def never_called():\n"
        "    import decimal\n"
    )
    with ForkServerExecutor(SandboxLimits(timeout_s=2.0), workers=1) as ex:  # a fresh worker
        assert ex.execute(ex.load(source), "preloaded", {}).result == ["decimal"]


def test_workers_forget_the_least_recently_used_environments(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("astra_synth.sandbox.forkserver.MAX_ENVS", 2)
    with ForkServerExecutor(SandboxLimits(timeout_s=2.0), workers=1) as ex:
        assert isinstance(ex, ForkServerExecutor)
        envs = [ex.load(f"def which():\n    return {i}\n") for i in range(3)]
        for _ in range(2):  # each round evicts the one needed next: every call reloads
            assert [ex.execute(env, "which", {}).result for env in envs] == [0, 1, 2]
        (worker,) = ex._workers.values()
        assert worker is not None and list(worker.loaded) == envs[1:]


def test_each_worker_runs_on_a_core_of_its_own() -> None:
    cpus = sorted(os.sched_getaffinity(0))
    with ForkServerExecutor(SandboxLimits(timeout_s=2.0), workers=len(cpus)) as ex:
        assert isinstance(ex, ForkServerExecutor)
        assert sorted(next(iter(os.sched_getaffinity(pid))) for pid in _worker_pids(ex)) == cpus
        assert all(len(os.sched_getaffinity(pid)) == 1 for pid in _worker_pids(ex))
    with ForkServerExecutor(SandboxLimits(timeout_s=2.0), workers=1, pin_cpus=False) as ex:
        assert isinstance(ex, ForkServerExecutor)
        assert [os.sched_getaffinity(pid) for pid in _worker_pids(ex)] == [set(cpus)]


def test_workers_run_under_the_seccomp_filter_their_children_inherit(executor: ForkServerExecutor) -> None:
    pids = _worker_pids(executor)
    assert len(pids) == 2
    for pid in pids:
        status = dict(line.split(":\t", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
        assert (status["Seccomp"].strip(), status["NoNewPrivs"].strip()) == ("2", "1"), pid  # 2: a filter


def _worker_pids(executor: ForkServerExecutor) -> list[int]:
    """The worker interpreters: children of the ``unshare`` launchers in T1."""
    pids = []
    for launcher in executor.launcher_pids():
        children = Path(f"/proc/{launcher}/task/{launcher}/children").read_text().split()
        pids.extend(int(c) for c in children)
    return pids


def test_dead_and_hung_workers_are_replaced() -> None:
    with ForkServerExecutor(SandboxLimits(timeout_s=0.5), workers=1) as ex:
        assert isinstance(ex, ForkServerExecutor)
        env = ex.load(MISBEHAVING)
        assert ex.execute(env, "add", {"a": 1, "b": 2}).ok
        (worker,) = _worker_pids(ex)
        os.kill(worker, signal.SIGKILL)
        died = ex.execute(env, "add", {"a": 1, "b": 2})
        assert died.status == "crashed" and "replaced" in (died.error or "")
        assert ex.execute(env, "add", {"a": 1, "b": 2}).result == 3
        (worker,) = _worker_pids(ex)
        os.kill(worker, signal.SIGSTOP)  # hangs: the executor's outer deadline must catch it
        hung = ex.execute(env, "add", {"a": 1, "b": 2}, timeout_s=0.2)
        assert hung.status == "crashed"
        assert ex.execute(env, "add", {"a": 2, "b": 2}).result == 4
    assert ex.execute(env, "add", {"a": 2, "b": 2}).status == "refused"  # closed: nothing restarts


def test_refuses_when_no_tier_can_start() -> None:
    ex = ForkServerExecutor(python="/nonexistent/python3")
    result = ex.execute(ex.load("def f():\n    return 1\n"), "f", {})
    assert (result.status, result.ok) == ("refused", False)
    ex.close()


def test_get_executor_builds_both_kinds() -> None:
    with get_executor("subprocess", SandboxLimits(timeout_s=5)) as ex:
        assert ex.execute(ex.load(MISBEHAVING), "add", {"a": 1, "b": 1}).result == 2
    with pytest.raises(ValueError, match="unknown executor kind"):
        get_executor("docker")
