"""The fork-server worker: one per core, warm, forks a confined child per call.

Started by ``ForkServerExecutor`` inside its tier (PID 1 of fresh pid/net/mount/ipc/uts namespaces in
T1/T2, a plain rootless process in T3) with its ``WorkerConfig`` as JSON in argv. Requests and replies
are frames on stdin/stdout. Per call the worker forks; the child confines itself (``Jail.enter``) and
runs the tool; the worker enforces the wall clock through a pidfd, then kills and reaps everything the
call left behind and wipes the scratch directory, so no call can see or disturb the next one. Forking,
confining and supervising are in C (``native``): see ``native.c`` for why.

Never install a signal handler here: as PID 1 of its namespace the worker is immune to signals sent
from inside it only while it has none.
"""

from __future__ import annotations

import gc
import json
import os
import resource
import sys
from types import CodeType

from astra_synth.sandbox.jail import libc, native, protocol
from astra_synth.sandbox.jail.confine import Jail, Policy, lower_limit, scrub_environment
from astra_synth.sandbox.jail.tool import call_tool, compile_tool, describe

TYPE_CHECKING = False  # not ``typing.TYPE_CHECKING``: importing ``typing`` would make every fork dearer
if TYPE_CHECKING:
    from typing import Any

# The stdlib modules a tool may find already imported: the worker imports those a tool's code names when
# it compiles it, so each forked child finds them in memory (copy-on-write) instead of on disk. Only
# these, and only on demand: a module is never imported on an untrusted name, and every module the worker
# holds makes each fork dearer.
PREIMPORTS = frozenset((
    "json", "math", "cmath", "datetime", "decimal", "fractions", "random", "re", "collections",
    "collections.abc", "itertools", "functools", "dataclasses", "typing", "enum", "statistics", "string",
    "textwrap", "heapq", "bisect", "copy", "hashlib", "base64", "time", "calendar", "operator", "uuid",
    "zoneinfo", "difflib", "csv", "io", "unicodedata", "struct", "array", "numbers", "pprint", "urllib.parse",
))  # fmt: skip
_MS_NOSUID, _MS_NODEV = 2, 4
_PR_SET_CHILD_SUBREAPER = 36


class Worker:
    """The warm state of one worker: its jail, compiled environments and scratch directory."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.policy = Policy.from_json(config["policy"])
        self.max_envs = int(config.get("max_envs", 256))
        self.pid1 = os.getpid() == 1
        scrub_environment()
        if self.pid1:
            self._mount_scratch(int(config.get("scratch_mb", 64)))
        elif not self.policy.no_fork:
            raise RuntimeError("without a pid namespace of its own the worker requires no_fork")
        else:
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans come back here to be reaped
        self.jail = Jail(self.policy)
        self.forker = native.Forker(self.jail.params, self.policy.max_output_bytes + 4096, self.pid1)
        self.codes: dict[str, CodeType] = {}  # in least recently used order
        self.netns = _interfaces() == ["lo"]
        # The worker compiles untrusted source: bound its own memory too (children lower it further).
        worker_bytes = (self.policy.memory_mb + 512) << 20
        lower_limit(resource.RLIMIT_AS, worker_bytes, worker_bytes)
        lower_limit(resource.RLIMIT_CORE, 0, 0)
        if len(os.listdir("/proc/self/task")) != 1:
            raise RuntimeError(
                "the worker must have a single thread (it forks without Python's at-fork work)"
            )
        gc.collect()
        gc.freeze()  # children then do not dirty the shared heap pages by collecting them

    def _mount_scratch(self, size_mb: int) -> None:
        """A size-limited tmpfs of the worker's own mount namespace: bounded, private, gone with it."""
        path = self.policy.scratch.encode()
        options = f"size={size_mb}m,mode=0700".encode()
        libc.check(
            libc.mount(b"tmpfs", path, b"tmpfs", _MS_NOSUID | _MS_NODEV, options),
            "mounting the scratch tmpfs",
        )
        if self.policy.uid is not None:
            os.chown(self.policy.scratch, self.policy.uid, self.policy.uid)

    def hello(self) -> dict[str, Any]:
        """What this worker actually got; the executor refuses to use it if that is not enough."""
        return {
            "ready": True,
            "pid1": self.pid1,
            "netns": self.netns,
            "landlock_abi": self.jail.landlock_abi,
            "seccomp": self.jail.filter is not None,
            "uid": self.policy.uid,
            "no_fork": self.policy.no_fork,
        }

    def serve(self, request: dict[str, Any]) -> dict[str, Any]:
        env_id = request["env_id"]
        code = self.codes.get(env_id)
        if code is None:
            source = request.get("source")
            if source is None:
                return {"missing_env": True}
            try:
                code = compile_tool(source)
            except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
                return {"status": "invalid", "error": f"tool does not compile: {describe(exc)}"}
            preimport(code)
            self.codes[env_id] = code
            if len(self.codes) > self.max_envs:
                del self.codes[next(iter(self.codes))]
        else:
            self.codes[env_id] = self.codes.pop(env_id)  # now the most recently used
        return self.run(code, request)

    def run(self, code: CodeType, request: dict[str, Any]) -> dict[str, Any]:
        """Fork, wait for the answer or the deadline, then leave nothing of the call behind."""
        pid, fd = self.forker.fork(*self.jail.cpu_limits(int(request["cpu_seconds"])))
        if pid == 0:
            self._child(code, request, fd)
        outcome = self.forker.wait(pid, fd, float(request["timeout_s"]))
        self._wipe()
        return {
            "answer": outcome.answer.decode("utf-8", "replace"),
            "how": outcome.how,
            "wait_status": outcome.wait_status,
            "cpu_ms": outcome.cpu_ms,
        }

    def _child(self, code: CodeType, request: dict[str, Any], answer_fd: int) -> None:
        """In the forked, already confined child: run, answer, exit. Never returns into the worker loop."""
        try:
            data = call_tool(
                code, request["fn"], request["args"], int(request["seed"]), self.policy.max_output_bytes
            )
            view = memoryview(data)
            while view:
                view = view[os.write(answer_fd, view) :]
        finally:
            os._exit(0)

    def _wipe(self) -> None:
        scratch = self.policy.scratch
        os.chmod(scratch, 0o700)
        with os.scandir(scratch) as entries:
            paths = [entry.path for entry in entries]
        if paths:
            import shutil  # only now: most calls leave nothing, and the worker stays small without it
        for path in paths:
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, onerror=_unlock_and_retry)
            else:
                os.unlink(path)


def preimport(code: CodeType) -> None:
    """Import the ``PREIMPORTS`` that the tool's code names anywhere, then freeze the heap again."""
    names: set[str] = set()
    stack = [code]
    while stack:
        current = stack.pop()
        names.update(current.co_names)
        stack.extend(c for c in current.co_consts if isinstance(c, CodeType))
    wanted = [name for name in names & PREIMPORTS if name not in sys.modules]
    for name in sorted(wanted):
        __import__(name)
    if wanted:
        gc.collect()
        gc.freeze()


def _interfaces() -> list[str]:
    """Network interfaces of this process's network namespace (/proc/net is per namespace, /sys not)."""
    with open("/proc/self/net/dev") as dev:
        return [line.split(":", 1)[0].strip() for line in dev.readlines()[2:]]


def _unlock_and_retry(func: Any, path: str, _exc: Any) -> None:
    """The child may have removed its own permissions on a directory; restore them and retry."""
    os.chmod(os.path.dirname(path), 0o700)
    if os.path.isdir(path) and not os.path.islink(path):
        os.chmod(path, 0o700)
    func(path)


def main() -> None:
    config = json.loads(sys.argv[1])
    requests, replies = os.dup(0), os.dup(1)
    try:
        worker = Worker(config)
    except BaseException as exc:
        protocol.write_frame(replies, {"ready": False, "error": describe(exc)})
        raise
    for fd in (0, 1):  # nothing but frames may reach the executor's pipe
        os.dup2(worker.jail.devnull, fd)
    protocol.write_frame(replies, worker.hello())
    while True:
        try:
            request = protocol.read_frame(requests)
        except protocol.FrameError:
            return  # the executor closed the pipe (or died): the namespace dies with this process
        protocol.write_frame(replies, worker.serve(request))


if __name__ == "__main__":
    main()
