"""Which isolation tier this machine offers, and what each layer reported (fail closed).

T1: root + namespaces — workers are PID 1 of their own pid/net/mount/ipc/uts namespaces, children
    drop to a uid of their own, Landlock + seccomp + rlimits.
T2: unprivileged user namespaces — the same namespaces as ``nobody``; children drop capabilities,
    seccomp denies fork.
T3: no namespaces — Landlock + seccomp (no fork) + rlimits, as ``nobody``.
Untrusted code runs only when some tier contains both network and process creation.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from functools import cache
from typing import Literal

from pydantic import BaseModel

from astra_synth.sandbox import interpreter, seccomp_filter
from astra_synth.sandbox.jail import landlock

Tier = Literal["T1", "T2", "T3"]
TIERS: tuple[Tier, ...] = ("T1", "T2", "T3")
NAMESPACES = ["--pid", "--fork", "--mount-proc", "--net", "--ipc", "--uts", "--kill-child"]
# The worker must be able to import the jail from inside its tier: that is what the probe runs.
_IMPORT_CHECK = "import astra_synth.sandbox.jail.confine"  # + the native helper, loaded by path


class Layer(BaseModel):
    name: str
    ok: bool
    detail: str


class ProbeReport(BaseModel):
    tier: Tier | None
    available: list[Tier]
    landlock_abi: int
    python: str
    layers: list[Layer]

    def layer_ok(self, name: str) -> bool:
        return any(layer.name == name and layer.ok for layer in self.layers)

    def refusal(self, tier: Tier | None = None) -> str | None:
        """Why untrusted code must not run (in ``tier``, default the strongest); None when it may."""
        if tier is None:
            return None if self.tier else "no isolation tier contains network and process creation here"
        return None if tier in self.available else f"tier {tier} is not available here"


def tier_prefix(tier: Tier) -> list[str]:
    """The command that puts a worker into ``tier``'s namespaces and user."""
    if tier == "T1":
        return ["unshare", *NAMESPACES, "--"]
    if tier == "T2":
        return [*interpreter.rootless_prefix(), "unshare", "--user", "--map-root-user", *NAMESPACES, "--"]
    return interpreter.rootless_prefix()


def _run(cmd: list[str], pythonpath: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run(
            cmd, env=interpreter.jail_env(pythonpath), capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["ok"]
    return proc.returncode == 0, tail[0][:300]


@cache
def probe(python: str | None = None) -> ProbeReport:
    """Check every layer (about 0.2 s, cached per interpreter)."""
    python = python or interpreter.default_python()
    check = interpreter.python_command(python, "-c", _IMPORT_CHECK)
    layers: list[Layer] = []
    root = os.geteuid() == 0
    layers.append(Layer(name="root", ok=root, detail=f"euid {os.geteuid()}"))
    try:  # every tier's workers load it: without it the tier checks below fail too
        from astra_synth.sandbox.jail import native

        native_ok, detail = True, str(native.library_path())
    except (ImportError, OSError) as exc:
        native_ok, detail = False, f"{exc} (installing the package builds it, with a C compiler)"
    layers.append(Layer(name="native helper", ok=native_ok, detail=detail))
    with tempfile.TemporaryDirectory(prefix="astra-probe-") as staging:
        os.chmod(staging, 0o711)
        path = interpreter.stage_jail(staging)  # as executors do: readable by nobody
        ns_ok, detail = _run(tier_prefix("T1") + check, path) if root else (False, "needs root")
        layers.append(Layer(name="namespaces", ok=ns_ok, detail=detail))
        userns_ok, detail = _run(tier_prefix("T2") + check, path)
        layers.append(Layer(name="user namespaces", ok=userns_ok, detail=detail))
        rootless_ok, rootless_detail = _run(tier_prefix("T3") + check, path)
    abi = landlock.abi_version()
    scoped = "signals scoped" if abi >= 6 else "signals NOT scoped (ABI < 6)"
    layers.append(
        Layer(name="landlock", ok=abi >= 1, detail=f"ABI {abi}; {scoped}" if abi else "unavailable")
    )
    try:
        seccomp_filter.build_filter("base")
        seccomp_filter.build_filter("no_fork")
        seccomp_ok, detail = True, "pyseccomp + libseccomp"
    except (ImportError, OSError, RuntimeError, ValueError) as exc:
        seccomp_ok, detail = False, str(exc)
    layers.append(Layer(name="seccomp", ok=seccomp_ok, detail=detail))
    layers.append(Layer(name="rootless interpreter", ok=rootless_ok, detail=f"{python}: {rootless_detail}"))
    available: list[Tier] = []
    if ns_ok:
        available.append("T1")
    if userns_ok and seccomp_ok:
        available.append("T2")
    if rootless_ok and seccomp_ok and abi >= 1:
        available.append("T3")
    return ProbeReport(
        tier=available[0] if available else None,
        available=available,
        landlock_abi=abi,
        python=python,
        layers=layers,
    )
