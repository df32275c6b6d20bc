"""The seccomp filter a sandboxed child loads last: no sockets, no kernel attack surface.

Built with ``pyseccomp`` (ctypes over ``libseccomp.so.2``, which handles architectures and syscall
numbers) once per worker and exported as a BPF program, which each child installs with one ``prctl``
(libseccomp's own ``seccomp_load`` would regenerate the program in every child). Workers run the system
interpreter, which cannot see the project's virtualenv, so the trusted side passes the path of
``pyseccomp``'s single module file and only that file is loaded from it.
"""

from __future__ import annotations

import ctypes
import errno
import importlib.util
import io
import os
import socket
import sys
from types import ModuleType
from typing import Any

from astra_synth.sandbox.jail import libc

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
_PR_SET_NO_NEW_PRIVS = 38
_PR_SET_SECCOMP = 22
_SECCOMP_MODE_FILTER = 2
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
    # No socket() at all: unix sockets are not network-namespaced and Landlock does not govern connect()
    # to a socket file, so AF_UNIX would reach host services. socketpair() (asyncio's self-pipe) cannot.
    deny(sc.ERRNO(errno.EACCES), "socket")
    deny(sc.ERRNO(errno.EACCES), "socketpair", sc.Arg(0, sc.NE, socket.AF_UNIX))
    deny(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NEW_FLAGS:
        deny(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    if no_fork:
        deny(sc.ERRNO(errno.EAGAIN), "fork")
        deny(sc.ERRNO(errno.EAGAIN), "vfork")
        deny(sc.ERRNO(errno.EAGAIN), "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
    return filt


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class Program:
    """A compiled filter (BPF bytes) ready to install in a child with ``load``."""

    def __init__(self, bpf: bytes) -> None:
        if not bpf or len(bpf) % 8:
            raise ValueError(f"not a BPF program: {len(bpf)} bytes")
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._fprog = _SockFprog(len(bpf) // 8, ctypes.cast(self._buffer, ctypes.c_void_p))
        self._fprog_ref = ctypes.byref(self._fprog)

    def load(self) -> None:
        """Install for good in the calling process (sets no_new_privs, which seccomp requires)."""
        libc.check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")
        libc.check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, self._fprog_ref, 0, 0), "seccomp filter")


def compile_filter(no_fork: bool, pyseccomp_path: str | None = None) -> Program:
    """``build_filter`` exported once to BPF."""
    fd = os.memfd_create("seccomp-bpf")
    try:
        build_filter(no_fork, pyseccomp_path).export_bpf(io.FileIO(fd, "w", closefd=False))
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return Program(b"".join(chunks))
