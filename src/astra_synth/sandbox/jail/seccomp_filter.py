"""The seccomp filter a sandboxed child loads last: no network sockets, no kernel attack surface.

Built with ``pyseccomp`` (ctypes over ``libseccomp.so.2``, which handles architectures and syscall
numbers). Workers run the system interpreter, which cannot see the project's virtualenv, so the trusted
side passes the path of ``pyseccomp``'s single module file and only that file is loaded from it.
"""

from __future__ import annotations

import errno
import importlib.util
import socket
import sys
from types import ModuleType
from typing import Any

# Calls no tool function needs and that widen the kernel surface or escape the sandbox.
DENIED_SYSCALLS = (
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd", "kcmp",
    "mount", "umount2", "pivot_root", "chroot", "fsopen", "fsmount", "fsconfig", "fspick",
    "move_mount", "open_tree", "mount_setattr", "unshare", "setns",
    "bpf", "perf_event_open", "userfaultfd", "keyctl", "add_key", "request_key",
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "swapon", "swapoff", "reboot", "acct", "quotactl",
    "syslog", "settimeofday", "clock_settime", "clock_adjtime", "adjtimex", "iopl", "ioperm",
    "personality", "vhangup", "lookup_dcookie", "fanotify_init",
)  # fmt: skip
_CLONE_THREAD = 0x00010000
_CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)


def load_pyseccomp(path: str | None = None) -> ModuleType:
    """``pyseccomp`` from the current environment, or from its module file at ``path``."""
    if "pyseccomp" in sys.modules:
        return sys.modules["pyseccomp"]
    if path is None:
        return importlib.import_module("pyseccomp")
    spec = importlib.util.spec_from_file_location("pyseccomp", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load pyseccomp from {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    sys.modules["pyseccomp"] = module
    return module


def build_filter(no_fork: bool, pyseccomp_path: str | None = None) -> Any:
    """A ``pyseccomp.SyscallFilter`` (default allow) that the child loads with ``.load()``.

    ``no_fork`` makes fork, vfork and process-creating clone fail with EAGAIN; threads still work.
    clone3 answers ENOSYS so libc falls back to clone, whose flags the filter can inspect.
    """
    sc = load_pyseccomp(pyseccomp_path)
    filt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)

    def deny(action: int, name: str, *args: Any) -> None:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0:  # absent on this architecture: nothing to deny
            filt.add_rule(action, name, *args)

    for name in DENIED_SYSCALLS:
        deny(eperm, name)
    for name in ("socket", "socketpair"):
        deny(sc.ERRNO(errno.EACCES), name, sc.Arg(0, sc.NE, socket.AF_UNIX))
    deny(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NEW_FLAGS:
        deny(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    if no_fork:
        deny(sc.ERRNO(errno.EAGAIN), "fork")
        deny(sc.ERRNO(errno.EAGAIN), "vfork")
        deny(sc.ERRNO(errno.EAGAIN), "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
    return filt
