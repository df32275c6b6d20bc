"""Sandbox interpreters: a staged jail that ``nobody`` imports, and an environment built from scratch."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from astra_synth.sandbox import interpreter
from astra_synth.sandbox.jail import native as jail_native


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run the check as nobody")
def test_nobody_imports_the_staged_jail_not_the_installed_package() -> None:
    folder = tempfile.mkdtemp(prefix="astra-stage-")  # pytest's tmp_path is not reachable for nobody
    os.chmod(folder, 0o711)
    staged = interpreter.stage_jail(folder)
    check = (
        "import astra_synth.sandbox.jail.worker as w, sys; print(w.__file__); print(sys.path); "
        "print(sorted(m for m in ('typing', 'dataclasses', 'inspect', 'shutil') if m in sys.modules))"
    )
    cmd = interpreter.rootless_prefix() + interpreter.python_command(
        interpreter.default_python(), "-c", check
    )
    try:
        out = subprocess.run(
            cmd, env=interpreter.jail_env(staged), capture_output=True, text=True, check=True
        ).stdout
        assert out.splitlines()[0].startswith(staged)
        assert "site-packages" not in out and "dist-packages" not in out  # -S: stdlib and the jail only
        assert out.splitlines()[2] == "[]"  # the worker stays small: each module it holds makes forks dearer
        native = Path(staged, "astra_synth/sandbox/jail", Path(jail_native.library_path() or "").name)
        assert native.is_file() and native.read_bytes() == Path(jail_native.library_path() or "").read_bytes()
    finally:
        shutil.rmtree(folder)


def test_the_environment_is_built_from_scratch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-secret")
    env = interpreter.jail_env()
    assert env["PYTHONHASHSEED"] == "0" and "OPENAI_API_KEY" not in env
    expected = {"PYTHONHASHSEED", "PYTHONPATH", "PYTHONDONTWRITEBYTECODE", "PATH", "LANG", "LD_BIND_NOW"}
    assert set(env) == expected
