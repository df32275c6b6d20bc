"""The libc calls the jail makes, bound once at import.

Binding matters for speed, not only tidiness: a ``ctypes.CDLL`` attribute is looked up with ``dlsym`` and
built into a function object on first use. Done in every forked child, that first use costs about a hundred
copy-on-write page faults (~0.4 ms) per call; bound here, in the worker, children only call.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

prctl = _libc.prctl
prctl.restype = ctypes.c_int
syscall = _libc.syscall
syscall.restype = ctypes.c_long
capset = _libc.capset
mount = _libc.mount

# fork(2) called with the GIL held and without Python's at-fork handlers (see ``fork``).
_raw_fork = ctypes.PyDLL(None, use_errno=True).fork
_raw_fork.restype = ctypes.c_int


def check(result: int, what: str) -> int:
    """``result`` unless it is negative, then the call's errno as an OSError naming ``what``."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result


def fork() -> int:
    """fork(2) for a single-threaded process whose children never return into Python's main loop.

    ``os.fork`` runs the interpreter's after-fork work in the child (re-initialising thread state and
    locks, running ``register_at_fork`` hooks such as ``random`` re-seeding itself from urandom); in a
    one-call child that is about 70 page faults and a third of its CPU. It is only safe to skip when no
    other thread exists, which the caller guarantees; the child seeds ``random`` itself, per call.
    """
    pid = int(_raw_fork())
    if pid < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"fork: {os.strerror(err)}")
    return pid
