"""``ForkServerExecutor``: the default executor — a warm pool of confined fork-server workers.

One worker per core, each started inside the strongest tier the probe found (see ``probe``) and
serving one call at a time; a call forks a fresh child of the warm worker (about 1.5–3 ms instead of
25 ms for a new interpreter). A worker that dies, hangs or answers nonsense is killed and replaced; the
caller only ever sees a ``ToolResult``. A pool that cannot contain network and process creation
refuses every call instead of running it.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import os
import queue
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import weakref
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

from astra_synth.sandbox import interpreter
from astra_synth.sandbox.calls import (
    SourceKeepingExecutor,
    call_seed,
    from_answer,
    from_exit,
    jail_policy,
    json_args,
)
from astra_synth.sandbox.executor import SandboxLimits, ToolCall, ToolResult, ToolStatus
from astra_synth.sandbox.jail import protocol
from astra_synth.sandbox.jail.confine import Policy
from astra_synth.sandbox.probe import Tier, probe, tier_prefix

START_TIMEOUT_S = 30.0  # a cold start under heavy load; normally 50–100 ms
MAX_ENVS = 256  # compiled tool environments a worker keeps
WORKER_GRACE_S = 5.0  # beyond the call's own timeout, for the worker's kill, sweep and wipe


@dataclass
class _Worker:
    """One worker process and the environments it already holds compiled."""

    index: int
    proc: subprocess.Popen[bytes]
    log: IO[bytes]
    loaded: OrderedDict[str, None] = field(default_factory=OrderedDict)  # least recently used first

    def load(self, env_id: str, source: str, deadline: float) -> Any:
        """Have the worker compile an environment; it forgets the least recently used beyond MAX_ENVS."""
        evict = list(itertools.islice(self.loaded, max(len(self.loaded) + 1 - MAX_ENVS, 0)))
        message = {"env_id": env_id, "source": source, "evict": evict}
        assert self.proc.stdin is not None and self.proc.stdout is not None
        protocol.write_bytes(self.proc.stdin.fileno(), protocol.encode(message))
        reply = protocol.read_frame(self.proc.stdout.fileno(), deadline)
        for gone in evict:
            del self.loaded[gone]
        return reply

    def call(self, frame: bytes, deadline: float) -> tuple[str, int, float, bytes]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        protocol.write_bytes(self.proc.stdin.fileno(), frame)
        return protocol.read_reply(self.proc.stdout.fileno(), deadline)

    def stop(self, kill: bool = False) -> None:
        """Closing stdin ends the worker (and with it its namespace); killing its group is the fallback."""
        if not kill and self.proc.stdin is not None:
            self.proc.stdin.close()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                kill = True
        if kill or self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()
        self.log.close()


class ForkServerExecutor(SourceKeepingExecutor):
    """Warm, isolated workers; ``tier`` forces a weaker tier than the strongest (tests do).

    With ``pin_cpus`` (the default) worker *i* and its calls run on the *i*-th CPU this process may use:
    a call's fork, child and reply then stay on one core and in its caches, which cut the CPU time per
    call by about a fifth and raised throughput by a third on 2 cores (``benchmarks/sandbox_throughput``).
    Turn it off when other busy processes share those cores.
    """

    def __init__(
        self,
        limits: SandboxLimits | None = None,
        workers: int | None = None,
        tier: Tier | None = None,
        python: str | None = None,
        scratch_mb: int = 64,
        pin_cpus: bool = True,
    ) -> None:
        super().__init__(limits)
        self.report = probe(python)
        self.tier: Tier | None = tier or self.report.tier
        self.refusal = self.report.refusal(tier)
        self._size = workers or os.cpu_count() or 1
        if self._size > interpreter.MAX_WORKERS:
            raise ValueError(f"at most {interpreter.MAX_WORKERS} workers (one sandbox uid each)")
        self._scratch_mb = scratch_mb
        self._cpus = sorted(os.sched_getaffinity(0)) if pin_cpus else []
        self._idle: queue.Queue[int] = queue.Queue()
        self._workers: dict[int, _Worker | None] = {}
        self._lock = threading.Lock()
        self._batch_pool: ThreadPoolExecutor | None = None
        self._closed = False
        self._uid_base = interpreter.sandbox_uid_base()
        self._base = tempfile.mkdtemp(prefix="astra-forkserver-")
        os.chmod(self._base, 0o711)
        # Scratch space goes even if close() is never called (workers end with their stdin pipe).
        self._remove_base = weakref.finalize(self, shutil.rmtree, self._base, True)
        self._jail_path = interpreter.stage_jail(self._base)
        if self.refusal is None:
            self._start_pool()

    # -- pool -----------------------------------------------------------------------------------

    def _start_pool(self) -> None:
        for index in range(self._size):
            self._workers[index] = None
            self._idle.put(index)
        try:
            started = [self._spawn(index) for index in range(self._size)]  # Popen all, then await
            for worker in started:
                self._await_ready(worker)
        except (OSError, protocol.FrameError, RuntimeError) as exc:
            self.refusal = f"sandbox workers did not start contained: {exc}"
            self.close()

    def _policy(self, index: int) -> Policy:
        scratch = os.path.join(self._base, f"w{index}")
        os.makedirs(scratch, exist_ok=True)
        uid = self._uid_base + index if self.tier == "T1" else None
        if os.geteuid() == 0 and uid is None:
            os.chown(scratch, interpreter.NOBODY, interpreter.NOBODY)  # rootless tiers run as nobody
        no_fork = self.tier != "T1"
        return jail_policy(self.limits, self.report, scratch, uid, no_fork)

    def _spawn(self, index: int) -> _Worker:
        assert self.tier is not None
        if self._closed:
            raise RuntimeError("executor closed")
        config = {
            "policy": self._policy(index).to_json(),
            "scratch_mb": self._scratch_mb,
            "cpu": self._cpus[index % len(self._cpus)] if self._cpus else None,
        }
        log = open(os.path.join(self._base, f"w{index}.log"), "wb")  # noqa: SIM115 - closed by _Worker.stop
        proc = subprocess.Popen(
            tier_prefix(self.tier) + interpreter.jail_command(self.report.python, "worker"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            env=interpreter.jail_env(self._jail_path),
            cwd=self._base,
            start_new_session=True,
        )
        worker = _Worker(index, proc, log)
        with self._lock:
            closed = self._closed
            if not closed:
                self._workers[index] = worker
        if closed:  # close() ran meanwhile: this worker would outlive it
            worker.stop(kill=True)
            raise RuntimeError("executor closed")
        assert proc.stdin is not None
        with contextlib.suppress(OSError):  # a worker that died at once is reported by _await_ready
            protocol.write_bytes(proc.stdin.fileno(), protocol.encode(config))
        return worker

    def _await_ready(self, worker: _Worker) -> None:
        """Read the worker's hello and check that its tier really contains network and fork."""
        assert worker.proc.stdout is not None
        try:
            hello = protocol.read_frame(worker.proc.stdout.fileno(), time.monotonic() + START_TIMEOUT_S)
        except protocol.FrameError as exc:
            worker.stop(kill=True)
            raise RuntimeError(f"worker {worker.index} did not start ({exc}); see {worker.log.name}") from exc
        problem = _containment_problem(hello, self.tier)
        if problem:
            worker.stop(kill=True)
            raise RuntimeError(f"worker {worker.index}: {problem}")

    def _checkout(self) -> tuple[int, _Worker | None, str | None]:
        """An idle worker, started now if its predecessor died; (index, None, why) if none can start."""
        index = self._idle.get()
        worker = self._workers.get(index)
        if worker is not None and worker.proc.poll() is None:
            return index, worker, None
        try:
            worker = self._spawn(index)
            self._await_ready(worker)
        except (OSError, RuntimeError) as exc:
            with self._lock:
                self._workers[index] = None
            return index, None, str(exc)
        return index, worker, None

    def launcher_pids(self) -> list[int]:
        """Host pids of the processes that started the live workers (``unshare`` in T1/T2)."""
        with self._lock:
            return [w.proc.pid for w in self._workers.values() if w is not None and w.proc.poll() is None]

    # -- calls ----------------------------------------------------------------------------------

    def execute(
        self, env_id: str, fn: str, args: dict[str, Any], timeout_s: float | None = None
    ) -> ToolResult:
        source = self._admit(env_id, fn, args)
        if isinstance(source, ToolResult):
            return source
        timeout = timeout_s or self.limits.timeout_s
        index, worker, why = self._checkout()
        healthy = True
        try:
            if worker is None:
                status: ToolStatus = "refused" if self._closed else "crashed"
                return ToolResult(ok=False, status=status, error=f"no sandbox worker: {why}")
            result, healthy = self._call(worker, source, env_id, fn, args, timeout)
            return result
        finally:
            if worker is not None and not healthy:
                worker.stop(kill=True)  # replaced on its next checkout
            self._idle.put(index)

    def _call(
        self, worker: _Worker, source: str, env_id: str, fn: str, args: dict[str, Any], timeout: float
    ) -> tuple[ToolResult, bool]:
        deadline = time.monotonic() + timeout + WORKER_GRACE_S
        seed = call_seed(env_id, fn, args)
        frame = protocol.call_frame(math.ceil(timeout) + 1, timeout, env_id, fn, json_args(args), seed)
        try:
            if env_id in worker.loaded:
                worker.loaded.move_to_end(env_id)
            else:
                loaded = worker.load(env_id, source, deadline)
                if not isinstance(loaded, dict):
                    return ToolResult(
                        ok=False, status="crashed", error="sandbox worker sent nonsense; replaced"
                    ), False
                if not loaded.get("loaded"):  # the source does not compile
                    return ToolResult(ok=False, status="invalid", error=str(loaded.get("error"))), True
                worker.loaded[env_id] = None
            how, status, cpu_ms, answer = worker.call(frame, deadline)
        except (OSError, protocol.FrameError) as exc:
            return ToolResult(
                ok=False, status="crashed", error=f"sandbox worker failed ({exc}); replaced"
            ), False
        return _result(how, status, cpu_ms, answer, timeout), True

    def execute_batch(self, calls: list[ToolCall]) -> list[ToolResult]:
        """All workers in parallel; results in request order."""
        if len(calls) <= 1:
            return super().execute_batch(calls)
        with self._lock:
            if self._batch_pool is None:
                self._batch_pool = ThreadPoolExecutor(self._size, thread_name_prefix="sandbox-batch")
            pool = self._batch_pool
        return list(pool.map(lambda c: self.execute(c.env_id, c.fn, c.args, c.timeout_s), calls))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            workers = [w for w in self._workers.values() if w is not None]
            self._workers = {}
            pool, self._batch_pool = self._batch_pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        for worker in workers:
            worker.stop()
        if self.refusal is None:
            self.refusal = "executor closed"
        self._remove_base()


def _containment_problem(hello: Any, tier: Tier | None) -> str | None:
    """Why a started worker must not run untrusted code (None when it may)."""
    if not isinstance(hello, dict) or not hello.get("ready"):
        return f"start failed: {hello.get('error') if isinstance(hello, dict) else hello}"
    network = hello["netns"] or hello["seccomp"]
    fork = hello["pid1"] or (hello["seccomp"] and hello["no_fork"])
    if tier in ("T1", "T2") and not (hello["pid1"] and hello["netns"]):
        return f"tier {tier} without its pid and network namespaces"
    if not (network and fork):
        return "network or process creation is not contained"
    return None


def _result(how: str, status: int, cpu_ms: float, answer: bytes, timeout: float) -> ToolResult:
    if how == "too_large":
        return ToolResult(ok=False, status="output_too_large", error="answer too large", cpu_ms=cpu_ms)
    if how == "fork_failed":
        return ToolResult(ok=False, status="crashed", error=f"could not fork the call: {os.strerror(status)}")
    result = from_answer(answer, cpu_ms) if how in ("eof", "done") and answer else None
    return result or from_exit(status, how == "timeout", timeout, cpu_ms)
