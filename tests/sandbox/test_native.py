"""The native helper: a confinement step that fails is named, and the process never runs unconfined."""

from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

import pytest

from astra_synth.sandbox.jail import native
from astra_synth.sandbox.jail.confine import Jail, Policy


def _in_a_child(scratch: str) -> str:
    """Run ``Jail.enter`` in a forked child (confinement is for good) and return what it reported."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        try:
            jail = Jail(Policy(scratch=scratch, landlock=False, max_open_files=16))
            jail.enter(cpu_seconds=5, answer_fd=write_fd)
            fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
            report = f"confined in {os.getcwd()}; open fds {fds}"
        except OSError as exc:
            report = f"{type(exc).__name__}: {exc}"
        os.write(write_fd, report.encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    while chunk := os.read(read_fd, 4096):
        chunks.append(chunk)
    os.close(read_fd)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


def test_the_library_is_built_and_loads() -> None:
    path = native.library_path()
    assert path is not None and os.path.isfile(path)


def test_the_source_compiles_without_warnings() -> None:
    """The package builds it without -Werror (another compiler may warn anew); here warnings fail."""
    source = Path(native.__file__).with_name("native.c")
    cmd = ["gcc", "-fsyntax-only", "-Wall", "-Wextra", "-Werror", str(source)]
    assert subprocess.run(cmd, capture_output=True, text=True, check=False).stderr == ""


def test_a_failed_step_is_named_with_its_errno() -> None:
    report = _in_a_child("/nonexistent/scratch")
    assert report == "FileNotFoundError: [Errno 2] chdir: No such file or directory"


@pytest.mark.skipif(os.geteuid() != 0, reason="drops capabilities only as root")
def test_a_confined_process_keeps_only_its_answer_fd_and_the_standard_ones() -> None:
    scratch = tempfile.mkdtemp()
    try:
        report = _in_a_child(scratch)
    finally:
        os.rmdir(scratch)
    assert report.startswith(f"confined in {scratch}; open fds [0, 1, 2, ")
    assert len(report.split("[")[1].split(",")) <= 5  # 0-2, the answer pipe, the one listing /proc
