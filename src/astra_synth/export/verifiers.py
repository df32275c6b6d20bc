"""``astra export verifiers``: arenas as a verifiers 0.4.0 taskset package (``verifiers.v1``).

The package is small generated code plus the arenas' prompts (``tasks.jsonl``); tool code and golden calls
stay on the arena server (``astra arenas serve``), which the taskset talks to over its OpenEnv WebSocket:
a per-rollout MCP tool server forwards each call to a session (so tools run in our sandbox, one fork server
for every rollout, on any machine the rollouts can reach), and the ``@vf.reward`` replays the rollout on a
fresh session, so the F1 is ``ArenaEnv``'s own. verifiers discovers the taskset by module name: ``pip
install OUT`` (or ``PYTHONPATH=OUT``) and ``vf-eval NAME``.

verifiers 0.4.0 pins ``mcp==2.0.0`` (ours is 2.3), so it never enters our venv: the tests run it from a
side venv built once per machine like the BFCL one (``verifiers_constraints.txt``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from astra_synth.arenas.records import read_arenas
from astra_synth.config import StrictModel, cache_root
from astra_synth.errors import InputError
from astra_synth.runs.jsonl import write_bytes_atomic
from astra_synth.venvs import PinnedVenv, SideVenv, VenvError, run_step

VERIFIERS_VERSION = "0.4.0"
LOCK_FILE = Path(__file__).with_name("verifiers_constraints.txt")
_TEMPLATES = Path(__file__).with_name("verifiers_package")
DEFAULT_SERVER = "ws://127.0.0.1:8791"
_NAME = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")


class VerifiersVenv(PinnedVenv):
    """A ready verifiers venv (the marker written after a successful install)."""

    verifiers_version: str

    @property
    def bin_dir(self) -> Path:
        """``vf-eval`` and ``uv`` (verifiers' chat harness runs its program through uv)."""
        return self.python.parent


_VENV = SideVenv(
    "verifiers-venv",
    LOCK_FILE,
    "astra-verifiers-venv.json",
    VerifiersVenv,
    "the verifiers venv",
    VenvError,
    {"verifiers_version": VERIFIERS_VERSION},
)
ensure_verifiers_venv = _VENV.ensure
ready_verifiers_venv = _VENV.ready


class VerifiersExport(StrictModel):
    """What ``astra export verifiers`` wrote."""

    out: Path
    taskset_id: str = Field(description="The id verifiers finds it by: `vf-eval <taskset_id>`.")
    module: str = Field(description="The Python package inside OUT (the id with `-` as `_`).")
    tasks: int
    server: str = Field(description="The arena server the taskset talks to (overridable per run).")


def _module_name(name: str) -> str:
    if not _NAME.match(name):
        raise InputError(
            f"--name {name!r}: use lower-case letters, digits and single '-' (e.g. astra-arenas)"
        )
    return name.replace("-", "_")


def _prepare(out: Path, force: bool) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    if out.exists() and any(out.iterdir()):
        if not force:
            raise InputError(f"{out}: folder is not empty; pass --force to overwrite it")
        shutil.rmtree(out)


def _pyproject(name: str, module: str) -> str:
    return (
        "[build-system]\n"
        'requires = ["setuptools>=68"]\n'
        'build-backend = "setuptools.build_meta"\n\n'
        "[project]\n"
        f'name = "{name}"\n'
        'version = "0.1.0"\n'
        'description = "astra-synth arenas as a verifiers taskset (tools run on `astra arenas serve`)"\n'
        'requires-python = ">=3.11"\n'
        f'dependencies = ["verifiers=={VERIFIERS_VERSION}", "websockets>=13"]\n\n'
        "[tool.setuptools]\n"
        f'packages = ["{module}"]\n\n'
        "[tool.setuptools.package-data]\n"
        f'{module} = ["tasks.jsonl", "export.json"]\n'
    )


def export_verifiers(
    arena_files: Sequence[Path],
    out: Path,
    *,
    server: str = DEFAULT_SERVER,
    name: str = "astra-arenas",
    force: bool = False,
) -> VerifiersExport:
    """Write a verifiers taskset package for ``arena_files`` into ``out``.

    ``server`` is the URL of the ``astra arenas serve`` that serves the same files (the taskset's default;
    ``--env.taskset.task.server`` changes it per run). Raises :class:`InputError` for unreadable arenas,
    duplicate ids across files, a bad ``name`` or a non-empty ``out`` without ``force``.
    """
    if not server.startswith(("ws://", "wss://", "http://", "https://")):
        raise InputError(f"--server {server!r}: expected a ws://, wss://, http:// or https:// URL")
    module = _module_name(name)
    arenas = [arena for path in arena_files for arena in read_arenas(path)]
    if not arenas:
        raise InputError(f"no arenas in {', '.join(map(str, arena_files))}")
    ids = [a.id for a in arenas]
    if len(set(ids)) != len(ids):
        raise InputError(f"duplicate arena ids across files: {sorted({i for i in ids if ids.count(i) > 1})}")
    _prepare(out, force)
    package = out / module
    package.mkdir(parents=True)
    rows = [
        {
            "arena_id": a.id,
            "name": a.id,
            "domain": a.domain,
            "prompt": [m.model_dump(exclude_none=True) for m in a.messages],
        }
        for a in arenas
    ]
    write_bytes_atomic(
        package / "tasks.jsonl", "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()
    )
    write_bytes_atomic(package / "export.json", json.dumps({"server": server}, indent=2).encode())
    shutil.copyfile(_TEMPLATES / "taskset.py.txt", package / "__init__.py")
    shutil.copyfile(_TEMPLATES / "main.py.txt", package / "__main__.py")
    write_bytes_atomic(out / "pyproject.toml", _pyproject(name, module).encode())
    return VerifiersExport(out=out, taskset_id=name, module=module, tasks=len(rows), server=server)


class VerifiersRollout(BaseModel):
    """One rollout of a ``vf-eval`` run, read from its ``traces.jsonl``."""

    task: str = Field(description="The arena id (the task's name).")
    ok: bool
    reward: float | None = Field(description="`arena_f1`; None when scoring did not run.")
    metrics: dict[str, float]
    stop: str | None = Field(description="verifiers' stop condition (agent_completed, max_turns, …).")
    errors: list[str]


class VerifiersEvalReport(BaseModel):
    run_dir: Path
    rollouts: list[VerifiersRollout]

    @property
    def reward_mean(self) -> float:
        scored = [r.reward for r in self.rollouts if r.reward is not None]
        return sum(scored) / len(scored) if scored else 0.0


def _taskset_id(package_root: Path) -> str:
    modules = sorted(p.parent.name for p in package_root.glob("*/export.json"))
    if len(modules) != 1:
        raise InputError(f"{package_root}: not a folder written by `astra export verifiers`")
    return modules[0].replace("_", "-")


def _rollout(line: str) -> VerifiersRollout:
    episode: dict[str, Any] = json.loads(line)
    trace = episode["traces"][0]
    reward = (trace.get("rewards") or {}).get("arena_f1") or {}
    return VerifiersRollout(
        task=trace["task"]["data"].get("name") or "",
        ok=bool(episode["ok"]),
        reward=reward.get("score"),
        metrics=trace.get("metrics") or {},
        stop=trace.get("stop_condition"),
        errors=[f"{e.get('type')}: {e.get('message')}" for e in [*episode["errors"], *trace["errors"]]],
    )


def vf_eval(
    package_root: Path,
    out_dir: Path,
    *,
    base_url: str,
    model: str,
    tasks: Sequence[str] = (),
    rollouts: int = 1,
    max_tokens: int | None = None,
    max_turns: int | None = None,
    server: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    venv: VerifiersVenv | None = None,
) -> VerifiersEvalReport:
    """verifiers' own ``vf-eval`` on an exported taskset, locally (``--no-push``), as the docs show it.

    The model at ``base_url`` plays through verifiers' plain chat harness (``null``) in the ``subprocess``
    runtime; ``tasks`` picks arena ids (all when empty); ``server`` overrides the export's arena server.
    The venv is built on first use (network to PyPI), and so is the harness's uv script environment
    (cached under the astra cache). ``out_dir`` gets ``run/`` (vf-eval's configs and ``traces.jsonl``) and
    ``vf_eval.log``; one that already holds a run is refused (:class:`InputError`). Raises
    :class:`VenvError` with the log tail when vf-eval fails.
    """
    run = out_dir / "run"
    if run.exists():
        raise InputError(f"{out_dir}: already holds a vf-eval run; choose another folder")
    venv = venv or ensure_verifiers_venv()
    out_dir.mkdir(parents=True, exist_ok=True)
    args = [
        str(venv.bin_dir / "vf-eval"), _taskset_id(package_root), "-m", model,
        "--client.base-url", base_url, "--client.api-key-var", api_key_env,
        "--no-push", "--no-rich", "-r", str(rollouts), "-o", str(out_dir), "--run.dir", run.name,
        "--env.agent.harness.id", "null", "--env.agent.runtime.type", "subprocess",
    ]  # fmt: skip
    if tasks:
        args += ["--select.include.names", json.dumps(list(tasks))]
    if max_tokens is not None:
        args += ["--sampling.max-tokens", str(max_tokens)]
    if max_turns is not None:
        args += ["--env.agent.max-turns", str(max_turns)]
    if server is not None:
        args += ["--env.taskset.task.server", server]
    env = {
        **os.environ,
        "PATH": f"{venv.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": str(package_root.resolve()),
        "UV_CACHE_DIR": str(cache_root() / "verifiers-uv-cache"),
    }
    env.setdefault(api_key_env, "none")  # a local server wants no key, but the client wants one set
    run_step(args, "vf-eval", env=env, log=out_dir / "vf_eval.log")
    with (run / "traces.jsonl").open(encoding="utf-8") as fh:
        return VerifiersEvalReport(run_dir=run, rollouts=[_rollout(line) for line in fh if line.strip()])
