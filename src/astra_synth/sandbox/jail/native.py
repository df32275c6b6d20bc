"""The ctypes face of ``native.c``: the fork-server worker's call loop, and confining this process.

The library is built with the package (``_native*.so`` next to this file, a plain shared library without
Python headers), so the system interpreter that runs the workers loads the same build as the project's.
Its functions run with the GIL held (``PyDLL``): the callers are single-threaded processes. Forking
there skips the interpreter's after-fork work (re-initialising thread state and locks, ``register_at_fork``
hooks such as ``random`` re-seeding itself from urandom), which is only safe without other threads; the
child seeds ``random`` itself, per call.
"""

from __future__ import annotations

import ctypes
import os

from astra_synth.sandbox.jail.protocol import MAX_FRAME_BYTES

MAX_LIMITS = 8


class JailParams(ctypes.Structure):
    """``struct astra_jail``: everything a child needs to confine itself, prepared once per process."""

    _fields_ = [
        ("cpu_ceiling", ctypes.c_ulong),
        ("devnull", ctypes.c_int),
        ("ruleset_fd", ctypes.c_int),
        ("uid", ctypes.c_int),
        ("drop_caps", ctypes.c_int),
        ("scratch", ctypes.c_char_p),
        ("filter", ctypes.c_void_p),
        ("no_fork_filter", ctypes.c_void_p),
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

    @classmethod
    def from_hex(cls, bpf: str | None) -> SeccompProgram | None:
        return cls(bytes.fromhex(bpf)) if bpf else None

    @property
    def address(self) -> int:
        """Of its ``struct sock_fprog``, valid while this object lives."""
        return ctypes.addressof(self._fprog)


class _Server(ctypes.Structure):
    _fields_ = [
        ("jail", ctypes.POINTER(JailParams)),
        ("in_fd", ctypes.c_int),
        ("out_fd", ctypes.c_int),
        ("sweep_all", ctypes.c_int),
        ("forks_denied", ctypes.c_int),
        ("last_pid_fd", ctypes.c_int),
        ("answer_cap", ctypes.c_long),
        ("max_frame", ctypes.c_long),
        ("payload", ctypes.c_void_p),
        ("payload_size", ctypes.c_long),
        ("answer_fd", ctypes.c_int),
        ("frame", ctypes.c_void_p),
        ("frame_cap", ctypes.c_long),
        ("answer", ctypes.c_void_p),
    ]


def library_path() -> str | None:
    """The built library next to this module, None when the package was installed without it."""
    here = os.path.dirname(os.path.abspath(__file__))
    paths = [os.path.join(here, n) for n in os.listdir(here) if n.startswith("_native") and n.endswith(".so")]
    return max(paths, key=os.path.getmtime) if paths else None  # the latest build, if several


def _load() -> ctypes.PyDLL:
    path = library_path()
    if path is None:
        raise ImportError("the sandbox's native helper (_native*.so) is not built: reinstall the package")
    lib = ctypes.PyDLL(path, use_errno=True)
    lib.astra_confine.restype = ctypes.c_char_p
    lib.astra_confine.argtypes = [ctypes.POINTER(JailParams), ctypes.c_int, ctypes.c_ulong]
    lib.astra_install_filter.restype = ctypes.c_int
    lib.astra_install_filter.argtypes = [ctypes.c_void_p]
    lib.astra_serve.restype = ctypes.c_int
    lib.astra_serve.argtypes = [ctypes.POINTER(_Server)]
    return lib


_lib = _load()


def _raise_errno(what: str) -> None:
    err = ctypes.get_errno()
    raise OSError(err, f"{what}: {os.strerror(err)}")


def confine(params: JailParams, answer_fd: int, cpu_seconds: int) -> None:
    """Confine this process for good, or raise OSError naming the step that failed."""
    failed = _lib.astra_confine(ctypes.byref(params), answer_fd, cpu_seconds)
    if failed is not None:
        _raise_errno(failed.decode())


def install_filter(program: SeccompProgram) -> None:
    """Put this process under ``program`` for good (setting no_new_privs, which seccomp requires)."""
    if _lib.astra_install_filter(program.address) != 0:
        _raise_errno("installing the seccomp filter")


# What ``Server.serve`` returns: a frame for Python, this is a call's child, scratch to wipe, end.
FRAME, CHILD, DIRTY, EOF = "frame", "child", "dirty", "eof"
_SERVED = {0: EOF, 1: FRAME, 2: CHILD, 3: DIRTY}


class Server:
    """The worker's call loop in C: call frames are forked, confined, watched, reaped and answered for
    there; ``serve`` returns only when Python is needed (see ``native.c``)."""

    def __init__(
        self, params: JailParams, pipes: tuple[int, int], answer_cap: int, sweep_all: bool, forks_denied: bool
    ) -> None:
        self._params = params
        self._state = _Server(
            jail=ctypes.pointer(params),
            in_fd=pipes[0],
            out_fd=pipes[1],
            sweep_all=int(sweep_all),
            forks_denied=int(forks_denied),
            last_pid_fd=-1,
            answer_cap=answer_cap,
            max_frame=MAX_FRAME_BYTES,
        )
        self._ref = ctypes.byref(self._state)

    def serve(self) -> str:
        """Serve until a frame needs Python; one of FRAME, CHILD, DIRTY, EOF (see ``payload``)."""
        served = _lib.astra_serve(self._ref)
        if served < 0:
            _raise_errno("serving calls")
        return _SERVED[served]

    @property
    def payload(self) -> bytes:
        """FRAME: the whole frame; CHILD: the marshalled call (see ``protocol.call_frame``)."""
        return ctypes.string_at(self._state.payload or 0, self._state.payload_size)

    @property
    def answer_fd(self) -> int:
        """CHILD: where the child writes its answer."""
        return int(self._state.answer_fd)
