"""The seccomp filter a sandboxed child loads last: no sockets, no kernel attack surface.

Built here, on the trusted side, with ``pyseccomp`` (ctypes over ``libseccomp.so.2``, which handles
architectures and syscall numbers) and exported once as a BPF program. The program travels in the jail
``Policy``; each child installs it with one ``prctl`` (libseccomp's own ``seccomp_load`` would regenerate
it in every child), and the workers never import ``pyseccomp`` or the half of the stdlib it pulls in.
"""

from __future__ import annotations

import errno
import functools
import io
import os
import socket
from typing import Any, Literal

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
FilterKind = Literal["base", "no_fork"]
_CLONE_NEW_FLAGS = (0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000, 0x40000000, 0x80)


def build_filter(kind: FilterKind) -> Any:
    """A ``pyseccomp.SyscallFilter`` (default allow): the ``base`` rules or the ``no_fork`` rules.

    ``base`` denies the calls above, sockets other than unix socket pairs, namespace-creating clones, and
    answers clone3 with ENOSYS so libc falls back to clone, whose flags a filter can inspect. ``no_fork``
    makes fork, vfork and process-creating clone fail with EAGAIN; threads still work. Two programs
    because a fork-server worker runs under ``base`` itself (its children inherit it: attaching a filter
    means a JIT compile, which cost every call ~0.1 ms) and only a tier without a pid namespace adds
    ``no_fork`` to each child.
    """
    import pyseccomp as sc  # here, not at module level: a missing libseccomp is the probe's finding

    filt = sc.SyscallFilter(sc.ALLOW)
    eperm = sc.ERRNO(errno.EPERM)

    def deny(action: int, name: str, *args: Any) -> None:
        if sc.resolve_syscall(sc.Arch.NATIVE, name) >= 0:  # absent on this architecture: nothing to deny
            filt.add_rule(action, name, *args)

    if kind == "no_fork":
        deny(sc.ERRNO(errno.EAGAIN), "fork")
        deny(sc.ERRNO(errno.EAGAIN), "vfork")
        deny(sc.ERRNO(errno.EAGAIN), "clone", sc.Arg(0, sc.MASKED_EQ, _CLONE_THREAD, 0))
        return filt
    for name in DENIED_SYSCALLS:
        deny(eperm, name)
    # No socket() at all: unix sockets are not network-namespaced and Landlock does not govern connect()
    # to a socket file, so AF_UNIX would reach host services. socketpair() (asyncio's self-pipe) cannot.
    deny(sc.ERRNO(errno.EACCES), "socket")
    deny(sc.ERRNO(errno.EACCES), "socketpair", sc.Arg(0, sc.NE, socket.AF_UNIX))
    deny(sc.ERRNO(errno.ENOSYS), "clone3")
    for flag in _CLONE_NEW_FLAGS:
        deny(eperm, "clone", sc.Arg(0, sc.MASKED_EQ, flag, flag))
    return filt


@functools.cache
def compile_filter(kind: FilterKind) -> bytes:
    """``build_filter`` exported to BPF (8 bytes per instruction); built once per process and kind."""
    fd = os.memfd_create("seccomp-bpf")
    try:
        build_filter(kind).export_bpf(io.FileIO(fd, "w", closefd=False))
        os.lseek(fd, 0, os.SEEK_SET)
        chunks = []
        while chunk := os.read(fd, 1 << 16):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)
