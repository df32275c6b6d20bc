"""MCP servers that cannot share our environment, run from a venv of their own.

Some PyPI servers are written against the mcp 1.x server API and do not start under our mcp 2.x (e.g.
``mcp-server-sqlite``). Our client still talks to them: the MCP protocol version is negotiated at the
handshake. Each such server has a complete lock ``server_constraints/<name>.txt`` (``<name>`` is both the
PyPI package and its console script); its venv is built once per machine under
``cache_root()/mcp-servers/<name>``.
"""

from __future__ import annotations

from pathlib import Path

from astra_synth.config import cache_root
from astra_synth.errors import InputError
from astra_synth.venvs import PinnedVenv, VenvError, ensure_venv

CONSTRAINTS_DIR = Path(__file__).with_name("server_constraints")
_MARKER = "astra-server-venv.json"


class ServerVenv(PinnedVenv):
    """A ready server venv (its marker)."""

    server: str

    @property
    def executable(self) -> Path:
        """The server's console script: the stdio command to import and call it with."""
        return self.root / "bin" / self.server


def known_servers() -> list[str]:
    return sorted(p.stem for p in CONSTRAINTS_DIR.glob("*.txt"))


def server_venv_dir(server: str) -> Path:
    return cache_root() / "mcp-servers" / server


def _lock_file(server: str) -> Path:
    lock = CONSTRAINTS_DIR / f"{server}.txt"
    if not lock.is_file():
        raise InputError(f"no pinned venv for MCP server {server!r}; known: {', '.join(known_servers())}")
    return lock


def _check_script(venv: ServerVenv, where: str) -> None:
    if not venv.executable.is_file():
        raise VenvError(f"{where}: installed, but there is no console script {venv.executable}")


def ensure_server_venv(server: str, root: Path | None = None) -> ServerVenv:
    """The server's venv, built (tens of seconds, network to PyPI) if missing or built from another lock.

    Raises :class:`InputError` for a server without a lock, :class:`VenvError` when the build fails.
    """
    return ensure_venv(
        root or server_venv_dir(server),
        _lock_file(server),
        marker=_MARKER,
        model=ServerVenv,
        label=f"the {server} venv",
        check=_check_script,
        server=server,
    )
