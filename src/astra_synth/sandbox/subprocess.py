"""``SubprocessExecutor``: a fresh interpreter per call — the portable, slow baseline.

Each call starts ``python -m astra_synth.sandbox.jail.oneshot``, which applies the same confinement as a
fork-server child in the rootless tier (own uid when the caller is root, rlimits, Landlock, seccomp with
fork denied) and runs the tool. No warm state: every call pays a new interpreter, tens of milliseconds
of CPU (``benchmarks/sandbox_throughput.py``); the fork server exists because of that number.
"""

from __future__ import annotations

import math
import os
import queue
import select
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from typing import Any

from astra_synth.sandbox import interpreter
from astra_synth.sandbox.calls import (
    SourceKeepingExecutor,
    call_seed,
    cpu_ms_of,
    from_answer,
    from_exit,
    jail_policy,
    json_args,
)
from astra_synth.sandbox.executor import SandboxLimits, ToolResult
from astra_synth.sandbox.jail import protocol
from astra_synth.sandbox.probe import probe

STARTUP_GRACE_S = 0.5  # the interpreter's own start counts against no tool's timeout
_UID_OFFSET = interpreter.MAX_WORKERS  # fork-server workers of the same process use the uids below


class SubprocessExecutor(SourceKeepingExecutor):
    """One confined interpreter per call. Thread-safe; ``max_concurrency`` bounds calls in flight."""

    def __init__(
        self, limits: SandboxLimits | None = None, python: str | None = None, max_concurrency: int = 8
    ) -> None:
        super().__init__(limits)
        self.report = probe(python)
        self.python = self.report.python
        if not self.report.layer_ok("seccomp"):
            self.refusal = "seccomp is unavailable: network and fork cannot be contained"
        self._slots: queue.Queue[int | None] = queue.Queue()
        base_uid = interpreter.sandbox_uid_base() + _UID_OFFSET
        for i in range(min(max_concurrency, interpreter.MAX_WORKERS)):
            self._slots.put(base_uid + i if os.geteuid() == 0 else None)
        self._base = tempfile.mkdtemp(prefix="astra-subprocess-")
        os.chmod(self._base, 0o711)
        self._remove_base = weakref.finalize(self, shutil.rmtree, self._base, True)

    def execute(
        self, env_id: str, fn: str, args: dict[str, Any], timeout_s: float | None = None
    ) -> ToolResult:
        source = self._admit(env_id, fn, args)
        if isinstance(source, ToolResult):
            return source
        uid = self._slots.get()
        scratch = tempfile.mkdtemp(dir=self._base)
        try:
            if uid is not None:
                os.chown(scratch, uid, uid)
            return self._run(source, env_id, fn, args, timeout_s or self.limits.timeout_s, uid, scratch)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            self._slots.put(uid)

    def _run(
        self,
        source: str,
        env_id: str,
        fn: str,
        args: dict[str, Any],
        timeout: float,
        uid: int | None,
        scratch: str,
    ) -> ToolResult:
        lim = self.limits
        policy = jail_policy(lim, self.report, scratch, uid, no_fork=True)
        request = {
            "source": source,
            "fn": fn,
            "args": json_args(args),  # what a JSON round trip gives, like every executor
            "seed": call_seed(env_id, fn, args),
            "cpu_seconds": math.ceil(timeout) + 1,
            "policy": policy.to_json(),
        }
        proc = subprocess.Popen(
            interpreter.jail_command(self.python, "oneshot"),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=interpreter.jail_env(),
            cwd=scratch,
            start_new_session=True,
        )
        assert proc.stdin is not None and proc.stdout is not None
        deadline = time.monotonic() + timeout + STARTUP_GRACE_S
        try:
            proc.stdin.write(protocol.encode(request))
            proc.stdin.close()
        except BrokenPipeError:
            pass
        data, how = protocol.read_answer(proc.stdout.fileno(), deadline, lim.max_output_bytes + 4096)
        proc.stdout.close()
        if how == "eof" and not _exits_by(proc.pid, deadline):  # closed its stdout, then hung
            how = "timeout"
        if how != "eof":
            os.killpg(proc.pid, signal.SIGKILL)
        _, status, rusage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        cpu_ms = cpu_ms_of(rusage)
        if how == "too_large":
            return ToolResult(ok=False, status="output_too_large", error="answer too large", cpu_ms=cpu_ms)
        result = from_answer(data, cpu_ms) if how == "eof" and data else None
        return result or from_exit(status, how == "timeout", timeout, cpu_ms)

    def close(self) -> None:
        self._remove_base()


def _exits_by(pid: int, deadline: float) -> bool:
    """Whether the (unreaped) process ``pid`` ends before ``deadline``, a ``time.monotonic()`` value."""
    pidfd = os.pidfd_open(pid)
    try:
        return bool(select.select([pidfd], [], [], max(deadline - time.monotonic(), 0))[0])
    finally:
        os.close(pidfd)
