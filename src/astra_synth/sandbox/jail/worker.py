"""The fork-server worker: one per core, warm, forks a confined child per call.

Started by ``ForkServerExecutor`` inside its tier (PID 1 of fresh pid/net/mount/ipc/uts namespaces in
T1/T2, a plain rootless process in T3). Requests and replies are frames on stdin/stdout (``protocol``):
first its config, then requests to load a tool environment (compiled here, once) or to call one. Calls are
served in C (``native.c``, which says why): the worker forks, the child confines itself and comes back
into Python only to run the tool; the worker enforces the wall clock through a pidfd, then kills and
reaps everything the call left behind and wipes the scratch directory, so no call can see or disturb
the next one.

Never install a signal handler here: as PID 1 of its namespace the worker is immune to signals sent
from inside it only while it has none.
"""

from __future__ import annotations

import gc
import marshal
import os
import resource
import sys
from types import CodeType

from astra_synth.sandbox.jail import libc, native, protocol
from astra_synth.sandbox.jail.confine import Jail, Policy, lower_limit, scrub_environment
from astra_synth.sandbox.jail.tool import answer, call_tool, compile_tool, describe

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
    """The warm state of one worker: its jail, compiled environments, scratch directory and call loop."""

    def __init__(self, config: dict[str, Any], requests: int, replies: int) -> None:
        self.policy = Policy.from_json(config["policy"])
        self.pid1 = os.getpid() == 1
        scrub_environment()
        if self.pid1:
            self._mount_scratch(int(config.get("scratch_mb", 64)))
        elif not self.policy.no_fork:
            raise RuntimeError("without a pid namespace of its own the worker requires no_fork")
        else:
            libc.prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)  # orphans come back here to be reaped
        if config.get("cpu") is not None:  # its calls' children inherit the core
            os.sched_setaffinity(0, {int(config["cpu"])})
        self.jail = Jail(self.policy)
        self.jail.inherit_filter()
        answer_cap = self.policy.max_output_bytes + 4096 + 8  # + the answer document, + its length
        pipes = (requests, replies)
        self.server = native.Server(self.jail.params, pipes, answer_cap, self.pid1, self.policy.no_fork)
        self.codes: dict[str, CodeType] = {}  # the executor decides what stays (``evict``)
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

    def load(self, request: dict[str, Any]) -> dict[str, Any]:
        """Compile a tool environment for the calls to come, and forget those the executor evicts."""
        for env_id in request.get("evict", ()):
            self.codes.pop(env_id, None)
        try:
            code = compile_tool(request["source"])
        except (SyntaxError, ValueError, RecursionError, MemoryError, OverflowError) as exc:
            return {"status": "invalid", "error": f"tool does not compile: {describe(exc)}"}
        preimport(code)
        self.codes[request["env_id"]] = code
        return {"loaded": True}

    def child(self) -> None:
        """In a forked, already confined child: run the call, answer, exit. Never returns."""
        try:
            env_id, fn, args, seed = marshal.loads(self.server.payload)  # see protocol.call_frame
            code = self.codes.get(env_id)
            if code is None:
                data = answer("crashed", error="the tool environment is not loaded in this worker")
            else:
                data = call_tool(code, fn, args, seed, self.policy.max_output_bytes)
            # Length first, so the worker knows when the answer is complete. Not ``len()``: the tool may
            # have replaced builtins; methods of built-in types it cannot replace.
            view = memoryview(data.__len__().to_bytes(8, sys.byteorder) + data)
            while view:
                view = view[os.write(self.server.answer_fd, view) :]
        finally:
            os._exit(0)

    def wipe(self) -> None:
        """Empty the scratch directory the last call left files in (shutil only now: most calls leave
        nothing, and the worker stays small without it)."""
        import shutil

        scratch = self.policy.scratch
        os.chmod(scratch, 0o700)
        with os.scandir(scratch) as entries:
            paths = [entry.path for entry in entries]
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
    requests, replies = os.dup(0), os.dup(1)
    try:
        worker = Worker(protocol.read_message(requests), requests, replies)  # the config comes first
    except BaseException as exc:
        protocol.write_frame(replies, {"ready": False, "error": describe(exc)})
        raise
    for fd in (0, 1):  # nothing but frames may reach the executor's pipe
        os.dup2(worker.jail.devnull, fd)
    protocol.write_frame(replies, worker.hello())
    while True:
        try:
            served = worker.server.serve()  # calls are served in C; this returns when Python is needed
            if served == native.CHILD:
                worker.child()
            elif served == native.DIRTY:
                worker.wipe()
            elif served == native.FRAME:
                protocol.write_frame(replies, worker.load(marshal.loads(worker.server.payload)))
            else:
                return  # the executor closed the pipe: the namespace dies with this process
        except (OSError, ValueError, EOFError, TypeError):
            return  # a broken pipe or a malformed frame: the executor replaces this worker


if __name__ == "__main__":
    main()
