"""The ctypes face of ``native.c``: fork a confined child, confine this process, wait for a child's answer.

The library is built with the package (``_native*.so`` next to this file, a plain shared library without
Python headers), so the system interpreter that runs the workers loads the same build as the project's.
Its functions run with the GIL held (``PyDLL``): the callers are single-threaded processes.
"""

from __future__ import annotations

import ctypes
import os

MAX_LIMITS = 8
HOW = ("eof", "done", "timeout", "too_large")


class JailParams(ctypes.Structure):
    """``struct astra_jail``: everything a child needs to confine itself, prepared once per process."""

    _fields_ = [
        ("devnull", ctypes.c_int),
        ("ruleset_fd", ctypes.c_int),
        ("uid", ctypes.c_int),
        ("drop_caps", ctypes.c_int),
        ("scratch", ctypes.c_char_p),
        ("filter", ctypes.c_void_p),
        ("n_limits", ctypes.c_int),
        ("limit_which", ctypes.c_int * MAX_LIMITS),
        ("limits", (ctypes.c_ulong * 2) * MAX_LIMITS),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]


class SeccompProgram:
    """A BPF program (as ``seccomp_filter.compile_filter`` exports it) that children install in C."""

    def __init__(self, bpf: bytes) -> None:
        if not bpf or len(bpf) % 8:
            raise ValueError(f"not a BPF program: {len(bpf)} bytes")
        self._buffer = ctypes.create_string_buffer(bpf, len(bpf))
        self._fprog = _SockFprog(len(bpf) // 8, ctypes.cast(self._buffer, ctypes.c_void_p))

    @property
    def address(self) -> int:
        """Of its ``struct sock_fprog``, valid while this object lives."""
        return ctypes.addressof(self._fprog)


class _Outcome(ctypes.Structure):
    _fields_ = [
        ("how", ctypes.c_int),
        ("wait_status", ctypes.c_int),
        ("size", ctypes.c_long),
        ("cpu_ms", ctypes.c_double),
    ]


class Outcome:
    """How a call ended: the child's answer, ``how`` (one of HOW), its wait status and CPU time."""

    __slots__ = ("answer", "cpu_ms", "how", "wait_status")

    def __init__(self, answer: bytes, how: str, wait_status: int, cpu_ms: float) -> None:
        self.answer, self.how, self.wait_status, self.cpu_ms = answer, how, wait_status, cpu_ms


def library_path() -> str | None:
    """The built library next to this module, None when the package was installed without it."""
    here = os.path.dirname(os.path.abspath(__file__))
    names = sorted(n for n in os.listdir(here) if n.startswith("_native") and n.endswith(".so"))
    return os.path.join(here, names[0]) if names else None


def _load() -> ctypes.PyDLL:
    path = library_path()
    if path is None:
        raise ImportError("the sandbox's native helper (_native*.so) is not built: reinstall the package")
    lib = ctypes.PyDLL(path, use_errno=True)
    lib.astra_confine.restype = ctypes.c_char_p
    lib.astra_confine.argtypes = [ctypes.POINTER(JailParams), ctypes.c_int, ctypes.c_long, ctypes.c_long]
    lib.astra_fork.restype = ctypes.c_int
    lib.astra_fork.argtypes = [
        ctypes.POINTER(JailParams), ctypes.c_long, ctypes.c_long, ctypes.POINTER(ctypes.c_int)
    ]  # fmt: skip
    lib.astra_wait.restype = ctypes.c_int
    lib.astra_wait.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_long, ctypes.c_char_p, ctypes.c_long, ctypes.c_int,
        ctypes.POINTER(_Outcome),
    ]  # fmt: skip
    return lib


_lib = _load()


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def confine(params: JailParams, answer_fd: int, cpu_soft: int, cpu_hard: int) -> None:
    """Confine this process for good, or raise OSError naming the step that failed."""
    failed = _lib.astra_confine(ctypes.byref(params), answer_fd, cpu_soft, cpu_hard)
    if failed is not None:
        _raise_errno(failed.decode())


class Forker:
    """Forks confined children and waits for their answers; its buffers are allocated once, here."""

    def __init__(self, params: JailParams, max_answer_bytes: int, sweep_all: bool) -> None:
        self._params = ctypes.byref(params)
        self._fd = ctypes.c_int(-1)
        self._fd_ref = ctypes.byref(self._fd)
        self._capacity = max_answer_bytes
        self._buffer = ctypes.create_string_buffer(max_answer_bytes)
        self._outcome = _Outcome()
        self._outcome_ref = ctypes.byref(self._outcome)
        self._sweep_all = int(sweep_all)

    def fork(self, cpu_soft: int, cpu_hard: int) -> tuple[int, int]:
        """(pid, fd): in the worker the child's pid and the answer's read end; in the child (0, write end).

        The child is confined on return. Only for a single-threaded caller: unlike ``os.fork`` this skips
        the interpreter's after-fork work (re-initialising thread state and locks, ``register_at_fork``
        hooks such as ``random`` re-seeding itself from urandom), about a third of a one-call child's CPU.
        The child seeds ``random`` itself, per call.
        """
        pid = int(_lib.astra_fork(self._params, cpu_soft, cpu_hard, self._fd_ref))
        if pid < 0:
            _raise_errno("fork")
        return pid, self._fd.value

    def wait(self, pid: int, fd: int, timeout_s: float) -> Outcome:
        """The child's answer once it is complete, the child is gone or the deadline passed; then the
        child and everything it left behind are killed and reaped. Closes ``fd``."""
        timeout_ns = max(int(timeout_s * 1e9), 0)
        lib, outcome = _lib, self._outcome_ref
        if lib.astra_wait(pid, fd, timeout_ns, self._buffer, self._capacity, self._sweep_all, outcome):
            _raise_errno("watching the call")
        o = self._outcome
        return Outcome(ctypes.string_at(self._buffer, o.size), HOW[o.how], o.wait_status, o.cpu_ms)
