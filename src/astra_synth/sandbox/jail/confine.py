"""What a sandboxed child may do, and the code that applies it right before the tool runs.

The policy crosses a process boundary as JSON into the bare system interpreter, where pydantic is not
importable, so it is a stdlib dataclass; the trusted side builds it from the typed ``SandboxLimits``.
Expensive parts (the Landlock ruleset, the seccomp filter) are built once per worker in ``Jail`` and
only applied in each forked child.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import resource
import sysconfig
from dataclasses import dataclass
from typing import Any

from astra_synth.sandbox.jail import landlock, libc, seccomp_filter

READ_ONLY_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc/localtime", "/dev/urandom", "/dev/zero")
READ_WRITE_DEVICES = ("/dev/null",)

_PR_CAPBSET_DROP = 24
_CAP_LAST = 63
_CAPABILITY_VERSION_3 = 0x20080522


@dataclass(frozen=True)
class Policy:
    """Limits and layers for every call a worker (or a one-shot interpreter) runs."""

    scratch: str
    uid: int | None = None  # drop to this uid/gid; None keeps the current one (rootless tiers)
    memory_mb: int = 1024
    max_processes: int = 16
    max_file_bytes: int = 16 << 20
    max_open_files: int = 64
    max_output_bytes: int = 1 << 20
    no_fork: bool = True
    landlock: bool = True
    seccomp: bool = True
    pyseccomp_path: str | None = None
    read_only_paths: tuple[str, ...] = READ_ONLY_PATHS

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
        data = dict(data)
        data["read_only_paths"] = tuple(data.get("read_only_paths", READ_ONLY_PATHS))
        return cls(**data)


def capped(soft: int, hard: int, ceiling: int) -> tuple[int, int]:
    """(soft, hard) never above ``ceiling``, the current hard limit (raising it needs CAP_SYS_RESOURCE)."""
    if ceiling == resource.RLIM_INFINITY:
        return soft, hard
    return min(soft, ceiling), min(hard, ceiling)


def clamped(which: int, soft: int, hard: int) -> tuple[int, int]:
    return capped(soft, hard, resource.getrlimit(which)[1])


def lower_limit(which: int, soft: int, hard: int) -> None:
    resource.setrlimit(which, clamped(which, soft, hard))


def scrub_environment() -> None:
    """Leave tool code only what it needs; done once per process (350 µs), never per forked child."""
    os.environ.clear()
    os.environ.update(PYTHONHASHSEED="0", PATH="/usr/bin:/bin", LANG="C.UTF-8")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def drop_capabilities() -> None:
    """Empty the bounding, effective, permitted and inheritable sets (root in a user namespace)."""
    for cap in range(_CAP_LAST + 1):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == 22:  # EINVAL: past last
            break
    header = _CapHeader(version=_CAPABILITY_VERSION_3, pid=0)
    data = (_CapData * 2)()
    libc.check(libc.capset(ctypes.byref(header), data), "capset")


class Jail:
    """A policy with its Landlock ruleset and seccomp filter prebuilt; ``enter`` is called per child."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.landlock_abi = landlock.abi_version() if policy.landlock else 0
        self.ruleset_fd: int | None = None
        if policy.landlock:
            stdlib = {sysconfig.get_path("stdlib"), sysconfig.get_path("platstdlib")}  # if not under /usr
            read_only = (*policy.read_only_paths, *sorted(stdlib))
            read_write = (policy.scratch, *READ_WRITE_DEVICES)
            self.ruleset_fd = landlock.build_ruleset(read_only, read_write, self.landlock_abi)
        self.filter = (
            seccomp_filter.compile_filter(policy.no_fork, policy.pyseccomp_path) if policy.seccomp else None
        )
        # Clamped here, once: every Python step a forked child takes costs it copy-on-write page faults.
        limits = {
            resource.RLIMIT_AS: policy.memory_mb << 20,
            resource.RLIMIT_FSIZE: policy.max_file_bytes,
            resource.RLIMIT_NOFILE: policy.max_open_files,
            resource.RLIMIT_CORE: 0,
        }
        if policy.uid is not None:  # RLIMIT_NPROC counts per uid: only meaningful with a uid of our own
            limits[resource.RLIMIT_NPROC] = policy.max_processes
        self.rlimits = [(which, clamped(which, value, value)) for which, value in limits.items()]
        self.cpu_hard = resource.getrlimit(resource.RLIMIT_CPU)[1]

    def enter(self, cpu_seconds: int) -> None:
        """Confine the calling process for good: scratch cwd, rlimits, uid, Landlock, then seccomp."""
        p = self.policy
        os.chdir(p.scratch)
        for which, pair in self.rlimits:
            resource.setrlimit(which, pair)
        # SIGXCPU, then SIGKILL
        resource.setrlimit(resource.RLIMIT_CPU, capped(cpu_seconds, cpu_seconds + 1, self.cpu_hard))
        if p.uid is not None:
            os.setgroups([])
            os.setresgid(p.uid, p.uid, p.uid)
            os.setresuid(p.uid, p.uid, p.uid)
        elif os.geteuid() == 0:
            drop_capabilities()
        if self.ruleset_fd is not None:
            landlock.restrict_self(self.ruleset_fd)
            os.close(self.ruleset_fd)
        if self.filter is not None:
            self.filter.load()
