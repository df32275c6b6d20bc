"""The libc calls the jail's set-up makes from Python, bound once at import.

The per-call path (fork, confinement, supervision) is in ``native.c``; these serve the worker's start:
Landlock's ruleset, the scratch tmpfs, the subreaper flag.
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)

prctl = _libc.prctl
prctl.restype = ctypes.c_int
syscall = _libc.syscall
syscall.restype = ctypes.c_long
mount = _libc.mount


def check(result: int, what: str) -> int:
    """``result`` unless it is negative, then the call's errno as an OSError naming ``what``."""
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
    return result
