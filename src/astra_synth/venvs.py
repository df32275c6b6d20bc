"""Venvs of their own for tools whose dependencies clash with ours (BFCL, MCP servers on an older ``mcp``).

Each is built once per machine from a complete pinned lock installed with ``--no-deps`` (reproducible: pip
resolves nothing), under a file lock so concurrent callers build it once. A marker written last says the
venv is complete and which lock built it; a venv without a fresh marker is wiped and rebuilt.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

from pydantic import Field, ValidationError

from astra_synth.config import StrictModel, cache_root
from astra_synth.runs.jsonl import write_json_atomic


class VenvError(RuntimeError):
    """A venv could not be built or a step in it failed; the message says which step and shows its output."""


class PinnedVenv(StrictModel):
    """A ready venv: the marker file written after a successful install."""

    schema_version: int = 1
    root: Path
    python: Path
    purelib: Path = Field(description="site-packages of the venv.")
    lock_sha256: str = Field(description="sha256 of the lock file it was built from.")


V = TypeVar("V", bound=PinnedVenv)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def run_step(
    args: list[str],
    what: str,
    env: dict[str, str] | None = None,
    log: Path | None = None,
    error: type[Exception] = VenvError,
) -> str:
    """Run a step to completion; its stdout, or ``error`` with the output tail.

    With ``log``, the output streams into that file instead (progress of a run that may take hours) and the
    return value is empty.
    """
    try:
        if log is None:
            proc = subprocess.run(args, env=env, capture_output=True, text=True, stdin=subprocess.DEVNULL)
            code, stdout, output = proc.returncode, proc.stdout, proc.stdout + proc.stderr
        else:
            with log.open("w", encoding="utf-8") as fh:
                code = subprocess.run(
                    args, env=env, stdout=fh, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
                ).returncode
            stdout, output = "", log.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise error(f"{what}: cannot run {args[0]}: {exc}") from exc
    if code != 0:
        where = f" (full log: {log})" if log else ""
        raise error(f"{what} failed (exit {code}){where}:\n{_tail(output)}")
    return stdout


def _lock_sha(lock_file: Path) -> str:
    return hashlib.sha256(lock_file.read_bytes()).hexdigest()


def read_marker(root: Path, marker: str, model: type[V], lock_file: Path, **fields: Any) -> V | None:
    """The venv at ``root`` if its marker says it was built from this lock (and has these ``fields``)."""
    try:
        venv = model.model_validate_json((root / marker).read_text(encoding="utf-8"))
    except (OSError, ValidationError):
        return None
    fresh = venv.lock_sha256 == _lock_sha(lock_file) and all(getattr(venv, k) == v for k, v in fields.items())
    return venv if fresh and venv.python.is_file() else None


def ensure_venv(
    root: Path,
    lock_file: Path,
    *,
    marker: str,
    model: type[V],
    label: str,
    error: type[Exception] = VenvError,
    check: Callable[[V, str], None] | None = None,
    **fields: Any,
) -> V:
    """The venv at ``root`` built from ``lock_file``, created (network to PyPI) if missing or stale.

    ``label`` names it in errors ("the BFCL venv"); ``fields`` are the marker's extra fields, also checked
    for freshness; ``check(venv, where)`` may raise when the install lacks something. Raises ``error``
    naming the failed step.
    """
    if (venv := read_marker(root, marker, model, lock_file, **fields)) is not None:
        return venv
    try:
        root.parent.mkdir(parents=True, exist_ok=True)
        lock = (root.parent / f"{root.name}.lock").open("w")
    except OSError as exc:
        raise error(f"cannot create {label} under {root.parent}: {exc}") from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (venv := read_marker(root, marker, model, lock_file, **fields)) is not None:  # built meanwhile
            return venv
        shutil.rmtree(root, ignore_errors=True)
        where = f"creating {label} at {root} (set ASTRA_CACHE_DIR to put it elsewhere)"
        run_step([sys.executable, "-m", "venv", str(root)], where, error=error)
        python = root / "bin" / "python"
        run_step(
            [str(python), "-m", "pip", "install", "-q", "--no-deps", "-r", str(lock_file)],
            f"{where}: pip install -r {lock_file.name} (needs network to PyPI)",
            error=error,
        )
        purelib = run_step(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            where,
            error=error,
        ).strip()
        venv = model(
            root=root, python=python, purelib=Path(purelib), lock_sha256=_lock_sha(lock_file), **fields
        )
        if check is not None:
            check(venv, where)
        write_json_atomic(root / marker, venv.model_dump(mode="json"))
        return venv


@dataclass(frozen=True)
class SideVenv(Generic[V]):
    """One third-party stack's pinned venv under the cache (BFCL, τ²): where it lives, what it is built
    from, how it is recorded and checked, and which error names a failure."""

    folder: str
    lock_file: Path
    marker: str
    model: type[V]
    label: str
    error: type[Exception]
    fields: dict[str, Any]
    check: Callable[[V, str], None] | None = None

    def default_dir(self) -> Path:
        return cache_root() / self.folder

    def ready(self, root: Path | None = None) -> V | None:
        """The venv if one built from the current lock exists; never builds one."""
        return read_marker(root or self.default_dir(), self.marker, self.model, self.lock_file, **self.fields)

    def ensure(self, root: Path | None = None) -> V:
        """The venv, created (network to PyPI) if missing or built from another lock."""
        return ensure_venv(
            root or self.default_dir(),
            self.lock_file,
            marker=self.marker,
            model=self.model,
            label=self.label,
            error=self.error,
            check=self.check,
            **self.fields,
        )
