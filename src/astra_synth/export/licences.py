"""Licences of the things a dataset was made from, as far as they can be known without guessing.

A record that states its licence wins. A tool server started as ``python -m module`` (or through its console
script) is an installed package, and its metadata names the licence. Anything else came from the user, and
its licence is unknown: the card says so rather than inventing one.
"""

from __future__ import annotations

import importlib.metadata
import shutil
from pathlib import Path

from astra_synth.tools.spec import ServerRecord, StdioTransport

UNKNOWN = "user-provided, licence unknown"


def package_licence(distribution: str) -> str | None:
    """The licence an installed distribution declares (SPDX expression, ``License`` field, or classifier)."""
    try:
        meta = importlib.metadata.metadata(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    for field in ("License-Expression", "License"):
        declared = meta[field].strip() if field in meta else ""
        if declared and "\n" not in declared:  # some packages paste their whole licence text here
            return declared
    licence_classifiers = [c for c in meta.get_all("Classifier") or [] if c.startswith("License ::")]
    classifiers = [c.split(" :: ")[-1] for c in licence_classifiers]
    return ", ".join(classifiers) or None


def _module_distribution(module: str) -> str | None:
    top = module.split(".")[0]
    found = importlib.metadata.packages_distributions().get(top)
    return found[0] if found else None


def _script_distribution(command: str) -> str | None:
    """The distribution whose console script is ``command`` (a bare name or a path to it)."""
    name = Path(command).name
    if shutil.which(name) is None and not Path(command).exists():
        return None
    for dist in importlib.metadata.distributions():
        if any(ep.name == name for ep in dist.entry_points.select(group="console_scripts")):
            return str(dist.metadata["Name"])
    return None


def server_package(server: ServerRecord) -> str | None:
    """The installed distribution that runs a stdio server, when the command says which one."""
    transport = server.transport
    if not isinstance(transport, StdioTransport):
        return None
    args = transport.args
    if "-m" in args and args.index("-m") + 1 < len(args):
        return _module_distribution(args[args.index("-m") + 1])
    return _script_distribution(transport.command)


def server_licence(server: ServerRecord) -> str:
    if server.license:
        return server.license
    package = server_package(server)
    found = package_licence(package) if package else None
    return f"{found} (from the {package} package metadata)" if found else UNKNOWN
