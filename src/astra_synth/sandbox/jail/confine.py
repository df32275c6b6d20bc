"""What a sandboxed child may do, and the code that applies it right before the tool runs.

The policy crosses a process boundary as JSON into the bare system interpreter, where pydantic is not
importable; the trusted side builds it from the typed ``SandboxLimits``. It is a plain class, not a
dataclass: ``dataclasses`` and ``typing`` pull in a dozen modules, and every module a worker holds makes
each of its forks dearer (a fork copies the worker's page tables, its exit tears them down).
Expensive parts (the Landlock ruleset, the seccomp filter, the clamped rlimits) are prepared once per
worker in ``Jail``; each forked child applies them in C (``native.c``), touching almost no Python memory.
"""

from __future__ import annotations

import os
import resource

from astra_synth.sandbox.jail import landlock, native

TYPE_CHECKING = False  # see the module docstring for why not ``typing.TYPE_CHECKING``
if TYPE_CHECKING:
    from typing import Any

READ_ONLY_PATHS = ("/usr", "/lib", "/lib64", "/lib32", "/bin", "/etc/localtime", "/dev/urandom", "/dev/zero")
READ_WRITE_DEVICES = ("/dev/null",)


class Policy:
    """Limits and layers for every call a worker (or a one-shot interpreter) runs."""

    def __init__(
        self,
        scratch: str,
        uid: int | None = None,  # drop to this uid/gid; None keeps the current one (rootless tiers)
        memory_mb: int = 1024,
        max_processes: int = 16,
        max_file_bytes: int = 16 << 20,
        max_open_files: int = 64,
        max_output_bytes: int = 1 << 20,
        no_fork: bool = True,
        landlock: bool = True,
        seccomp_bpf: str | None = None,  # seccomp programs (hex) from the trusted side; None: none
        no_fork_bpf: str | None = None,
        read_only_paths: tuple[str, ...] = READ_ONLY_PATHS,
    ) -> None:
        self.scratch = scratch
        self.uid = uid
        self.memory_mb = memory_mb
        self.max_processes = max_processes
        self.max_file_bytes = max_file_bytes
        self.max_open_files = max_open_files
        self.max_output_bytes = max_output_bytes
        self.no_fork = no_fork
        self.landlock = landlock
        self.seccomp_bpf = seccomp_bpf
        self.no_fork_bpf = no_fork_bpf
        self.read_only_paths = tuple(read_only_paths)

    def to_json(self) -> dict[str, Any]:
        return dict(vars(self))

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Policy:
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


class Jail:
    """A policy with its Landlock ruleset and seccomp filter prebuilt; ``enter`` is called per child."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.landlock_abi = landlock.abi_version() if policy.landlock else 0
        self.ruleset_fd: int | None = None
        if policy.landlock:
            stdlib = os.path.dirname(os.__file__)  # in case it is not under /usr
            read_only = (*policy.read_only_paths, stdlib)
            read_write = (policy.scratch, *READ_WRITE_DEVICES)
            self.ruleset_fd = landlock.build_ruleset(read_only, read_write, self.landlock_abi)
        self.filter = native.SeccompProgram.from_hex(policy.seccomp_bpf)
        self.no_fork_filter = native.SeccompProgram.from_hex(policy.no_fork_bpf)
        limits = {
            resource.RLIMIT_AS: policy.memory_mb << 20,
            resource.RLIMIT_FSIZE: policy.max_file_bytes,
            resource.RLIMIT_NOFILE: policy.max_open_files,
            resource.RLIMIT_CORE: 0,
        }
        if policy.uid is not None:  # RLIMIT_NPROC counts per uid: only meaningful with a uid of our own
            limits[resource.RLIMIT_NPROC] = policy.max_processes
        self._scratch = policy.scratch.encode()  # kept alive: the params point at it
        self.devnull = os.open(os.devnull, os.O_RDWR)
        self.params = native.JailParams(
            cpu_ceiling=resource.getrlimit(resource.RLIMIT_CPU)[1] & 0xFFFF_FFFF_FFFF_FFFF,  # infinity is -1
            devnull=self.devnull,
            ruleset_fd=-1 if self.ruleset_fd is None else self.ruleset_fd,
            uid=-1 if policy.uid is None else policy.uid,
            drop_caps=int(policy.uid is None and os.geteuid() == 0),
            scratch=self._scratch,
            filter=None if self.filter is None else self.filter.address,
            no_fork_filter=None if self.no_fork_filter is None else self.no_fork_filter.address,
            n_limits=len(limits),
        )
        for i, (which, value) in enumerate(limits.items()):  # clamped once, here, not in every child
            self.params.limit_which[i] = which
            self.params.limits[i][:] = clamped(which, value, value)

    def inherit_filter(self) -> None:
        """Put this process (a fork-server worker) under the base seccomp filter now, for good, so its
        children inherit it instead of each attaching (and JIT-compiling) it: they then add only the
        ``no_fork`` program, where the policy has one."""
        if self.filter is not None:
            native.install_filter(self.filter)
            self.params.filter = None

    def enter(self, cpu_seconds: int, answer_fd: int) -> None:
        """Confine this process for good (the one-shot interpreter): closes every fd but ``answer_fd``,
        points 0-2 at /dev/null, then scratch cwd, rlimits (SIGXCPU after ``cpu_seconds``, SIGKILL a
        second later), uid, Landlock and seccomp."""
        native.confine(self.params, answer_fd, cpu_seconds)
