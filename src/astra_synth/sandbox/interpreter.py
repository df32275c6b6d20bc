"""How sandbox processes are started: which interpreter, with which environment, as which user.

Sandboxed code must run under an interpreter the sandbox uids can read: pyenv's Python lives under
``/root`` (mode 0700), so the Debian ``/usr/bin/python3`` is preferred. The environment is built from
scratch (nothing of the caller's leaks in) and fixes ``PYTHONHASHSEED`` so hashes and set order are the
same in every worker; ``-S -P`` rather than ``-I`` because ``-I`` ignores ``PYTHONHASHSEED``.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import astra_synth

SYSTEM_PYTHON = "/usr/bin/python3"
NOBODY = 65534
# Dedicated sandbox uids: a block per executor process so RLIMIT_NPROC (counted per uid, system-wide)
# never couples two executors or two workers.
_UID_FLOOR = 1_000_000
_UIDS_PER_PROCESS = 1024
MAX_WORKERS = _UIDS_PER_PROCESS // 2  # the other half serves the subprocess executor


def default_python() -> str:
    return SYSTEM_PYTHON if os.access(SYSTEM_PYTHON, os.X_OK) else sys.executable


def package_root() -> str:
    """The directory that holds ``astra_synth``: the only entry the sandbox interpreter adds to sys.path."""
    return str(Path(astra_synth.__file__).resolve().parent.parent)


def jail_env(pythonpath: str | None = None) -> dict[str, str]:
    """The whole environment of a sandbox interpreter; ``pythonpath`` defaults to the installed package."""
    return {
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": pythonpath or package_root(),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PATH": "/usr/bin:/bin",
        "LANG": "C.UTF-8",
        # Resolve every symbol at load: lazily bound, each forked child would resolve (and copy) them anew.
        "LD_BIND_NOW": "1",
    }


def stage_jail(directory: str) -> str:
    """Copy the jail's modules and its native library under ``directory``, world-readable; returns the
    ``PYTHONPATH`` to import them from.

    The rootless tiers run their workers as ``nobody``, who often cannot read the installed package (a
    virtualenv or checkout under ``/root`` is mode 0700). Workers import these copies instead; they are
    the installed files, byte for byte, and go with the directory. The two parent packages get empty
    ``__init__`` files: the real ones import ``typing``, which each worker would then carry into every fork.
    """
    package = Path(astra_synth.__file__).resolve().parent
    lib = Path(directory) / "lib"
    (lib / "astra_synth" / "sandbox" / "jail").mkdir(parents=True, exist_ok=True)
    for parent in ("astra_synth", "astra_synth/sandbox"):
        (lib / parent / "__init__.py").write_text('"""Staged for sandbox workers: only the jail."""\n')
    for source in (package / "sandbox" / "jail").iterdir():
        if source.suffix in (".py", ".so"):  # the modules and the native library
            shutil.copyfile(source, lib / "astra_synth" / source.relative_to(package))
    for path in (lib, *lib.rglob("*")):
        os.chmod(path, 0o755 if path.is_dir() else 0o644)
    return str(lib)


def python_command(python: str, *args: str) -> list[str]:
    """No site (sys.path = stdlib + this package), no script directory, no bytecode written."""
    return [python, "-S", "-P", "-B", *args]


def jail_command(python: str, module: str, *args: str) -> list[str]:
    return python_command(python, "-m", f"astra_synth.sandbox.jail.{module}", *args)


def rootless_prefix() -> list[str]:
    """Run as ``nobody`` when the caller is root, so the rootless tiers behave as for any user."""
    if os.geteuid() != 0:
        return []
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]


def sandbox_uid_base() -> int:
    return _UID_FLOOR + (os.getpid() % 1_000_000) * _UIDS_PER_PROCESS
